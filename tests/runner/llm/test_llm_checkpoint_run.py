"""`subtool run --model llama2-70b-99 --model-path <dir>` on CPU through LoadGen with the llama2 demo's weights
rewritten in the formats teams download: bf16 in several safetensors shards (streamed by the continuous engine, the
same tokens as the batched engine's whole load) and transformers' FP8 (picked up by the continuous engine on its
own, dequantized: CPUs have no fp8 matrix products)."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from subtool.cli import app

from .test_llm_checkpoint import hf_fp8, quant_config, write_checkpoint

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")


def _copy_as(demo_model, path, convert, quantization=None, shards=3):
    """The demo checkpoint's config, tokenizer and settings, its weights in bf16 through `convert`."""
    from transformers import AutoConfig

    path.mkdir()
    for f in demo_model.iterdir():
        if f.name != "model.safetensors" and f.name != "config.json":
            shutil.copy(f, path / f.name)
    state = {k: v.to(torch.bfloat16) for k, v in safetensors_torch.load_file(demo_model / "model.safetensors").items()}
    config = AutoConfig.from_pretrained(demo_model)
    return write_checkpoint(path, config, convert(state), shards=shards, quantization=quantization)


def _run(model_path, dataset, out, *extra):
    args = ["run", "--model", "llama2-70b-99", "--mode", "accuracy", "--model-path", model_path]
    args += ["--dataset-path", dataset, "--out", out, *extra]
    return CliRunner().invoke(app, [str(a) for a in args])


def _tokens(out) -> dict:
    import numpy as np

    entries = json.loads((out / "llama2-70b-99/Offline/accuracy/mlperf_log_accuracy.json").read_text())
    return {e["qsl_idx"]: np.frombuffer(bytes.fromhex(e["data"]), dtype="int32").tolist() for e in entries}


def test_llama2_70b_runs_from_sharded_bf16_and_hf_fp8_checkpoints(tmp_path, llama2_small, capfd):
    from .conftest import SMALL

    sharded = _copy_as(llama2_small.model_path, tmp_path / "bf16", lambda s: s)
    assert len(list(sharded.glob("*.safetensors"))) == 3
    streamed = _run(sharded, llama2_small.dataset_path, tmp_path / "streamed", "--engine", "continuous")
    assert streamed.exit_code == 0, streamed.output
    assert "llm: streamed" in capfd.readouterr().err  # the benchmark process says how the weights loaded
    whole = _run(sharded, llama2_small.dataset_path, tmp_path / "whole", "--engine", "batched")
    assert whole.exit_code == 0, whole.output
    assert _tokens(tmp_path / "streamed") == _tokens(tmp_path / "whole")
    assert sorted(_tokens(tmp_path / "whole")) == list(range(SMALL))

    fp8 = _copy_as(
        llama2_small.model_path, tmp_path / "fp8", lambda s: hf_fp8(s, (32, 32)), quantization=quant_config("hf-fp8")
    )
    res = _run(fp8, llama2_small.dataset_path, tmp_path / "fp8-run")
    assert res.exit_code == 0, res.output
    assert "pre-quantized weights dequantized to fp32" in capfd.readouterr().err
    tokens, reference = _tokens(tmp_path / "fp8-run"), _tokens(tmp_path / "whole")
    assert sorted(tokens) == list(range(SMALL)) and all(len(t) == 16 for t in tokens.values())
    first = sum(tokens[i][0] == reference[i][0] for i in range(SMALL))
    assert first >= SMALL // 2, f"first tokens agree with bf16 on {first} of {SMALL}"

    refused = _run(fp8, llama2_small.dataset_path, tmp_path / "refused", "--engine", "batched")
    assert refused.exit_code == 2 and "[run.engine]" in refused.output and "pre-quantized" in refused.output
