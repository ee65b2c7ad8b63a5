"""`subtool run` and `subtool all` with only half of a benchmark's files fetched: one line naming the `subtool fetch`
command that gets the rest, exit 2, nothing run or written; `--demo` reaches the run stage and runs the demo
instead (stopped here by a later check, so no benchmark runs)."""

from __future__ import annotations

import pytest
from support.fetched import install_as_fetched
from typer.testing import CliRunner

from subtool.cli import app


@pytest.fixture
def half_fetched(tmp_path, monkeypatch, tiny_checkpoint):
    cache = tmp_path / "cache"  # never the session's: fetched files there would reach every demo run
    monkeypatch.setenv("SUBTOOL_CACHE", str(cache))
    install_as_fetched(cache, "bert-99", "model", tiny_checkpoint)
    return cache


@pytest.mark.parametrize("command", [["run"], ["all", "--submitter", "TeamX"]])
def test_half_fetched_is_one_line_naming_the_fetch_command(half_fetched, tmp_path, command):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, [*command, "--backend", "torch-cpu", "--out", str(out)])
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "`subtool fetch bert-99 --dataset-only`" in errors[0], res.output
    assert "[run.inputs]" in errors[0] and "Traceback" not in res.output
    assert not (out / "runs").exists() and not (out / "bert-99").exists()


def test_the_demo_flag_reaches_the_run_stage(half_fetched, tmp_path):
    conf = str(tmp_path / "no-such.conf")
    res = CliRunner().invoke(
        app, ["run", "--demo", "--backend", "torch-cpu", "--user-conf", conf, "--out", str(tmp_path)]
    )
    # past the fetched-files decision (the demo needs none), stopped at the next check
    assert res.exit_code == 2 and "user.conf not found" in res.output and "subtool fetch" not in res.output
