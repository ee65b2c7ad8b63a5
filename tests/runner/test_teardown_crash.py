"""A benchmark process that dies while shutting its SUT down, after every LoadGen run has finished, keeps those
runs: `subtool run` warns, names the rule and records how the process died in run.json, with every LoadGen log in
place. A shutdown that finds a problem (a Python error the SUT raises) still fails the run and leaves nothing."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from subtool.cli import app

# instant_backend (tests/runner/conftest.py): the instant backends here and in the benchmark's child process


def _run(tmp_path, checkpoint, squad, backend: str):
    args = ["run", "--model-path", checkpoint, "--dataset-path", squad, "--out", tmp_path / "runs"]
    args += ["--backend", backend, "--scenario", "Offline", "--mode", "both"]
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_native_crash_in_the_sut_teardown_keeps_the_finished_runs(
    tmp_path, tiny_checkpoint, small_squad, instant_backend, capfd
):
    res = _run(tmp_path, tiny_checkpoint, small_squad, "instant-abort")
    assert res.exit_code == 0, res.output
    err = " ".join((capfd.readouterr().err + res.output).split())  # a narrow console wraps the warning
    assert "killed by signal 6 while shutting the SUT down" in err and "[run.teardown_crashed]" in err
    run_dir = tmp_path / "runs" / "bert-99" / "Offline"
    record = json.loads((run_dir / "run.json").read_text())
    assert "signal 6" in record["teardown"] and "end-of-run checks did not run" in record["teardown"]
    assert record["modes"]["performance"]["result_validity"] in ("VALID", "INVALID")
    assert (run_dir / "performance/run_1/mlperf_log_detail.txt").is_file()
    assert (run_dir / "accuracy/accuracy.txt").is_file()
    assert not list(run_dir.parent.glob(".*staging*"))  # nothing half-written beside it


def test_a_clean_teardown_records_none(tmp_path, tiny_checkpoint, small_squad, instant_backend):
    res = _run(tmp_path, tiny_checkpoint, small_squad, "instant")
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "runs/bert-99/Offline/run.json").read_text())
    assert record["teardown"] is None


@pytest.mark.parametrize(
    "backend,says",
    [
        ("instant-stop-error", "the SUT found a problem at the end of the run [run.sut_error]"),
        ("instant-stop-bug", "failed while shutting the SUT down, after every LoadGen run (RuntimeError"),
    ],
)
def test_a_teardown_that_fails_in_python_still_fails_the_run(
    tmp_path, tiny_checkpoint, small_squad, instant_backend, backend, says
):
    # a finding the SUT raises, or a plain bug: not a finished session, so no run directory (as before)
    res = _run(tmp_path, tiny_checkpoint, small_squad, backend)
    assert res.exit_code != 0
    assert says in " ".join(res.output.split()), res.output
    assert not (tmp_path / "runs" / "bert-99" / "Offline").exists()


def test_ctrl_c_in_the_sut_teardown_is_an_interruption_that_keeps_the_finished_runs(
    tmp_path, tiny_checkpoint, small_squad, instant_backend
):
    """Ctrl-C while the SUT shuts down, after every LoadGen run: said as every interruption is (exit 130), both
    runs kept for the same command, not 'the benchmark process stopped (exit code 130)' as a crash."""
    from subtool.runner.interrupted import KEPT_NAME

    res = _run(tmp_path, tiny_checkpoint, small_squad, "instant-stop-ctrl-c")
    said = " ".join(res.output.split())
    assert res.exit_code == 130, said
    assert "run.crashed" not in said and "kept the finished performance and accuracy run" in said, said
    kept = tmp_path / "runs" / "bert-99" / ".Offline.interrupted"
    assert list(json.loads((kept / KEPT_NAME).read_text())["modes"]) == ["performance", "accuracy"]
    assert not (tmp_path / "runs" / "bert-99" / "Offline").exists()


def test_an_unexpected_error_in_the_benchmark_process_is_one_line_without_a_traceback(
    tmp_path, tiny_checkpoint, small_squad, instant_backend, capfd
):
    """A library's own exception type (ZeroDivisionError, a Rust parser's error …) printed a traceback, then
    'the benchmark process died' naming a staging folder that is gone; now one line, exit 70, as in the CLI."""
    res = _run(tmp_path, tiny_checkpoint, small_squad, "instant-load-bug")
    said = " ".join(res.output.split())
    captured = capfd.readouterr()
    assert res.exit_code == 70, res.output
    assert "the benchmark failed unexpectedly (KeyError: 'no such key')" in said and "[internal]" in said, said
    assert "SUBTOOL_DEBUG=1" in said and "staging" not in said
    assert "Traceback" not in res.output + captured.out + captured.err
    assert not (tmp_path / "runs" / "bert-99" / "Offline").exists()
