"""A compliance test that compares with a run this command does not make (and no earlier run left) is refused
before anything loads or runs: one line, exit 2 — not after the whole performance run."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from subtool.cli import app
from subtool.errors import SubtoolError
from subtool.runner.api import RunOptions, decide


def test_test01_with_performance_only_is_refused_before_the_run(tmp_path):
    empty = tmp_path / "no-checkpoint"  # a run that started would stop here, on loading it, with another rule
    empty.mkdir()
    (tmp_path / "dev.json").write_text("{}")
    argv = ["run", "--model-path", str(empty), "--dataset-path", str(tmp_path / "dev.json")]
    argv += ["--mode", "performance", "--compliance", "TEST01", "--out", str(tmp_path / "runs")]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "[run.compliance_needs_runs]" in errors[0] and "accuracy" in errors[0]
    assert "data:" not in res.output and not (tmp_path / "runs" / "bert-99").exists()  # nothing ran


def test_an_earlier_run_of_the_other_mode_or_mode_both_is_enough(tmp_path):
    out = tmp_path / "runs"
    opts = RunOptions(demo=True, mode="accuracy", compliance=["TEST01"], out=out)
    say = lambda *a, **k: None  # noqa: E731
    assert decide(RunOptions(demo=True, mode="both", compliance=["TEST01"], out=out), say).compliance == ["TEST01"]
    assert decide(RunOptions(demo=True, mode="performance", compliance=["TEST06"], model="llama2-70b-99", out=out), say)
    with pytest.raises(SubtoolError) as err:  # accuracy only, no earlier performance run
        decide(opts, say)
    assert err.value.rule == "run.compliance_needs_runs" and "performance" in err.value.message
    kept = out / "bert-99" / "Offline" / "performance" / "run_1" / "mlperf_log_detail.txt"
    kept.parent.mkdir(parents=True)
    kept.write_text(":::MLLOG {}\n")
    assert decide(opts, say).compliance == ["TEST01"]
