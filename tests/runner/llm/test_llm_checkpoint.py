"""The streaming checkpoint loader (llm/checkpoint.py, checkpoint_fp8.py) on small Llama checkpoints these tests
write in each format: bf16 in several shards, transformers' fine-grained FP8 (block scales) and compressed-tensors
float-quantized (per channel, per tensor), each quantized here by its format's rule from one set of bf16 weights.
The loaded layers are compared with the same bf16 weights quantized on load (engine_layer.quantized): exactly where the
format is the engine's own per-channel form, within e4m3's rounding where blocks are quantized again."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from subtool.errors import SubtoolError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

E4M3 = torch.float8_e4m3fn
PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# ----------------------------------------------------------------------------------- writing checkpoints
def tiny_config(**over):
    from transformers import LlamaConfig

    base = dict(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=2,
        bos_token_id=1,
        tie_word_embeddings=False,
    )
    base.update(over)
    return LlamaConfig(**base)


def random_state(config, seed=5, scale=4.0) -> dict:
    """A random Llama's weights in bf16 (larger than init: decisive logits)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    return {k: (v * scale if v.ndim == 2 else v).to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}


def is_projection(name: str) -> bool:
    return name.startswith("model.layers.") and name.endswith("_proj.weight")


def hf_fp8(state: dict, block: tuple[int, int]) -> dict:
    """transformers' fine-grained FP8 rule: per block, weight_scale_inv = amax / 448 (1 for an all-zero block),
    weight = clamp(w / weight_scale_inv) in e4m3; edge blocks partial (the scale grid rounds up)."""
    out = {}
    for name, w in state.items():
        if not is_projection(name):
            out[name] = w
            continue
        rows, cols = w.shape
        gr, gc = math.ceil(rows / block[0]), math.ceil(cols / block[1])
        padded = torch.zeros(gr * block[0], gc * block[1])
        padded[:rows, :cols] = w.float()
        tiles = padded.reshape(gr, block[0], gc, block[1])
        amax = tiles.abs().amax(dim=(1, 3))
        inv = torch.where(amax > 0, amax / 448.0, torch.ones_like(amax))
        q = (tiles / inv[:, None, :, None]).clamp(-448, 448).reshape(padded.shape)[:rows, :cols]
        out[name] = q.to(E4M3).contiguous()
        out[name[: -len("weight")] + "weight_scale_inv"] = inv.float()
    return out


def compressed_fp8(state: dict, strategy: str) -> dict:
    """compressed-tensors float-quantized rule: scale = amax / 448 per output channel ([out, 1]) or per tensor
    ([1]), weight = clamp(w / scale) in e4m3; a static input_scale next to it (unused by the engine)."""
    out = {}
    for name, w in state.items():
        if not is_projection(name):
            out[name] = w
            continue
        w32 = w.float()
        amax = w32.abs().amax(dim=1, keepdim=True) if strategy == "channel" else w32.abs().amax().reshape(1)
        scale = amax.clamp(min=1e-12) / 448.0
        out[name] = (w32 / (scale if strategy == "channel" else scale[:, None])).clamp(-448, 448).to(E4M3)
        out[name[: -len("weight")] + "weight_scale"] = scale.float()
        out[name[: -len("weight")] + "input_scale"] = torch.tensor([0.05])
    return out


def quant_config(kind: str, block=(32, 32), strategy="channel") -> dict | None:
    if kind == "hf-fp8":
        return {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": list(block)}
    if kind == "compressed-tensors":
        weights = {"num_bits": 8, "type": "float", "strategy": strategy, "symmetric": True, "dynamic": False}
        acts = {"num_bits": 8, "type": "float", "strategy": "tensor", "symmetric": True, "dynamic": False}
        return {
            "quant_method": "compressed-tensors",
            "format": "float-quantized",
            "quantization_status": "compressed",
            "ignore": ["lm_head"],
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights, "input_activations": acts}},
        }
    return None


