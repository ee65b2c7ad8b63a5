"""`--precision auto` on a pre-quantized FP8 checkpoint runs fp8 on a GPU (locally and on each Ray worker) and
fp32 on a CPU; measurements.json's weight_transformations says what was done to the weights; Ray workers size
their slots from their GPU's memory when no --batch-size is given, as the local torch-cuda SUT does."""

from __future__ import annotations

import json

import pytest

from subtool.runner.api import RunOptions, decide
from subtool.runner.llm.ray_worker import GeneratorSpec
from subtool.runner.llm.sut_ray import _on_device, generator_spec
from subtool.runner.llm.workload import Generation, LlmWorkload
from subtool.runner.ray_pool import RayPoolConfig
from subtool.runner.workload import SutConfig

HF_FP8 = {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}
COMPRESSED = {"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups": {}}
GREEDY = Generation(max_new_tokens=8, min_new_tokens=1, num_beams=1, output_dtype="int32", token_latencies=False)


def checkpoint(tmp_path, name: str, quantization: dict | None):
    path = tmp_path / name
    path.mkdir()
    config = {"model_type": "llama", **({"quantization_config": quantization} if quantization else {})}
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("quantization", [HF_FP8, COMPRESSED], ids=["hf-fp8", "compressed-tensors"])
def test_auto_is_fp8_for_an_fp8_checkpoint_on_cuda_and_fp32_on_cpu(tmp_path, quantization):
    fp8, plain = checkpoint(tmp_path, "fp8", quantization), checkpoint(tmp_path, "plain", None)
    llama = LlmWorkload("llama2-70b-99")
    assert llama.resolve_precision("torch-cuda", "auto", model_path=fp8) == "fp8"
    assert llama.resolve_precision("torch-cuda", "auto", model_path=plain) == "bf16"
    assert llama.resolve_precision("torch-cpu", "auto", model_path=fp8) == "fp32"  # dequantized on load
    assert llama.resolve_precision("torch-cuda", "bf16", model_path=fp8) == "bf16"  # asked: kept
    assert LlmWorkload("gptj-99").resolve_precision("torch-cuda", "auto", model_path=fp8) == "bf16"  # beam search
    # the run stage decides it from the checkpoint it was given, before anything loads
    data = tmp_path / "set.pkl"
    data.write_bytes(b"x")
    opts = RunOptions(model="llama2-70b-99", backend="torch-cuda", model_path=fp8, dataset_path=data)
    assert decide(opts, lambda *a, **k: None).precision == "fp8"
    # each Ray worker decides `auto` the same way for its device
    spec = GeneratorSpec(str(fp8), GREEDY, 2, None, 32, precision="auto")
    assert _on_device(spec, RayPoolConfig(inner_backend="torch-cuda")).precision == "fp8"
    assert _on_device(spec, RayPoolConfig(inner_backend="torch-cpu")).precision == "fp32"
    plain_spec = GeneratorSpec(str(plain), GREEDY, 2, None, 32, precision="auto")
    assert _on_device(plain_spec, RayPoolConfig(inner_backend="torch-cuda")).precision == "bf16"


def test_a_broken_config_is_not_fp8_and_never_raises_here(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"quantization_config": "fp8"')
    assert LlmWorkload("llama2-70b-99").resolve_precision("torch-cuda", "auto", model_path=bad) == "bf16"
    assert LlmWorkload("llama2-70b-99").resolve_precision("torch-cuda", "auto", model_path=None) == "bf16"


def test_weight_transformations_says_what_was_done_to_the_weights(tmp_path):
    fp8, plain = checkpoint(tmp_path, "fp8", HF_FP8), checkpoint(tmp_path, "plain", None)
    llama = LlmWorkload("llama2-70b-99")
    assert "pre-quantized FP8 checkpoint (Hugging Face quant_method fp8)" in _wt(llama, fp8, "fp8")
    assert "dequantized to fp32" in _wt(llama, fp8, "fp32")
    on_load = _wt(llama, plain, "fp8")
    assert "quantized to FP8 (e4m3) on load" in on_load and "per-output-channel" in on_load
    assert _wt(llama, plain, "bf16") == "none"
    assert llama.measurements(True, fp8, "fp8")["weight_transformations"].startswith("quantized to FP8")  # demo


def _wt(workload, path, precision) -> str:
    return workload.measurements(False, path, precision)["weight_transformations"]


def test_ray_workers_size_their_slots_unless_batch_size_is_given(tmp_path):
    options = dict(generation=GREEDY, eos_token_id=2, pad_token_id=None, batch_size=32)
    assert generator_spec(tmp_path, SutConfig(batch_size_given=False), options).auto_slots is True
    assert generator_spec(tmp_path, SutConfig(batch_size=8, batch_size_given=True), options).auto_slots is False


torch = pytest.importorskip("torch")


@pytest.mark.gpu  # bench/gpu_check.sh runs the tests that carry it
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_ray_workers_generator_on_cuda_sizes_its_slots_from_memory(llama2_small):
    """The worker's generator (built as on a Ray node, without Ray) takes as many slots as memory holds, capped by
    the 24 prompts: more than the 2 asked when auto_slots, exactly 2 when not."""
    from subtool.runner.llm.ray_worker import LlmWorker

    prompts = [[1, *range(100, 110 + i % 5)] for i in range(24)]
    common = dict(device="cuda", precision="bf16", engine="continuous")
    for auto, slots in ((True, 24), (False, 2)):
        spec = GeneratorSpec(str(llama2_small.model_path), GREEDY, 2, None, 2, auto_slots=auto, **common)
        generator = LlmWorker._build(spec, prompts)  # what the actor builds; ready() reports its batch_size
        assert generator.engine_name == "continuous" and generator.batch_size == slots, (auto, generator.batch_size)
        del generator
        torch.cuda.empty_cache()
