"""NaN and ±Infinity results (issue 19, item 4): never ranked, never zeroing the other teams, and never written
into leaderboard.json, which stays strict JSON."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from result_records import result_record
from typer.testing import CliRunner

from subtool.cli import app
from subtool.errors import SubtoolError
from subtool.scoring.entry import EntryRecord, SystemRecord
from subtool.scoring.ranking import build_leaderboard
from subtool.scoring.rules import default_rules_text, parse_rules

_RESULT = re.compile(rb'("key": "result_samples_per_second", "value": )[-0-9.eE+]+')


def _strict(text: str):
    def refuse(constant):
        raise AssertionError(f"{constant} in leaderboard.json")

    return json.loads(text, parse_constant=refuse)


def _tree_with_result(sc_handins, root, team: str, value: bytes):
    tree = root / f"{team}-{value.decode()[:10]}"
    shutil.copytree(sc_handins["_trees"] / team / "tree", tree)
    for log in tree.rglob("performance/run_1/mlperf_log_detail.txt"):
        data, count = _RESULT.subn(rb"\g<1>" + value, log.read_bytes())
        assert count == 1
        log.write_bytes(data)
    return tree


def test_nan_and_infinity_results_are_not_ranked_and_json_stays_strict(sc_handins, tmp_path):
    trees = tmp_path / "trees"
    # Beta and Eta share a category (AMD GPUs): an Infinity there would take every point from Beta
    for team, value in (("Eta", b"Infinity"), ("Gamma", b"NaN"), ("Zeta", b"-Infinity"), ("Epsilon", b"9" * 5000)):
        _tree_with_result(sc_handins, trees, team, value)
    shutil.copytree(sc_handins["_trees"] / "Beta" / "tree", trees / "Beta")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["score", str(trees), "--out", str(out), "--jobs", "1", "--metrics", str(tmp_path / "metrics.json")]
    )
    assert result.exit_code == 0, result.output
    doc = _strict((out / "leaderboard.json").read_text())
    _strict((tmp_path / "metrics.json").read_text())
    amd = next(c for c in doc["categories"] if c["name"] == "AMD GPUs")
    beta = next(r for r in amd["overall"] if r["team"] == "Beta")
    assert beta["status"] == "ranked" and beta["rank"] == 1 and beta["tasks"]["BERT-99 Offline"] == 100.0
    ranked = {r["team"] for c in doc["categories"] for r in c["overall"] if r["status"] == "ranked"}
    assert ranked == {"Beta"}
    results = {r["submitter"]: r for e in doc["entries"] for r in e["results"]}
    assert [e["error"] for e in doc["entries"]] == [None] * 5
    for team in ("Eta", "Gamma", "Zeta", "Epsilon"):
        assert results[team]["value"] is None and not results[team]["passed"], results[team]
    for team in ("Eta", "Gamma", "Zeta", "Epsilon"):  # the reason says it, whoever saw it first
        assert any(
            "finite" in reason.lower() or "nan" in reason.lower() or "inf" in reason.lower()
            for reason in results[team]["reasons"]
        ), results[team]["reasons"]


def _entry(index: int, team: str, value: float) -> EntryRecord:
    fields = {"accelerator_model_name": "NVIDIA H100", "accelerators_per_node": "1", "submitter": team, "system": "box"}
    rules = parse_rules(default_rules_text(), "default", "0")
    system = SystemRecord("open", team, "box", rules.category_of(fields), fields)
    result = result_record(team, value=value)
    return EntryRecord(
        index=index, input=f"{team}/x.tar.gz", kind="tarball", name="x", systems=[system], results=[result]
    )


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), 10**400])
def test_ranking_never_uses_a_non_finite_value_even_when_the_checker_passed_it(bad):
    rules = parse_rules(default_rules_text(), "default", "0")
    board = build_leaderboard([_entry(0, "Good", 1234.5), _entry(1, "Bad", bad)], rules)
    rows = {r["team"]: r for c in board["categories"] for r in c["overall"]}
    assert rows["Good"]["status"] == "ranked" and rows["Good"]["total"] == 100.0
    assert rows["Bad"]["status"] == "disqualified"


@pytest.mark.parametrize("line", ["max_points = inf", "max_points = nan", "weight = inf", "rank_points = [nan]"])
def test_rules_refuse_non_finite_numbers(line):
    """TOML has inf and nan: a rule file must not bring them into the points."""
    text = default_rules_text().replace("max_points = 100\nweight = 1.0\n", f"{line}\n", 1)
    assert line in text
    with pytest.raises(SubtoolError) as err:
        parse_rules(text, "rules.toml", "0")
    assert err.value.rule == "score.rules" and "finite" in err.value.message


def test_the_tree_reader_score_uses_survives_deep_json_and_huge_numbers(sc_handins, tmp_path):
    """scan_tree reads the system descriptions and detail logs for categories and run times: a description nested
    100,000 deep, or a log value with 5000 digits, leaves that value out instead of raising."""
    from subtool.pack.inputs import scan_tree

    tree = _tree_with_result(sc_handins, tmp_path, "Beta", b"9" * 5000)
    (tree / "open" / "Beta" / "systems" / "cluster.json").write_text("[" * 100_000 + "]" * 100_000)
    info = scan_tree(tree)
    assert [s.fields for s in info.systems] in ([], [{}])
    assert [r.perf.get("result_samples_per_second") for r in info.results] == [None]
