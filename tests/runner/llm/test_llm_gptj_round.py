"""gptj, which left the benchmark list after v5.0: with no --version, `subtool all` and the stage commands take
v5.0 (one line says so), the run gives LoadGen v5.0's official RNG seeds (LoadGen 6.0.17's own are v6.1's), and the
tree passes subtool's v5.0 checker. An explicit --version always wins.

The end-to-end run is `subtool all --model gptj-99` on the tiny gptj demo checkpoint with 24 samples and a small
Offline query (--target-qps): the same code path as `--demo` (which runs 13,368 beam-search samples twice, about two
minutes here), in seconds. The official checker's verdicts, on this tree and on the full demo's, are recorded in
tests/fixtures/llm/official_gptj_v5.json.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support.official import official_errors
from typer.testing import CliRunner

from subtool.cli import app
from subtool.mlperf.round import round_config
from subtool.mlperf.round_choice import RoundChoice, choose_round, choose_round_for_runs, choose_round_for_tree
from subtool.runner.harness import SEED_KEYS, read_detail_log

from .conftest import short_user_conf

runner = CliRunner()
RECORDED = json.loads((Path(__file__).parents[2] / "fixtures" / "llm" / "official_gptj_v5.json").read_text())
RESULT = "open/TeamX/results/box1/gptj-99/Offline"


# --------------------------------------------------------------------------------------------- round choice
def test_round_choice_for_models():
    gptj = choose_round(["gptj-99"], None)
    assert gptj.version == "v5.0" and "gptj-99 is not in the v6.1 model list" in gptj.reason
    assert choose_round(["gptj-99.9"], None).version == "v5.0"
    assert choose_round(["gptj-99"], "v6.1") == RoundChoice("v6.1")  # --version wins
    assert choose_round(["gptj-99"], "v5.1") == RoundChoice("v5.1")
    assert choose_round(["bert-99"], None) == RoundChoice("v6.1")
    assert choose_round(["llama3.1-8b"], None) == RoundChoice("v6.1")
    # v6.1 lists a variant: the open division files it through model_mapping.json, the closed one refuses it
    assert choose_round(["llama2-70b-99"], None) == RoundChoice("v6.1")
    # several results: the newest round that lists them all
    assert choose_round(["bert-99", "gptj-99"], None).version == "v5.0"
    # no round lists them all, or an unknown name: the default, and the checker says what is wrong
    assert choose_round(["llama3.1-8b", "gptj-99"], None) == RoundChoice("v6.1")
    assert choose_round(["no-such-model"], None) == RoundChoice("v6.1")


def test_round_choice_for_trees_and_run_dirs(tmp_path):
    tree = tmp_path / "tree"
    (tree / "open/TeamX/results/box1/gptj-99.9/Offline").mkdir(parents=True)
    assert choose_round_for_tree(tree, None).version == "v5.0"
    assert choose_round_for_tree(tree, "v6.0") == RoundChoice("v6.0")
    # a model_mapping.json that files the folder as a v6.1 benchmark keeps the tree in v6.1
    (tree / "open/TeamX/model_mapping.json").write_text(json.dumps({"gptj-99.9": "llama3.1-8b"}))
    assert choose_round_for_tree(tree, None) == RoundChoice("v6.1")
    assert choose_round_for_tree(tmp_path / "empty", None) == RoundChoice("v6.1")

    run_dir = tmp_path / "runs/gptj-99/Offline"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"model": "gptj-99"}))
    assert choose_round_for_runs([run_dir], [], None).version == "v5.0"
    assert choose_round_for_runs([tmp_path / "loose"], ["gptj-99"], None).version == "v5.0"  # --model of loose logs
    assert choose_round_for_runs([run_dir], [], "v6.1") == RoundChoice("v6.1")


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def gptj_run(tmp_path_factory, gptj_small):
    """`subtool run --model gptj-99` (no --version) on the small data set: (run directory, console).

    A user.conf keeps the Offline query at the data set's 24 samples (without one, LoadGen's mlperf.conf asks
    for at least 13,368, two minutes of beam search here)."""
    out = tmp_path_factory.mktemp("gptj-run")
    conf = short_user_conf(out / "user.conf", "gptj", "Offline", target_qps=1000)
    res = runner.invoke(
        app,
        [
            "run",
            "--model",
            "gptj-99",
            "--model-path",
            str(gptj_small.model_path),
            "--dataset-path",
            str(gptj_small.dataset_path),
            "--out",
            str(out / "runs"),
            "--user-conf",
            conf,
        ],
    )
    assert res.exit_code == 0, res.output
    return out / "runs/gptj-99/Offline", res.output


@pytest.fixture(scope="module")
def gptj_all(tmp_path_factory, gptj_run):
    """`subtool all --model gptj-99 --from-stage package` (no --version) over that run: (output dir, console)."""
    out = tmp_path_factory.mktemp("gptj-all") / "out"
    shutil.copytree(gptj_run[0], out / "runs/gptj-99/Offline")
    res = runner.invoke(
        app,
        [
            "all",
            "--submitter",
            "TeamX",
            "--model",
            "gptj-99",
            "--model-path",
            "unused",
            "--dataset-path",
            "unused",
            "--division",
            "open",
            "--system",
            "box1",
            "--from-stage",
            "package",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code in (0, 1), res.output
    return out, res.output


def _effective_seeds(detail_log: Path) -> dict[str, int]:
    """The seeds LoadGen says it ran with (its effective_* keys)."""
    values = read_detail_log(detail_log)
    return {k: values[f"effective_{k}"] for k in SEED_KEYS if f"effective_{k}" in values}


def _one_round_line(output: str) -> str:
    said = [ln for ln in output.splitlines() if ln.startswith("round ")]
    assert len(said) == 1, output
    return " ".join(output[output.index(said[0]) :].split())


def test_run_and_all_say_which_round_and_why(gptj_run, gptj_all):
    for output in (gptj_run[1], gptj_all[1]):
        line = _one_round_line(output)
        assert line.startswith("round v5.0: gptj-99 is not in the v6.1 model list; v5.0 is the latest round")


def test_the_run_uses_the_v5_0_seeds(gptj_run):
    run_dir, output = gptj_run
    want = dict(round_config("v5.0").seeds)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["seeds"]["round"] == "v5.0" and "subtool" in record["seeds"]["set_by"]
    assert {k: record["seeds"][k] for k in SEED_KEYS} == want
    for mode_log in ("performance/run_1/mlperf_log_detail.txt", "accuracy/mlperf_log_detail.txt"):
        assert _effective_seeds(run_dir / mode_log) == want
    assert want != dict(round_config("v6.1").seeds)  # LoadGen's own would have been v6.1's


def test_the_v5_0_tree_passes_subtool_checker(gptj_all):
    out, _ = gptj_all
    tree = out / "v5.0" / "submission"  # a round other than the default gets its own tree (issue 20 item 11)
    assert not (out / "submission").exists()
    assert (tree / RESULT / "accuracy/accuracy.txt").is_file()
    assert (tree / "open/TeamX/measurements/box1/gptj-99/Offline").is_dir()  # the v5 layout
    assert not (tree / "open/TeamX/model_mapping.json").exists()
    report = json.loads((out / "v5.0" / "check/report.json").read_text())
    # gptj's rounds reported its inferred tokens/s, as the official summary's Units column says
    assert {r["units"] for r in report["results"]} == {"Tokens/s"}
    findings = report["findings"]
    # only the small data set (the accuracy run covers 24 of 13,368 samples, the performance run loaded 24) and
    # the waived short run: no seed or model finding
    assert {(f["severity"], f["rule"]) for f in findings if f["severity"] in ("error", "waived")} == {
        ("error", "acc.dataset_size"),
        ("error", "perf.sample_count"),
        ("waived", "perf.min_duration"),
    }


def test_stage_commands_choose_v5_0_too(gptj_all, tmp_path):
    out, _ = gptj_all
    tree = out / "v5.0" / "submission"
    res = runner.invoke(app, ["check", str(tree), "--json"])
    assert "round v5.0" in res.output
    rules = {f["rule"] for f in json.loads(res.stdout)["findings"]}
    assert "perf.seeds" not in rules and not {r for r in rules if r.startswith("model.")}
    # --version wins: under v6.1 the same tree is an unknown benchmark with another round's seeds
    res = runner.invoke(app, ["check", str(tree), "--version", "v6.1", "--json"])
    assert "round v5.0" not in res.output and "model.unknown" in res.output
    # package from the run directory, without --version: a v5 tree again
    res = runner.invoke(
        app,
        [
            "package",
            "--from",
            str(out / "runs/gptj-99/Offline"),
            "--submitter",
            "TeamX",
            "--system",
            "box1",
            "--division",
            "open",
            "--out",
            str(tmp_path / "tree"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "round v5.0" in res.output and (tmp_path / "tree/open/TeamX/measurements/box1/gptj-99").is_dir()
    res = runner.invoke(
        app,
        [
            "pack",
            str(tree),
            "--out",
            str(tmp_path / "art"),
            "--waive",
            "perf.min_duration",
            "--waive",
            "acc.dataset_size",
            "--waive",
            "perf.sample_count",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "round v5.0" in res.output
    assert "v5.0" in (tmp_path / "art/mlperf_submission_short.sha256").read_text()


def test_run_command_takes_the_round(gptj_small, tmp_path):
    """`subtool run --version v6.1` keeps LoadGen's own seeds and says nothing about rounds."""
    conf = tmp_path / "user.conf"
    conf.write_text(
        "gptj.Offline.performance_sample_count_override = 24\ngptj.Offline.min_query_count = 4\n"
        "gptj.Offline.min_duration = 10\ngptj.Offline.target_qps = 4\n"
    )
    res = runner.invoke(
        app,
        [
            "run",
            "--model",
            "gptj-99",
            "--mode",
            "performance",
            "--model-path",
            str(gptj_small.model_path),
            "--dataset-path",
            str(gptj_small.dataset_path),
            "--out",
            str(tmp_path / "runs"),
            "--user-conf",
            str(conf),
            "--version",
            "v6.1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "round v5.0" not in res.output
    seeds = json.loads((tmp_path / "runs/gptj-99/Offline/run.json").read_text())["seeds"]
    assert seeds["round"] == "v6.1" and seeds["set_by"] == "loadgen mlperf.conf"
    res = runner.invoke(
        app, ["run", "--model", "gptj-99", "--demo", "--out", str(tmp_path / "r2"), "--version", "v4.0"]
    )
    assert (
        res.exit_code == 2
        and "unknown submission round 'v4.0'" in res.output
        and not (tmp_path / "r2/gptj-99").exists()
    )


def test_official_checker_v5_0(gptj_all, official_checker, tmp_path):
    """Under --version v5.0 the official checker finds only what a short run on 24 samples must break; the same
    list is recorded. Its modular checker also fails its min_query_count check on any Offline gptj result (the
    benchmark is missing from its table of minimum samples per query: a KeyError it reports as an error)."""
    out, _ = gptj_all
    errors, text = official_errors(official_checker, out / "v5.0" / "submission", "v5.0", tmp_path)
    assert errors == RECORDED["small_open_gptj-99_v5.0"]["errors"]
    assert "Traceback" not in text and not [e for e in errors if "seed" in e.lower() or "model" in e.lower()]