def write_checkpoint(path, config, tensors: dict, *, shards: int = 1, quantization: dict | None = None):
    """config.json plus the tensors in `shards` safetensors files (an index when more than one), in name order,
    cut by bytes so that layers straddle files."""
    path.mkdir(parents=True, exist_ok=True)
    cfg = config.to_dict()
    if quantization:
        cfg["quantization_config"] = quantization
    (path / "config.json").write_text(json.dumps(cfg))
    names = sorted(tensors)
    if shards == 1:
        safetensors_torch.save_file({n: tensors[n] for n in names}, str(path / "model.safetensors"))
        return path
    total = sum(tensors[n].numel() * tensors[n].element_size() for n in names)
    groups: list[list[str]] = [[] for _ in range(shards)]
    seen = 0
    for n in names:
        groups[min(shards - 1, seen * shards // total)].append(n)
        seen += tensors[n].numel() * tensors[n].element_size()
    weight_map = {}
    for k, group in enumerate(groups):
        file = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        safetensors_torch.save_file({n: tensors[n] for n in group}, str(path / file))
        weight_map.update({n: file for n in group})
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return path


def whole_model(config, state: dict, dtype=torch.float32):
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(config).eval()
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()})
    return model.to(dtype)


def on_load(state: dict, layer: int, fp8: bool, dtype=torch.float32) -> dict:
    """Layer `layer`'s engine weights from the bf16 state, fused and quantized as the engine does on load."""
    from subtool.runner.llm.engine_layer import quantized

    def w(module):
        return state[f"model.layers.{layer}.{module}.weight"].to(dtype)

    def fused(*modules):
        return quantized(torch.cat([w(m) for m in modules]).contiguous(), None, fp8)

    return {
        "qkv": fused("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
        "o": fused("self_attn.o_proj"),
        "gate_up": fused("mlp.gate_proj", "mlp.up_proj"),
        "down": fused("mlp.down_proj"),
    }


def dequantized(lin: tuple) -> torch.Tensor:
    """A projection in the engine's form as a float32 [out, in] matrix."""
    weight, _, weight8, scale = lin
    if weight8 is None:
        return weight.float()
    return (weight8.float() * scale).t()


# --------------------------------------------------------------------------------------------- the tests
def _generation(max_new):
    from subtool.runner.llm.workload import Generation

    return Generation(max_new_tokens=max_new, min_new_tokens=0, num_beams=1, output_dtype="int32", token_latencies=True)


class Sink:
    def __init__(self, prompts):
        self.prompts, self.done = prompts, {}

    def first_token(self, qid, token):
        pass

    def complete(self, qid, tokens):
        self.done[qid] = list(tokens)

    def more_work(self):
        return []


def generate(model, layers, prompts, max_new=8):
    from subtool.runner.llm.engine import ContinuousEngine

    engine = ContinuousEngine(
        model,
        slots=3,
        max_len=max(len(p) for p in prompts) + max_new,
        eos_ids=[2],
        generation=_generation(max_new),
        layer_weights=layers,
    )
    sink = Sink(prompts)
    engine.run([(i, i) for i in range(len(prompts))], sink)
    return sink.done


def _prompts(n=5):
    rng = np.random.default_rng(11)
    return [rng.integers(3, 256, size=int(k)).astype(np.int32) for k in rng.integers(4, 30, size=n)]


@pytest.fixture(scope="module")
def bf16(tmp_path_factory):
    config = tiny_config()
    state = random_state(config)
    path = write_checkpoint(tmp_path_factory.mktemp("ckpt") / "bf16", config, state, shards=3)
    return config, state, path


def test_sharded_bf16_streams_into_a_skeleton_that_generates_as_the_whole_model(bf16):
    from subtool.runner.llm.checkpoint import load_streaming

    config, state, path = bf16
    assert len(list(path.glob("*.safetensors"))) == 3
    model, layers = load_streaming(path, "cpu", torch.float32, fp8=False)
    assert all(p.device.type == "meta" for p in model.model.layers.parameters())
    for i, layer in enumerate(layers):
        for key, lin in on_load(state, i, False).items():
            assert torch.equal(layer[key][0], lin[0]), (i, key)
        norm = state[f"model.layers.{i}.input_layernorm.weight"].float()
        assert torch.equal(layer["in_norm"], norm)
    prompts = _prompts()
    reference = whole_model(config, state)
    assert generate(model, layers, prompts) == generate(reference, None, prompts)


def test_bf16_quantized_on_load_is_the_engines_own_quantization(bf16):
    from subtool.runner.llm.checkpoint import load_streaming

    _, state, path = bf16
    _, layers = load_streaming(path, "cpu", torch.bfloat16, fp8=True)
    for i, layer in enumerate(layers):
        for key, lin in on_load(state, i, True, torch.bfloat16).items():
            got = layer[key]
            assert got[0] is None and got[2].dtype == E4M3 and got[2].shape == lin[2].shape
            assert torch.equal(got[2].float(), lin[2].float()) and torch.equal(got[3], lin[3]), (i, key)


@pytest.mark.parametrize(
    "kind,options",
    [
        ("hf-fp8", {"block": (32, 32)}),
        ("hf-fp8", {"block": (48, 40)}),  # edge blocks partial: the scale grid rounds up
        ("compressed-tensors", {"strategy": "channel"}),
        ("compressed-tensors", {"strategy": "tensor"}),
    ],
)
def test_prequantized_checkpoints_load_as_the_same_weights_quantized_on_load(tmp_path, bf16, kind, options):
    from subtool.runner.llm.checkpoint import load_streaming

    config, state, _ = bf16
    tensors = hf_fp8(state, options["block"]) if kind == "hf-fp8" else compressed_fp8(state, options["strategy"])
    path = write_checkpoint(tmp_path / kind, config, tensors, shards=2, quantization=quant_config(kind, **options))
    _, layers = load_streaming(path, "cpu", torch.bfloat16, fp8=True)
    for i, layer in enumerate(layers):
        for key, lin in on_load(state, i, True, torch.bfloat16).items():
            got, want = dequantized(layer[key]), dequantized(lin)
            assert layer[key][2].dtype == E4M3 and layer[key][3].shape == lin[3].shape
            if kind == "compressed-tensors" and options["strategy"] == "channel":
                assert torch.equal(got, want), (i, key)  # the engine's own form: taken over unchanged
            else:  # e4m3 has 3 mantissa bits: a weight moves by at most about 1/16 of itself per rounding
                ref = torch.cat([state[n].float() for n in _modules(i, key)])
                assert torch.allclose(got, ref, rtol=0.13, atol=1e-2 * ref.abs().max().item()), (i, key)


def _modules(i, key):
    names = {
        "qkv": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
        "o": ("self_attn.o_proj",),
        "gate_up": ("mlp.gate_proj", "mlp.up_proj"),
        "down": ("mlp.down_proj",),
    }[key]
    return [f"model.layers.{i}.{m}.weight" for m in names]


def test_block_fp8_dequantized_is_weight_times_its_block_scale(tmp_path, bf16):
    """weights="model" (CPU, or a dequantized run): each weight is its e4m3 value times its own block's scale."""
    from subtool.runner.llm.checkpoint import load_streaming

    config, state, _ = bf16
    tensors = hf_fp8(state, (48, 40))
    path = write_checkpoint(tmp_path / "hf", config, tensors, quantization=quant_config("hf-fp8", block=(48, 40)))
    _, layers = load_streaming(path, "cpu", torch.float32, fp8=False)
    w8 = tensors["model.layers.1.mlp.down_proj.weight"].float()
    inv = tensors["model.layers.1.mlp.down_proj.weight_scale_inv"]
    assert inv.shape == (2, 3)  # 64 rows in blocks of 48, 96 columns in blocks of 40
    assert torch.equal(layers[1]["down"][0][50, 85], w8[50, 85] * inv[1, 2])
    assert torch.equal(layers[1]["down"][0][47, 39], w8[47, 39] * inv[0, 0])


def test_a_dequantized_fp8_checkpoint_generates_close_to_bf16(tmp_path, bf16):
    from subtool.runner.llm.checkpoint import load_streaming

    config, state, path = bf16
    fp8_path = write_checkpoint(tmp_path / "hf", config, hf_fp8(state, (32, 32)), quantization=quant_config("hf-fp8"))
    prompts = _prompts(8)
    reference = generate(*load_streaming(path, "cpu", torch.float32, fp8=False), prompts)
    got = generate(*load_streaming(fp8_path, "cpu", torch.float32, fp8=False), prompts)
    first = sum(got[i][0] == reference[i][0] for i in range(8))
    assert first >= 6, f"first tokens agree on {first} of 8"


# ---------------------------------------------------------------------------------------------- memory
def _rss_peak_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS (Linux ≥ 4.0)
        return True
    except OSError:
        return False


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def _write_wide(path, config, shards: int) -> int:
    """A wide random bf16 checkpoint written shard by shard (never whole in memory); its bytes."""
    from subtool.runner.llm.checkpoint import projection_shapes

    shapes = {"model.embed_tokens.weight": (config.vocab_size, config.hidden_size)}
    for i in range(config.num_hidden_layers):
        for module, shape in projection_shapes(config).items():
            shapes[f"model.layers.{i}.{module}.weight"] = shape
        for norm in ("input_layernorm", "post_attention_layernorm"):
            shapes[f"model.layers.{i}.{norm}.weight"] = (config.hidden_size,)
    shapes |= {"model.norm.weight": (config.hidden_size,), "lm_head.weight": (config.vocab_size, config.hidden_size)}
    names = list(shapes)
    per = -(-len(names) // shards)
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config.to_dict()))
    weight_map = {}
    for k in range(shards):
        group = names[k * per : (k + 1) * per]
        file = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        safetensors_torch.save_file({n: torch.randn(shapes[n], dtype=torch.bfloat16) for n in group}, path / file)
        weight_map.update({n: file for n in group})
    (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return sum(p.stat().st_size for p in path.glob("*.safetensors"))


# Run in a fresh interpreter: a process that has already run other tests keeps freed heap (and glibc raises its
# mmap threshold after large frees), so its RSS growth under-counts what a load holds. A fixed mmap threshold
# (MALLOC_MMAP_THRESHOLD_) makes every tensor's memory come and go with it.
_MEASURE = """
import gc, json, sys
import torch
from transformers import LlamaConfig
from subtool.runner.llm.checkpoint import SafetensorsFiles, stream_layers
from subtool.runner.llm.checkpoint_fp8 import PLAIN

def kib(field):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))

def peak_mib(keep):
    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    base, kept = kib("VmRSS"), []
    for _, layer in stream_layers(files, config, PLAIN, "cpu", torch.bfloat16, False):
        if keep:
            kept.append(layer)
        del layer
    peak = kib("VmHWM") - base
    del kept
    return peak / 1024

config = LlamaConfig.from_pretrained(sys.argv[1])
files = SafetensorsFiles(sys.argv[1])
print(json.dumps({"streamed": peak_mib(False), "kept": peak_mib(True)}))
"""


def test_streaming_peak_host_memory_is_about_one_shard_not_the_model(tmp_path):
    """Peak resident memory while every layer streams through (each dropped once built, as a GPU target does),
    against the same load keeping every layer in host memory: the measurement sees the whole model when it is
    there, and streaming stays within a shard and a half of it (the layers cross shard boundaries)."""
    import os
    import subprocess
    import sys

    if not _rss_peak_reset():
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak RSS")
    config = tiny_config(
        hidden_size=512, intermediate_size=1536, num_attention_heads=8, num_key_value_heads=8, num_hidden_layers=8
    )
    total = _write_wide(tmp_path / "wide", config, shards=4)
    shard = total / 4
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    child = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(tmp_path / "wide")], env=env, capture_output=True, text=True
    )
    assert child.returncode == 0, child.stderr[-2000:]
    peaks = json.loads(child.stdout.strip().splitlines()[-1])
    streamed, kept = peaks["streamed"], peaks["kept"]
    mib = 2**20
    assert kept > 0.9 * total / mib, f"kept every layer: {kept:.1f} MiB of a {total / mib:.1f} MiB model"
    print(
        f"peak RSS: streamed {streamed:.1f} MiB, kept {kept:.1f} MiB; shard {shard / mib:.1f}, model {total / mib:.1f}"
    )
    assert streamed < 1.5 * shard / mib, f"streaming peaked at {streamed:.1f} MiB; one shard is {shard / mib:.1f}"


