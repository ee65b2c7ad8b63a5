"""llama2-70b-99 under v6.1, which lists only llama2-70b-99.9: the open division files it through
model_mapping.json (both checkers accept the tree), the closed division refuses it in one line naming the rule and
what to use, before any run; the official checker's verdict is recorded in
tests/fixtures/llm/official_round_names.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.official import official_errors
from typer.testing import CliRunner

from subtool.cli import app
from subtool.mlperf.benchmarks import BENCHMARKS
from subtool.mlperf.round_choice import filed_as, stand_in

runner = CliRunner()
RECORDED = json.loads((Path(__file__).parents[2] / "fixtures" / "llm" / "official_round_names.json").read_text())
SUB = "open/TeamX"


@pytest.fixture(scope="module")
def open_all(tmp_path_factory, llama2_small):
    """`subtool all --model llama2-70b-99 --division open` on the small data set: its output directory."""
    out = tmp_path_factory.mktemp("l2-99") / "out"
    res = runner.invoke(
        app,
        [
            "all",
            "--submitter",
            "TeamX",
            "--model",
            "llama2-70b-99",
            "--model-path",
            str(llama2_small.model_path),
            "--dataset-path",
            str(llama2_small.dataset_path),
            "--division",
            "open",
            "--system",
            "box1",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert res.exit_code in (0, 1), res.output
    return out


def test_open_tree_files_llama2_70b_99_as_the_round_lists_it(open_all):
    tree = open_all / "submission"
    assert (tree / SUB / "results/box1/llama2-70b-99/Offline/accuracy/accuracy.txt").is_file()
    assert json.loads((tree / SUB / "model_mapping.json").read_text()) == {"llama2-70b-99": "llama2-70b-99.9"}
    res = runner.invoke(app, ["check", str(tree), "--json"])
    rules = {f["rule"] for f in json.loads(res.stdout)["findings"]}
    assert not {r for r in rules if r.startswith("model.")}
    # what `subtool all` found: only the small data set (and the waived short run)
    findings = json.loads((open_all / "check" / "report.json").read_text())["findings"]
    assert {(f["severity"], f["rule"]) for f in findings if f["severity"] in ("error", "waived")} == {
        ("error", "acc.dataset_size"),
        ("waived", "perf.min_duration"),
    }


def test_official_checker_accepts_the_open_tree(open_all, official_checker, tmp_path):
    errors, out = official_errors(official_checker, open_all / "submission", "v6.1", tmp_path)
    assert errors == RECORDED["open_llama2-70b-99_v6.1"]["errors"]
    assert "Traceback" not in out and not [e for e in errors if "model" in e.lower()]


def test_closed_package_refuses_in_one_line(open_all, tmp_path):
    run_dir = open_all / "runs/llama2-70b-99/Offline"
    out = tmp_path / "tree"
    res = runner.invoke(
        app,
        [
            "package",
            "--from",
            str(run_dir),
            "--submitter",
            "TeamX",
            "--system",
            "box1",
            "--division",
            "closed",
            "--version",
            "v6.1",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 2
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "[package.model_not_in_round]" in errors[0], res.output
    assert "llama2-70b-99 is not a v6.1 benchmark" in errors[0] and "llama2-70b-99.9" in errors[0]
    assert "--model llama2-70b-99.9" in res.output and "--version v6.0" in res.output
    assert not out.exists()
    # v6.0 still lists it: the same run goes to its closed division under its own name
    res = runner.invoke(
        app,
        [
            "package",
            "--from",
            str(run_dir),
            "--submitter",
            "TeamX",
            "--system",
            "box1",
            "--division",
            "closed",
            "--version",
            "v6.0",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (out / "closed/TeamX/results/box1/llama2-70b-99/Offline").is_dir()
    assert not (out / "closed/TeamX/model_mapping.json").exists()


def test_closed_all_refuses_before_running(tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "all",
            "--submitter",
            "TeamX",
            "--model",
            "llama2-70b-99",
            "--model-path",
            str(tmp_path / "ckpt"),
            "--dataset-path",
            str(tmp_path / "data.pkl"),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 2
    assert "[package.model_not_in_round]" in res.output and "llama2-70b-99.9" in res.output
    assert not (out / "runs").exists()


def test_stand_ins():
    b = BENCHMARKS
    assert stand_in(b["llama2-70b-99"], "v6.1") is b["llama2-70b-99.9"]
    assert stand_in(b["llama2-70b-99"], "v6.0") is None  # listed there
    assert stand_in(b["llama3.1-8b"], "v6.1") is None
    assert stand_in(b["gptj-99"], "v6.1") is None  # no variant in v6.1 at all: left to the checker
    assert filed_as(b["llama2-70b-99"], "v6.1", "open") is b["llama2-70b-99.9"]
    assert filed_as(b["bert-99"], "v6.1", "closed") is b["bert-99"]
