"""llama2-70b's GPU path at a tiny width (skipped without CUDA; bench/gpu_check.sh runs it on a GPU machine):
`subtool run --model llama2-70b-99 --backend torch-cuda --precision fp8` on a sharded bf16 checkpoint the test
writes streams it onto the GPU in fp8 and answers every sample, and the fp8 engine on the streamed skeleton holds
exactly the e4m3 weights and scales the fp8 engine on the whole loaded model makes, and generates what it does
(first tokens all, whole answers mostly: the skeleton's rotary tables are computed on the GPU, the loaded model's
on the CPU, and a last-bit difference can flip a near tie of this tiny random model later in an answer)."""

from __future__ import annotations

import re

import pytest

from .test_llm_checkpoint_run import _copy_as, _run, _tokens

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_llama2_70b_run_streams_a_sharded_checkpoint_onto_the_gpu_in_fp8(tmp_path, llama2_small, capfd):
    from .conftest import SMALL

    sharded = _copy_as(llama2_small.model_path, tmp_path / "bf16", lambda s: s)
    fp8 = _run(sharded, llama2_small.dataset_path, tmp_path / "fp8", "--backend", "torch-cuda", "--precision", "fp8")
    assert fp8.exit_code == 0, fp8.output
    err = capfd.readouterr().err
    # the continuous engine's streaming load, quantizing to fp8 on the GPU as the layers arrive
    assert re.search(r"streamed \S+ onto cuda:\d+ in [\d.]+ s \(fp8 weights, [\d.]+ GiB\)", err), err[-2000:]
    bf16 = _run(
        sharded, llama2_small.dataset_path, tmp_path / "bf16-run", "--backend", "torch-cuda", "--precision", "bf16"
    )
    assert bf16.exit_code == 0, bf16.output
    tokens, reference = _tokens(tmp_path / "fp8"), _tokens(tmp_path / "bf16-run")
    assert sorted(tokens) == list(range(SMALL)) and all(tokens.values())
    first = sum(tokens[i][0] == reference[i][0] for i in range(SMALL))
    assert first >= SMALL // 2, f"fp8 first tokens agree with bf16 on {first} of {SMALL}"


def test_fp8_engine_on_the_streamed_skeleton_matches_the_fp8_engine_on_the_loaded_model(tmp_path, llama2_small):
    from transformers import AutoModelForCausalLM

    from subtool.runner.llm.checkpoint import load_streaming
    from subtool.runner.llm.engine import ContinuousEngine
    from subtool.runner.llm.workload import Generation

    from .test_llm_engine import Recorder

    sharded = _copy_as(llama2_small.model_path, tmp_path / "bf16", lambda s: s)
    device = torch.device("cuda")
    skeleton, layers = load_streaming(sharded, device, torch.bfloat16, fp8=True)
    assert all(p.device.type == "meta" for p in skeleton.model.layers.parameters())
    assert all(w["qkv"][2].dtype == torch.float8_e4m3fn for w in layers)
    whole = AutoModelForCausalLM.from_pretrained(sharded, dtype=torch.bfloat16).to(device).eval()
    gen = torch.Generator().manual_seed(7)
    prompts = [
        torch.randint(3, 500, (int(n),), generator=gen).numpy() for n in torch.randint(5, 40, (10,), generator=gen)
    ]
    generation = Generation(
        max_new_tokens=12, min_new_tokens=12, num_beams=1, output_dtype="int32", token_latencies=True
    )
    done, engines = [], []
    for model, given in ((skeleton, layers), (whole, None)):
        engine = ContinuousEngine(
            model,
            slots=4,
            max_len=64,
            eos_ids=[2],
            generation=generation,
            weights="fp8",
            kv_cache="auto",
            layer_weights=given,
        )
        sink = Recorder(prompts)
        engine.run([(i, i) for i in range(len(prompts))], sink)
        assert sorted(sink.done) == list(range(len(prompts))) and all(len(t) == 12 for t in sink.done.values())
        done.append(sink.done)
        engines.append(engine)
    for streamed, made in zip(engines[0].layer_weights, engines[1].layer_weights):
        for name in ("qkv", "o", "gate_up", "down"):
            assert _same(streamed[name][2].view(torch.uint8), made[name][2].view(torch.uint8)), name
            assert _same(streamed[name][3], made[name][3]), name
    assert all(done[0][i][0] == done[1][i][0] for i in range(len(prompts)))
    whole_answers = sum(done[0][i] == done[1][i] for i in range(len(prompts)))
    assert whole_answers >= len(prompts) // 2, f"{whole_answers} of {len(prompts)} answers identical"


def _same(a, b) -> bool:
    return a.shape == b.shape and bool(torch.equal(a.contiguous(), b.contiguous()))
