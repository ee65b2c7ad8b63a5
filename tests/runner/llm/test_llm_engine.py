"""The continuous-batching engine on its own: batching plans, and the tokens it generates against transformers'
own greedy `generate` on each prompt alone (fp32, a small random Llama built here)."""

from __future__ import annotations

import numpy as np
import pytest

from subtool.runner.llm.engine_attention import key_bucket

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def test_key_buckets_round_up_to_blocks_and_stop_at_the_cache():
    assert key_bucket(1, 256, 2000) == 256
    assert key_bucket(256, 256, 2000) == 256
    assert key_bucket(257, 256, 2000) == 512
    assert key_bucket(1999, 256, 2000) == 2000


class Recorder:
    """The engine's callback side, as the SUTs implement it: prompts, first tokens, completions, late arrivals."""

    def __init__(self, prompts, late=()):
        self.prompts = prompts
        self.first: dict[int, int] = {}
        self.done: dict[int, list[int]] = {}
        self.calls: list[int] = []
        self.late = list(late)

    def first_token(self, qid, token):
        assert qid not in self.first
        self.first[qid] = token

    def complete(self, qid, tokens):
        assert qid not in self.done, f"query {qid} answered twice"
        self.done[qid] = list(tokens)

    def more_work(self):
        self.calls.append(len(self.done))
        if self.late and len(self.done) >= 3:  # arrivals while the engine runs (Server)
            late, self.late = self.late, []
            return late
        return []


EOS_BOOST = 1.6


def _model(device="cpu"):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(7)
    cfg = LlamaConfig(
        vocab_size=384,
        hidden_size=128,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        eos_token_id=2,
        bos_token_id=1,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg).to(device).eval()
    with torch.no_grad():  # larger weights: decisive logits
        for p in model.parameters():
            p.mul_(4.0)
        model.lm_head.weight[2].mul_(EOS_BOOST)  # EOS reachable: some sequences end early, not all
    return model


def _prompts(n, seed=3):
    rng = np.random.default_rng(seed)
    return [rng.integers(3, 384, size=int(k)).astype(np.int32) for k in rng.integers(4, 70, size=n)]


def _reference(model, prompts, max_new, min_new):
    out = {}
    for i, p in enumerate(prompts):
        ids = torch.from_numpy(p.astype(np.int64))[None].to(model.device)
        with torch.inference_mode():
            gen = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=max_new,
                min_new_tokens=min_new,
                eos_token_id=2,
                pad_token_id=0,
            )
        row = gen[0, ids.shape[1] :].tolist()
        out[i] = row[: row.index(2) + 1] if 2 in row else row
    return out


def _generation(max_new, min_new):
    from subtool.runner.llm.workload import Generation

    return Generation(
        max_new_tokens=max_new, min_new_tokens=min_new, num_beams=1, output_dtype="int32", token_latencies=True
    )


@pytest.mark.parametrize("slots,budget,min_new", [(4, 64, 0), (16, 10_000, 0), (3, 128, 6)])
def test_engine_matches_greedy_generate_whatever_the_batching(slots, budget, min_new):
    from subtool.runner.llm.engine import ContinuousEngine

    model = _model()
    prompts = _prompts(20)
    max_new = 12
    expected = _reference(model, prompts, max_new, min_new)
    assert any(len(v) < max_new for v in expected.values()), "some sequences should end on EOS"
    engine = ContinuousEngine(
        model,
        slots=slots,
        max_len=max(len(p) for p in prompts) + max_new,
        eos_ids=[2],
        generation=_generation(max_new, min_new),
        prefill_tokens=budget,
        key_block=16,
    )
    pending = [(1000 + i, i) for i in range(14)]
    sut = Recorder(prompts, late=[(1000 + i, i) for i in range(14, 20)])
    engine.run(pending, sut)
    assert set(sut.done) == {1000 + i for i in range(20)}
    assert {q - 1000: t for q, t in sut.done.items()} == expected
    assert all(sut.first[q] == t[0] for q, t in sut.done.items())
    assert engine.completed == set(sut.done)
    assert engine.stats.prompts == 20


def test_a_prompt_longer_than_the_cache_is_refused():
    from subtool.runner.llm.engine import ContinuousEngine

    model = _model()
    prompts = _prompts(3)
    engine = ContinuousEngine(model, slots=2, max_len=20, eos_ids=[2], generation=_generation(8, 0))
    with pytest.raises(ValueError, match="exceed the cache"):
        engine.run([(0, 0), (1, 1), (2, 2)], Recorder(prompts))


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _cuda_run(prompts, max_new, min_new=0, model=None, **options):
    from subtool.runner.llm.engine import ContinuousEngine

    model = model if model is not None else _model("cuda").to(torch.bfloat16)
    engine = ContinuousEngine(
        model,
        slots=8,
        max_len=128,
        eos_ids=[2],
        generation=_generation(max_new, min_new),
        **{"prefill_tokens": 256, "key_block": 32, **options},
    )
    engine.warm_up([len(p) for p in prompts])
    sut = Recorder(prompts)
    engine.run([(i, i) for i in range(len(prompts))], sut)
    assert sorted(sut.done) == list(range(len(prompts)))
    return engine, sut.done