# ------------------------------------------------------------------------------------ bad checkpoints
def _broken(tmp_path, bf16, change, *, shards=2, kind=None):
    """A copy of the bf16 (or fp8) checkpoint with `change(tensors)` applied before writing."""
    config, state, _ = bf16
    tensors = dict(hf_fp8(state, (32, 32)) if kind == "hf-fp8" else state)
    change(tensors)
    return write_checkpoint(tmp_path / "bad", config, tensors, shards=shards, quantization=quant_config(kind or ""))


def _refused(path, rule: str, message: str):
    from subtool.runner.llm.checkpoint import load_streaming

    with pytest.raises(SubtoolError) as err:
        load_streaming(path, "cpu", torch.float32, fp8=False)
    assert err.value.rule == rule and message in err.value.message, (err.value.rule, err.value.message)
    return err.value


def test_a_missing_tensor_is_named_with_its_file(tmp_path, bf16):
    path = _broken(tmp_path, bf16, lambda t: t.pop("model.layers.2.mlp.up_proj.weight"))
    _refused(path, "model.weights", "model.layers.2.mlp.up_proj.weight is missing")


def test_a_tensor_of_the_wrong_shape_is_refused(tmp_path, bf16):
    def change(t):
        t["model.layers.1.self_attn.k_proj.weight"] = t["model.layers.1.self_attn.k_proj.weight"][:16]

    err = _refused(_broken(tmp_path, bf16, change), "model.weights", "has shape [16, 64], the config says [32, 64]")
    assert str(err.path).endswith(".safetensors")


