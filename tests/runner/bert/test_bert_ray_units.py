"""BERT's Ray parts without a cluster: what a worker computes, its setup errors, and the CLI's refusals (the
generic pool, ledger and options: tests/runner/test_ray_pool.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install 'mlperf-subtool[ray]')")
pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("mlperf_loadgen")

from typer.testing import CliRunner  # noqa: E402

from subtool.cli import app  # noqa: E402
from subtool.runner.bert.ray_worker import BertWorker, ModelInputs  # noqa: E402


def transformers_logits(checkpoint, features, indices):
    """Each sample alone through transformers' BertForQuestionAnswering: the reference the workers must match."""
    import torch
    from transformers import BertForQuestionAnswering

    model = BertForQuestionAnswering.from_pretrained(str(checkpoint), dtype=torch.float32).eval()
    out = {}
    with torch.inference_mode():
        for i in indices:
            n = int(features.seq_lengths[i])
            res = model(
                input_ids=torch.from_numpy(features.input_ids[i : i + 1, :n].astype(np.int64)),
                token_type_ids=torch.from_numpy(features.segment_ids[i : i + 1, :n].astype(np.int64)),
            )
            out[i] = torch.stack([res.start_logits[0], res.end_logits[0]], -1).numpy()
    return out


@pytest.mark.parametrize("inner", ["torch-cpu", "torch-cuda"])
def test_a_worker_computes_the_reference_logits(tiny_checkpoint, small_feature_arrays, inner):
    f = small_feature_arrays
    # the torch-cuda engine's packed forward runs on the CPU here (fp32, eager): same arithmetic, no GPU
    worker = BertWorker(inner, str(tiny_checkpoint), ModelInputs.from_features(f), batch_size=8, device="cpu")
    assert worker.ready()["error"] is None
    indices = [44, 3, 17, 0, 29, 8, 40, 12, 5, 33, 21]  # unsorted, mixed lengths, more than one batch
    got = worker.infer(indices)
    longest = int(max(f.seq_lengths[i] for i in indices))
    assert got.shape == (len(indices), longest, 2) and got.dtype == np.float32  # the driver pads to 384
    ref = transformers_logits(tiny_checkpoint, f, indices)
    for row, i in enumerate(indices):
        n = int(f.seq_lengths[i])
        np.testing.assert_allclose(got[row, :n], ref[i], rtol=1e-4, atol=1e-5)  # padding rows: unread
    assert worker.samples == len(indices)


def test_a_worker_that_cannot_load_reports_why_as_data(tmp_path, small_feature_arrays):
    worker = BertWorker("torch-cpu", str(tmp_path / "no-such-model"), ModelInputs.from_features(small_feature_arrays))
    info = worker.ready()
    assert info["error"]["rule"] == "model.missing" and info["pid"] > 0 and info["node"]
    with pytest.raises(RuntimeError, match="has no model"):
        worker.infer([0])


def test_a_worker_takes_another_precision_and_fp8_settings_only_on_the_packed_engine(
    tiny_checkpoint, small_feature_arrays, small_features
):
    from subtool.runner.bert import fp8_plan
    from subtool.runner.bert.packed_model import PackedBert

    inputs = ModelInputs.from_features(small_feature_arrays)
    padded = BertWorker("torch-cpu", str(tiny_checkpoint), inputs, batch_size=8)
    with pytest.raises(RuntimeError, match="runs PaddedEngine, which cannot decide --precision fp8"):
        padded.decide(None, 0.99, "fp8")
    worker = BertWorker("torch-cuda", str(tiny_checkpoint), inputs, "bf16", 8, device="cpu")
    with pytest.raises(ValueError, match="no fp8 plan for a bf16 engine"):
        worker.take("bf16", {"scales": {}, "source": "", "fallback": []})
    planned = PackedBert(tiny_checkpoint, device="cpu", precision="fp8")
    fp8_plan.calibrate(planned, small_features.features, range(0, 45, 3), 8 * 384)
    fp8_plan.apply_fallback(planned, [1])
    worker.take("fp8", fp8_plan.settings(planned))  # a bf16 worker loads fp8 and takes the plan
    assert worker.engine.precision == "fp8" and worker.engine.model.layer_ops == planned.layer_ops
    assert worker.engine.model.static_scales() == planned.static_scales()


def test_cli_refuses_zero_workers_in_one_line(tmp_path):
    res = CliRunner().invoke(app, ["run", "--demo", "--workers", "0", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--workers must be at least 1" in res.output
    assert "Traceback" not in res.output and not any(tmp_path.iterdir())


def test_cli_ray_options_name_what_each_worker_runs():
    from subtool.cli_options import _ray_extra

    assert _ray_extra("torch-cpu", {"engine": "x"}, None, None) == ("torch-cpu", {"engine": "x"})
    assert _ray_extra("auto", {}, None, 4) == ("ray", {"inner_backend": "auto", "workers": 4})
    assert _ray_extra("ray", {}, "auto", None) == ("ray", {"inner_backend": "torch-cpu", "ray_address": "auto"})
    assert _ray_extra("torch-cuda", {}, "node1:6379", 16) == (
        "ray",
        {"inner_backend": "torch-cuda", "ray_address": "node1:6379", "workers": 16},
    )
