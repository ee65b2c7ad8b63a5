"""`run` and `all` share their run options (defined once, in cli_options.py), and the help texts say what the code
does: the models subtool runs, each family's data set, what `auto` picks, `--no-pr` spelled as typed."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from subtool.cli import app

# run's own options, and why `all` has none of them: all runs both modes (package needs both), has its own
# --out (OUT holds runs/, the tree, check/, artifacts/) and --json (the outcome), and --find-perf runs nothing else
RUN_ONLY = {"mode", "out", "find_perf", "json_out"}


def _params(name: str) -> dict:
    group = typer.main.get_command(app)
    return {p.name: p for p in group.commands[name].params}


def _help(command: str, option: str) -> str:
    return _params(command)[option].help or ""


def test_every_run_option_is_an_all_option_with_the_same_flags_help_and_default():
    run, all_ = _params("run"), _params("all")
    shared = set(run) - RUN_ONLY
    assert shared <= set(all_), f"all lacks {sorted(shared - set(all_))}"
    for name in shared:
        a, b = run[name], all_[name]
        assert (a.opts, a.help, a.default, a.multiple, a.is_flag) == (b.opts, b.help, b.default, b.multiple, b.is_flag)
    assert {"precision", "threads", "target_latency_ms", "min_duration_ms", "user_conf"} <= shared
    assert RUN_ONLY <= set(run)  # the exceptions exist: a rename there must come back here


def test_model_help_lists_every_model_subtool_runs():
    from subtool.runner.workload import WORKLOAD_MODULES

    text = _help("run", "model")
    assert "later releases" not in text
    for name in WORKLOAD_MODULES:
        assert name in text


def test_dataset_help_says_what_each_family_reads():
    from subtool.runner.llm.specs import LLM_SPECS

    text = _help("run", "dataset_path")
    assert "SQuAD v1.1 dev JSON" in text and "OpenOrca" in text and "CNN-DailyMail" in text
    for spec in LLM_SPECS.values():
        assert spec.dataset_file in text, spec.name


def test_auto_in_the_help_is_what_the_families_pick():
    """--precision auto on torch-cuda: what each family's resolve_precision returns; BERT's is decided from an
    accuracy check, on one GPU and on Ray's GPU workers alike (the precision those workers start in, GPU_PRECISION,
    is no choice, so the help must not name it as one); never 'bf16 for BERT' again."""
    pytest.importorskip("numpy")
    from subtool.runner.bert.workload import GPU_PRECISION
    from subtool.runner.llm.workload import workload as llm_workload

    text = " ".join(_help(c, "precision") for c in ("run", "all"))
    assert "for BERT the fastest precision that a short accuracy check" in text
    assert "on Ray GPU workers decided by the first and taken by all" in text
    assert f"{GPU_PRECISION} for BERT" not in text and "bf16 for BERT" not in text
    for name in ("llama3.1-8b", "llama2-70b-99", "gptj-99"):
        assert f"{llm_workload(name).resolve_precision('torch-cuda', 'auto')} for the LLMs" in text
        assert llm_workload(name).resolve_precision("torch-cpu", "auto") == "fp32"  # "fp32 otherwise"
    backend = _help("all", "backend")
    assert "torch-cuda when a GPU is visible, else torch-cpu" in backend and "bf16" not in backend


def test_backend_help_names_every_backend_the_families_offer():
    from subtool.runner.workload import backend_names

    text = _help("run", "backend")
    for name in backend_names():
        if name != "instant":  # a test's own backend, registered by tests/runner
            assert name in text


@pytest.mark.parametrize("command", ["publish", "all"])
def test_no_pr_is_spelled_as_typed(command):
    out = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
    assert "--no-pr" in out and "--no-no-pr" not in out
    assert _params(command)["no_pr"].opts == ["--no-pr"] and not _params(command)["no_pr"].secondary_opts


RECORDER = """\
import json, os, sys
sys.path.insert(0, {runner!r})
import instant_sut
from subtool.runner.bert import workload as bert

def _recording(model_path, features, config):
    with open(os.environ["SUBTOOL_TEST_SUT_CONFIG"], "w") as fh:
        json.dump({{"precision": config.precision, "threads": config.threads}}, fh)
    return instant_sut._factory(model_path, features, config)

bert.SUT_BACKENDS["instant"] = _recording
"""


def test_all_passes_precision_and_threads_to_the_runner(tmp_path):
    """`subtool all --precision bf16 --threads 3` on a SUT that writes down the SutConfig it was built with."""
    pytest.importorskip("torch")
    pytest.importorskip("mlperf_loadgen")
    import subprocess

    site = tmp_path / "site"
    site.mkdir()
    runner_tests = str(Path(__file__).resolve().parents[1] / "runner")
    (site / "sitecustomize.py").write_text(RECORDER.format(runner=runner_tests))
    record = tmp_path / "sut_config.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
        "SUBTOOL_TEST_SUT_CONFIG": str(record),
    }
    out = tmp_path / "out"
    argv = ["all", "--submitter", "TeamX", "--out", str(out), "--only", "run", "--backend", "instant"]
    proc = subprocess.run(
        [sys.executable, "-m", "subtool.cli", *argv, "--precision", "bf16", "--threads", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(record.read_text()) == {"precision": "bf16", "threads": 3}
    run = json.loads((out / "runs" / "bert-99" / "Offline" / "run.json").read_text())
    assert run["precision"] == "bf16" and run["backend"] == "instant"