def test_a_tensor_the_index_misplaces_is_refused(tmp_path, bf16):
    path = _broken(tmp_path, bf16, lambda t: None)
    index = path / "model.safetensors.index.json"
    doc = json.loads(index.read_text())
    name = "model.layers.0.self_attn.q_proj.weight"
    other = {f for f in doc["weight_map"].values() if f != doc["weight_map"][name]}.pop()
    doc["weight_map"][name] = other
    index.write_text(json.dumps(doc))
    err = _refused(path, "model.weights", "the index places it here but the file does not hold it")
    assert Path(err.path).name == other


def test_a_huge_tensor_is_refused_from_its_header_before_its_bytes_are_read(tmp_path, bf16, monkeypatch):
    from safetensors import safe_open

    def change(t):
        t["model.layers.1.mlp.down_proj.weight"] = torch.zeros(512, 1024, dtype=torch.bfloat16)

    path = _broken(tmp_path, bf16, change, shards=1)
    reads = []
    original = type(safe_open(str(path / "model.safetensors"), "pt")).get_tensor
    monkeypatch.setattr(
        type(safe_open(str(path / "model.safetensors"), "pt")),
        "get_tensor",
        lambda f, n: reads.append(n) or original(f, n),
    )
    _refused(path, "model.weights", "down_proj.weight has shape [512, 1024], the config says [64, 96]")
    assert "model.layers.1.mlp.down_proj.weight" not in reads


