"""The fast SUT's scheduling end to end under real LoadGen, with its forward on the CPU; and its CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
lg = pytest.importorskip("mlperf_loadgen")

from subtool.runner.bert.sut_cuda import TorchCudaBertSUT  # noqa: E402
from subtool.runner.bert.workload import BertQSL, read_accuracy_log  # noqa: E402
from subtool.runner.harness import run_loadgen  # noqa: E402


def settings(scenario: str, **kw):
    s = lg.TestSettings()
    s.scenario = getattr(lg.TestScenario, scenario)
    s.min_duration_ms = kw.get("min_duration_ms", 200)
    if scenario == "Offline":
        s.offline_expected_qps = kw.get("qps", 1000)
    else:
        s.server_target_qps = kw.get("qps", 200)
        s.server_target_latency_ns = 2_000_000_000
        s.min_query_count = kw.get("min_query_count", 100)
    return s


@pytest.mark.parametrize("budget", [384, 1536])
def test_offline_accuracy_answers_every_sample_once_with_reference_logits(
    tmp_path, tiny_checkpoint, small_features, hf_logits, budget
):
    f = small_features.features
    sut = TorchCudaBertSUT(tiny_checkpoint, f, precision="fp32", token_budget=budget, device="cpu")
    qsl = BertQSL(f, len(f))
    try:
        run = run_loadgen(
            sut.handle, qsl.handle, settings("Offline"), scenario="Offline", mode="accuracy", outdir=tmp_path
        )
    finally:
        sut.stop()
        qsl.destroy()
    assert not run.errors
    entries = json.loads((tmp_path / "mlperf_log_accuracy.json").read_text())
    assert sorted(e["qsl_idx"] for e in entries) == list(range(len(f)))  # every sample exactly once
    logits = read_accuracy_log(tmp_path / "mlperf_log_accuracy.json")
    for i, arr in logits.items():
        n = int(f.seq_lengths[i])
        assert arr.shape == (384, 2)
        np.testing.assert_allclose(arr[:n], hf_logits[i], rtol=1e-4, atol=1e-5)
        assert not arr[n:].any()
    stats = sut.stats()
    assert stats["issued"] == stats["answered"] == len(f)
    assert stats["real_tokens"] <= stats["padded_tokens"] and stats["batches"] >= int(f.seq_lengths.sum()) // budget


@pytest.mark.parametrize(
    "given, budget",
    [({}, 16384), ({"batch_size": 8}, 8 * 384), ({"batch_size": 8, "token_budget": 1000}, 1000)],
)
def test_a_batch_holds_the_token_budget_else_batch_size_samples_else_16384_tokens(
    tiny_checkpoint, small_features, given, budget
):
    """Without --batch-size (the workload passes None) a batch holds the 16,384 tokens bench/bert_gpu.py measures
    at, not 32 × 384 = 12,288; --batch-size N gives N × 384; a token budget, where given, decides."""
    sut = TorchCudaBertSUT(tiny_checkpoint, small_features.features, precision="fp32", device="cpu", **given)
    try:
        assert sut.budget == budget and sut.stats()["token_budget"] == budget
    finally:
        sut.stop()


def test_server_queries_arriving_one_by_one_are_all_answered(tmp_path, tiny_checkpoint, small_features):
    f = small_features.features
    sut = TorchCudaBertSUT(tiny_checkpoint, f, precision="fp32", token_budget=2048, device="cpu")
    qsl = BertQSL(f, len(f))
    try:
        run = run_loadgen(
            sut.handle,
            qsl.handle,
            settings("Server", qps=150, min_query_count=150),
            scenario="Server",
            mode="performance",
            outdir=tmp_path,
        )
    finally:
        sut.stop()  # raises if any query went unanswered or was answered twice
        qsl.destroy()
    assert not run.errors and run.result is not None
    assert sut.stats()["issued"] == sut.stats()["answered"] >= 150


def test_a_failing_forward_still_answers_loadgen_and_stop_reports_it(tmp_path, tiny_checkpoint, small_features):
    from subtool.errors import SubtoolError

    f = small_features.features
    sut = TorchCudaBertSUT(tiny_checkpoint, f, precision="fp32", token_budget=1024, device="cpu")

    def broken(*a, **k):
        raise RuntimeError("device lost")

    sut.model.forward = broken
    qsl = BertQSL(f, len(f))
    try:
        run_loadgen(
            sut.handle, qsl.handle, settings("Offline"), scenario="Offline", mode="accuracy", outdir=tmp_path
        )  # returns: LoadGen got an (empty) answer for each sample
        with pytest.raises(SubtoolError, match="device lost"):
            sut.stop()
    finally:
        qsl.destroy()


def test_cli_refuses_torch_cuda_without_a_gpu_in_one_line(tmp_path, tiny_checkpoint, small_squad):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from typer.testing import CliRunner

    from subtool.cli import app

    res = CliRunner().invoke(
        app,
        [
            "run",
            "--backend",
            "torch-cuda",
            "--precision",
            "bf16",
            "--model-path",
            str(tiny_checkpoint),
            "--dataset-path",
            str(small_squad),
            "--out",
            str(tmp_path / "runs"),
        ],
    )
    assert res.exit_code == 2, res.output
    assert "needs a CUDA GPU" in res.output and "run.device" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "runs" / "bert-99" / "Offline").exists()  # nothing half-written


def test_cli_refuses_an_unsupported_precision(tmp_path, tiny_checkpoint, small_squad):
    from typer.testing import CliRunner

    from subtool.cli import app

    res = CliRunner().invoke(
        app,
        [
            "run",
            "--backend",
            "torch-cuda",
            "--precision",
            "int4",
            "--model-path",
            str(tiny_checkpoint),
            "--dataset-path",
            str(small_squad),
            "--out",
            str(tmp_path / "runs"),
        ],
    )
    assert res.exit_code == 2, res.output
    assert "--precision 'int4' is not one of" in res.output and "[cli.usage]" in res.output  # before any load


def test_auto_precision_is_fp16_for_bert_and_bf16_for_llms_on_the_gpu_and_fp32_on_the_cpu():
    from subtool.runner.bert.workload import GPU_PRECISION
    from subtool.runner.bert.workload import workload as bert_workload
    from subtool.runner.llm.workload import workload as llm_workload

    bert, llm = bert_workload("bert-99"), llm_workload("llama2-70b-99")
    assert GPU_PRECISION == "fp16"  # bert's torch-cuda choice (resolving it there needs a GPU)
    assert llm.resolve_precision("torch-cuda", "auto") == "bf16"
    assert bert.resolve_precision("torch-cpu", "auto") == "fp32"
    assert llm.resolve_precision("torch-cpu", "auto") == "fp32"
    assert llm.resolve_precision("torch-cuda", "fp16") == "fp16"