@cuda
def test_cuda_graph_engine_in_fp32_matches_generate():
    prompts = _prompts(24)
    model = _model("cuda")
    expected = _reference(model, prompts, 10, 0)
    engine, done = _cuda_run(prompts, 10, model=model)
    assert engine.decode_attention == "sdpa" and engine.stats.graphs >= 2  # one graph per key length
    assert done == expected


@cuda
def test_cuda_decode_attention_kernels_agree():
    # bf16: the Triton and flash decode kernels (each slot's own keys) against the bucketed SDPA path
    prompts = _prompts(24)
    runs = {a: _cuda_run(prompts, 10, decode_attention=a)[1] for a in ("triton", "flash", "sdpa")}
    for attention in ("triton", "flash"):
        same = sum(runs[attention][i] == runs["sdpa"][i] for i in range(24))
        assert same >= 20, f"{attention} and sdpa decode agree on {same} of 24 sequences"


@cuda
def test_cuda_fp8_weights_and_kv_cache_answer_everything():
    prompts = _prompts(24)
    _, bf16 = _cuda_run(prompts, 10, 10)
    _, w8 = _cuda_run(prompts, 10, 10, weights="fp8")
    _, kv8 = _cuda_run(prompts, 10, 10, kv_cache="fp8")
    assert all(len(t) == 10 for t in [*w8.values(), *kv8.values()])
    # the first decode step is the first to read the fp8 cache: its tokens mostly agree with bf16's
    second = sum(kv8[i][1] == bf16[i][1] for i in range(24))
    assert second >= 18, f"fp8 KV cache: second tokens agree on {second} of 24"


@cuda
def test_cuda_fused_silu_fp8_rows_answer_as_torch_quantisation_does():
    # kernels/silu_fp8.py inside the compiled layer and the decode graphs, against torch's SiLU·up and row scale
    prompts = _prompts(24)
    _, plain = _cuda_run(prompts, 10, 10, weights="fp8")
    engine, fused = _cuda_run(prompts, 10, 10, weights="fp8", fused_silu=True)
    assert engine.fused_silu and all(len(t) == 10 for t in fused.values())
    first = sum(fused[i][0] == plain[i][0] for i in range(24))
    assert first >= 20, f"fused SiLU·up rows: first tokens agree on {first} of 24"


@cuda
@pytest.mark.parametrize("kv_cache", ["model", "fp8"])
def test_cuda_fused_kv_write_answers_as_torch_writes_do(kv_cache):
    # kernels/kv_write.py in the prefill chunks and inside the decode graphs stores the values torch's clamp, cast
    # and scatter store, so greedy answers are the same token for token
    prompts = _prompts(24)
    options = {"decode_attention": "triton", "kv_cache": kv_cache}
    torch_writes, plain = _cuda_run(prompts, 10, 10, fused_kv_write=False, **options)
    engine, fused = _cuda_run(prompts, 10, 10, **options)
    assert engine.fused_kv_write and not torch_writes.fused_kv_write  # on by default beside Triton's decode
    assert fused == plain


def test_engine_on_a_skeleton_with_given_layer_weights_matches_the_loaded_model():
    """A model whose decoder layers never left the meta device, with the layers' weights handed over in the
    engine's form (how the streaming loader and the 70B bench build it), generates what the whole model does."""
    from subtool.runner.llm.engine import ContinuousEngine
    from subtool.runner.llm.engine_layer import fuse, quantized
    from subtool.runner.llm.skeleton import meta_model

    model = _model()
    skeleton = meta_model(model.config, "cpu", torch.float32)
    assert all(p.device.type == "meta" for p in skeleton.model.layers.parameters())
    with torch.no_grad():
        for part in ("model.embed_tokens", "model.norm", "lm_head"):
            skeleton.get_submodule(part).weight.copy_(model.get_submodule(part).weight)
    layers = []
    for layer in model.model.layers:
        a, m = layer.self_attn, layer.mlp
        layers.append(
            {
                "in_norm": layer.input_layernorm.weight,
                "post_norm": layer.post_attention_layernorm.weight,
                "qkv": quantized(*fuse([a.q_proj, a.k_proj, a.v_proj]), False),
                "o": quantized(a.o_proj.weight, a.o_proj.bias, False),
                "gate_up": quantized(*fuse([m.gate_proj, m.up_proj]), False),
                "down": quantized(m.down_proj.weight, m.down_proj.bias, False),
            }
        )
    prompts = _prompts(6)
    expected = _reference(model, prompts, 8, 0)
    engine = ContinuousEngine(
        skeleton,
        slots=3,
        max_len=max(len(p) for p in prompts) + 8,
        eos_ids=[2],
        generation=_generation(8, 0),
        layer_weights=layers,
    )
    sut = Recorder(prompts)
    engine.run([(i, i) for i in range(len(prompts))], sut)
    assert sut.done == expected