def test_an_index_naming_a_missing_file_is_refused(tmp_path, bf16):
    path = _broken(tmp_path, bf16, lambda t: None)
    next(path.glob("model-00002-*.safetensors")).unlink()
    err = _refused(path, "model.weights", "model-00002-of-00002.safetensors")
    assert Path(err.path).name == "model.safetensors.index.json"


def test_a_cut_short_or_garbage_shard_is_refused(tmp_path, bf16):
    path = _broken(tmp_path, bf16, lambda t: None)
    shard = next(path.glob("model-00002-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:200])
    err = _refused(path, "model.load", "")
    assert Path(err.path) == shard


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_a_non_finite_or_negative_scale_is_refused(tmp_path, bf16, bad):
    def change(t):
        t["model.layers.0.self_attn.o_proj.weight_scale_inv"][0, 0] = bad

    _refused(_broken(tmp_path, bf16, change, kind="hf-fp8"), "model.weights", "scale is not finite or negative")


def test_an_fp8_weight_without_its_scale_is_refused(tmp_path, bf16):
    path = _broken(tmp_path, bf16, lambda t: t.pop("model.layers.1.mlp.gate_proj.weight_scale_inv"), kind="hf-fp8")
    _refused(path, "model.weights", "e4m3 weight without its weight_scale_inv")


def test_a_scale_grid_that_does_not_match_the_block_size_is_refused(tmp_path, bf16):
    def change(t):
        t["model.layers.0.mlp.down_proj.weight_scale_inv"] = torch.ones(3, 3)

    _refused(_broken(tmp_path, bf16, change, kind="hf-fp8"), "model.weights", "in blocks of [32, 32]")


def test_non_finite_bf16_weights_are_refused_when_quantized(tmp_path, bf16):
    from subtool.runner.llm.checkpoint import load_streaming

    def change(t):
        t["model.layers.2.self_attn.v_proj.weight"] = t["model.layers.2.self_attn.v_proj.weight"].clone()
        t["model.layers.2.self_attn.v_proj.weight"][3, 3] = float("inf")

    with pytest.raises(SubtoolError, match="non-finite"):
        load_streaming(_broken(tmp_path, bf16, change), "cpu", torch.bfloat16, fp8=True)


@pytest.mark.parametrize(
    "quantization,message",
    [
        ({"quant_method": "awq", "bits": 4}, "quantization method 'awq'"),
        ({"quant_method": "fp8", "weight_block_size": [0, 128]}, "two positive integers"),
        (
            {"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {"g": {}}},
            "only float-quantized",
        ),
        ("fp8", "not a JSON object"),
    ],
)
def test_a_quantization_the_loader_cannot_read_is_refused(tmp_path, bf16, quantization, message):
    config, state, _ = bf16
    path = write_checkpoint(tmp_path / "q", config, state, quantization=None)
    cfg = json.loads((path / "config.json").read_text())
    cfg["quantization_config"] = quantization
    (path / "config.json").write_text(json.dumps(cfg))
    err = _refused(path, "model.quantization", message)
    assert Path(err.path).name == "config.json"


def test_the_index_reader_never_raises_anything_but_one_clear_error(tmp_path):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from subtool.runner.llm.checkpoint import SafetensorsFiles

    (tmp_path / "a.safetensors").write_bytes(b"")
    index = tmp_path / "model.safetensors.index.json"
    values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda c: st.lists(c) | st.dictionaries(st.text(max_size=8), c),
    )
    documents = st.dictionaries(st.sampled_from(["weight_map", "metadata"]), values) | values

    @settings(max_examples=150, deadline=None)
    @given(st.one_of(documents.map(json.dumps), st.binary(max_size=64).map(lambda b: b.decode("latin-1"))))
    def check(text):
        index.write_text(text, encoding="latin-1")
        try:
            files = SafetensorsFiles(tmp_path)
        except SubtoolError as err:
            assert err.rule == "model.weights" and Path(err.path) == index
            return
        assert all(p.parent == tmp_path and p.is_file() for p in files.weight_map.values())

    check()


# ------------------------------------------------------------------------------------------ on a GPU
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _cuda_tokens(model, layers, prompts, max_new=8):
    from subtool.runner.llm.engine import ContinuousEngine

    engine = ContinuousEngine(
        model,
        slots=4,
        max_len=max(len(p) for p in prompts) + max_new,
        eos_ids=[2],
        generation=_generation(max_new),
        weights="fp8",
        compile=False,
        layer_weights=layers,
    )
    sink = Sink(prompts)
    engine.run([(i, i) for i in range(len(prompts))], sink)
    return sink.done, engine


def _fp8_differences(state: dict, streamed: list[dict], own: list[dict]) -> list[str]:
    """Each projection whose e4m3 codes or scales differ between the streamed load and the engine's own
    quantization, with which of them also differs from the same quantization done on the CPU (on_load), how many
    codes differ and by how much: on the GPU this once failed for qkv alone, and a bare `key` said nothing more."""
    found = []
    for i, (mine, theirs) in enumerate(zip(streamed, own)):
        reference = on_load(state, i, True, torch.bfloat16)
        for key in ("qkv", "o", "gate_up", "down"):
            codes = [x[key][2].float().cpu() for x in (mine, theirs, reference)]
            scales = [x[key][3].float().cpu() for x in (mine, theirs, reference)]
            if torch.equal(codes[0], codes[1]) and torch.equal(scales[0], scales[1]):
                continue
            apart = codes[0] != codes[1]
            found.append(
                f"layer {i} {key}: {int(apart.sum())} of {apart.numel()} codes differ (largest gap "
                f"{float((codes[0] - codes[1]).abs().max()):g}, first at {apart.nonzero()[:1].tolist()}), scales "
                f"{'equal' if torch.equal(scales[0], scales[1]) else 'differ'}; against the CPU's: streamed codes "
                f"{torch.equal(codes[0], codes[2])}, scales {torch.equal(scales[0], scales[2])}; own codes "
                f"{torch.equal(codes[1], codes[2])}, scales {torch.equal(scales[1], scales[2])}"
            )
    return found


@pytest.mark.gpu  # bench/gpu_check.sh runs the tests that carry it
@cuda
@pytest.mark.parametrize("kind", ["bf16", "channel", "tensor", "hf-fp8"])
def test_cuda_fp8_from_each_format_generates_as_the_engines_own_fp8(tmp_path, bf16, kind):
    """On the GPU: the streamed fp8 weights against the engine quantizing the whole bf16 model itself. bf16
    quantized on load gives the engine's own weights and so identical tokens. A checkpoint's scales were made
    elsewhere: amax / 448 done on the CPU and on the GPU (where torch multiplies by the reciprocal of a scalar
    divisor) part by an ulp in some rows (seen on the H200 for compressed-tensors per channel), per-tensor and
    block scales round differently again; so for those most first tokens agree, and per channel the streamed
    weights are exactly the checkpoint's."""
    from transformers import LlamaForCausalLM

    from subtool.runner.llm.checkpoint import load_streaming

    config, state, path = bf16
    source = path
    if kind in ("channel", "tensor"):
        tensors, quantization = compressed_fp8(state, kind), quant_config("compressed-tensors", strategy=kind)
        path = write_checkpoint(tmp_path / kind, config, tensors, shards=2, quantization=quantization)
    elif kind == "hf-fp8":
        tensors, quantization = hf_fp8(state, (32, 32)), quant_config("hf-fp8")
        path = write_checkpoint(tmp_path / kind, config, tensors, shards=2, quantization=quantization)
    prompts = _prompts(12)
    # loaded as transformers loads it: `LlamaForCausalLM(config).to(bf16)` also rounds the rotary frequencies to
    # bf16 (0.3164 for 0.3162), which transformers' own load and the streamed skeleton keep in fp32, and the
    # tokens then part after a few steps though every weight is equal (seen on the H200)
    whole = LlamaForCausalLM.from_pretrained(source, dtype=torch.bfloat16).to("cuda")
    expected, own = _cuda_tokens(whole, None, prompts)
    model, layers = load_streaming(path, torch.device("cuda"), torch.bfloat16, fp8=True)
    got, engine = _cuda_tokens(model, layers, prompts)
    assert all(p.device.type == "meta" for p in model.model.layers.parameters())
    assert layers[0]["qkv"][2].device.type == "cuda" and layers[0]["qkv"][2].dtype == E4M3
    if kind == "bf16":  # both sides quantize the same bf16 weights on the GPU by the same rule
        assert not _fp8_differences(state, layers, own.layer_weights)
        assert got == expected
    else:
        if kind == "channel":  # the checkpoint's own codes and scales, as written on the CPU, untouched by the load
            written = [on_load(state, i, True, torch.bfloat16) for i in range(len(layers))]
            assert not _fp8_differences(state, layers, written)
        first = sum(got[i][0] == expected[i][0] for i in range(len(prompts)))
        assert first >= 9, f"first tokens agree on {first} of {len(prompts)}"


def test_a_garbage_safetensors_file_is_one_clear_error(tmp_path):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from subtool.runner.llm.checkpoint import SafetensorsFiles

    file = tmp_path / "model.safetensors"
    header = st.dictionaries(
        st.text(max_size=6),
        st.fixed_dictionaries(
            {
                "dtype": st.sampled_from(["BF16", "F8_E4M3", "XX"]),
                "shape": st.lists(st.integers(-2, 1 << 62), max_size=3),
            },
            optional={"data_offsets": st.lists(st.integers(-1, 1 << 62), max_size=3)},
        ),
    ).map(lambda h: json.dumps(h).encode())
    lying = st.tuples(st.integers(0, 1 << 64 - 1), header).map(lambda p: p[0].to_bytes(8, "little") + p[1])
    honest = header.map(lambda h: len(h).to_bytes(8, "little") + h)

    @settings(max_examples=150, deadline=None)
    @given(st.one_of(st.binary(max_size=64), lying, honest))
    def check(data):
        file.write_bytes(data)
        try:
            SafetensorsFiles(tmp_path)
        except SubtoolError as err:
            assert err.rule == "model.load" and Path(err.path) == file

    check()
