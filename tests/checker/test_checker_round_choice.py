"""`subtool check` without --version on a tree laid out for older rounds, end to end: the tree is checked under
the latest round of its layout (one line says which and why), --version still decides when given, and every hint
that says "check with --version X" names a round whose layout is the tree's (checking with it fails on no
folder)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cases import BERT, SUB
from treegen import TreeBuilder, _generate
from typer.testing import CliRunner

from subtool.cli import app
from subtool.mlperf.rounds import ROUNDS

runner = CliRunner()
LLAMA2_99 = "llama2-70b-99"  # v6.1 lists only llama2-70b-99.9; v5.0, v5.1 and v6.0 list this one
NAMED = re.compile(r"check (?:it )?with --version (v\d+\.\d+)")
LAYOUT_FAILURES = ("layout.wrong_generation", "layout.missing_dir")


@pytest.fixture(scope="module")
def runs(loadgen_runs, tmp_path_factory):
    """The case trees' LoadGen runs, plus bert-99 runs with the v5.1 seeds (a genuine v5.1 result)."""
    cache = tmp_path_factory.mktemp("v51-runs")
    seeds = ROUNDS["v5.1"]["seeds"]
    extra = {
        f"v5.1/{BERT}/{s}": _generate(cache, f"v51-bert-99-{s}", BERT, s, seeds=seeds)
        for s in ("Offline", "SingleStream")
    }
    return {**loadgen_runs, **extra}


def _v51_tree(root: Path, runs) -> Path:
    """A closed v5.1 tree as published: measurements/, compliance/ and code/ beside results/."""
    b = TreeBuilder(root, runs, layout="v5")
    b.system("closed", SUB, "box")
    for scenario in ("Offline", "SingleStream"):
        b.result("closed", SUB, "box", BERT, scenario, run_key=f"v5.1/{BERT}/{scenario}")
    return root


def _mixed_tree(root: Path, runs, layout: str) -> Path:
    """An open tree of `layout` holding v5.0-seeded bert-99 and a llama2-70b-99 folder (v6.1 seeds)."""
    b = TreeBuilder(root, runs, layout=layout)
    b.system("open", SUB, "box")
    b.result("open", SUB, "box", BERT, "Offline", run_key=f"v5.0/{BERT}/Offline")
    for scenario in ("Offline", "Server"):
        b.result("open", SUB, "box", "llama2-70b-99.9", scenario, folder=LLAMA2_99)
    return root


def _check(tree: Path, *version: str):
    result = runner.invoke(app, ["check", str(tree), "--json", *(("--version", *version) if version else ())])
    assert result.exit_code in (0, 1), result.output
    return result, json.loads(result.stdout)


def test_a_v5_tree_without_version_is_checked_as_the_latest_v5_round(runs, tmp_path):
    tree = _v51_tree(tmp_path / "tree", runs)
    result, doc = _check(tree)
    assert result.exit_code == 0 and doc["version"] == "v5.1", doc["findings"]
    assert all(r["passed"] for r in doc["results"]) and len(doc["results"]) == 2
    (said,) = [line for line in result.stderr.splitlines() if line.startswith("round ")]
    assert said.startswith("round v5.1: the tree is laid out for v5.0, v5.1")
    assert f"closed/{SUB} holds measurements/, compliance/" in said and "--version chooses another" in said


def test_version_given_still_decides(runs, tmp_path):
    tree = _v51_tree(tmp_path / "tree", runs)
    for version in ("v6.1", "v6.0"):
        result, doc = _check(tree, version)
        assert result.exit_code == 1 and doc["version"] == version
        assert not any(line.startswith("round ") for line in result.stderr.splitlines())
    result, doc = _check(tree, "v5.0")  # v5.0's layout, not its seeds: the results fail on perf.seeds
    assert result.exit_code == 1 and {f["rule"] for f in doc["findings"] if f["severity"] == "error"} == {"perf.seeds"}


@pytest.mark.parametrize(("layout", "start"), [("v5", "v6.1"), ("v5", None), ("v6", "v5.1"), ("v6", "v6.1")])
def test_every_version_a_hint_names_fits_the_trees_layout(runs, tmp_path, layout, start):
    """Follow every "check with --version X" of every hint, and those of the checks they lead to: none fails the
    tree on its layout. (model.unknown once named v6.0 for a v5 tree's llama2-70b-99 folder, perf.seeds the
    round of a run's seeds whatever the tree's layout.)"""
    tree = _mixed_tree(tmp_path / "tree", runs, layout)
    todo, seen = [start], {start}
    while todo:
        version = todo.pop()
        _result, doc = _check(tree, *((version,) if version else ()))
        if version != start:
            bad = [f for f in doc["findings"] if f["rule"] in LAYOUT_FAILURES and f["severity"] == "error"]
            assert not bad, f"--version {version}, named by a hint, fails the {layout} tree on its layout: {bad}"
        for finding in doc["findings"]:
            for named in set(NAMED.findall(finding["hint"] or "")) - seen:
                seen.add(named)
                todo.append(named)
    assert len(seen) > 1  # the walk followed at least one hint


def test_a_v5_tree_told_to_use_v6_rules_hears_of_a_v5_round_for_its_model(runs, tmp_path):
    tree = _mixed_tree(tmp_path / "tree", runs, "v5")
    _result, doc = _check(tree, "v6.1")
    (unknown,) = [f for f in doc["findings"] if f["rule"] == "model.unknown"]
    assert "check with --version v5.1" in unknown["hint"] and "v6.0" not in NAMED.findall(unknown["hint"])
    _result, doc = _check(tree)
    assert doc["version"] == "v5.1" and not [f for f in doc["findings"] if f["rule"] == "model.unknown"]


def test_pack_without_version_packs_a_v5_tree_under_its_round_and_verify_agrees(runs, tmp_path):
    tree = _v51_tree(tmp_path / "tree", runs)
    packed = runner.invoke(app, ["pack", str(tree), "--out", str(tmp_path / "out")])
    assert packed.exit_code == 0, packed.output
    assert "round v5.1: the tree is laid out for v5.0, v5.1" in packed.stderr and "(rules v5.1)" in packed.stderr
    verified = runner.invoke(app, ["pack", "--verify", str(tmp_path / "out" / "mlperf_submission_short.tar.gz")])
    assert verified.exit_code == 0 and "rules recorded at pack time (v5.1)" in verified.stderr
