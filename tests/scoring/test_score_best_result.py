"""A team with several results for one task is ranked on its best passing one: the highest throughput, the lowest
latency where lower is better; a failing result never stands in for a passing one, however good its value."""

from __future__ import annotations

from result_records import result_record

from subtool.scoring.entry import EntryRecord, ResultRecord, SystemRecord
from subtool.scoring.ranking import build_leaderboard
from subtool.scoring.rules import load_rules

FIELDS = {"accelerator_model_name": "NVIDIA H100-SXM-80GB", "accelerators_per_node": "4"}


def _result(
    model: str,
    value: float,
    *,
    scenario: str = "Offline",
    division: str = "open",
    passed: bool = True,
    submitter: str = "Alpha",
    units: str = "Tokens/s",
) -> ResultRecord:
    return result_record(
        submitter,
        model,
        scenario,
        value,
        division=division,
        passed=passed,
        units=units,
        accuracy="",
        failed_rule="acc.below_threshold",
    )


def _entry(index: int, submitter: str, results: list[ResultRecord]) -> EntryRecord:
    return EntryRecord(
        index=index,
        input=f"{submitter}.tar.gz",
        kind="tarball",
        name=submitter,
        systems=[SystemRecord("open", submitter, "box", "NVIDIA GPUs", {**FIELDS, "system": "box"})],
        results=results,
    )


def _row(board: dict, task: str, team: str) -> dict:
    (category,) = board["categories"]
    return next(r for r in category["tasks"][task] if r["team"] == team)


def test_the_best_of_several_results_counts():
    # Alpha has llama2-70b-99 and -99.9 (both count for the task) in both divisions; 310 is its best
    alpha = [
        _result("llama2-70b-99", 120.0),
        _result("llama2-70b-99.9", 310.0),
        _result("llama2-70b-99", 200.0, division="closed"),
        _result("llama2-70b-99.9", 90.0, division="closed"),
    ]
    beta = [_result("llama2-70b-99.9", 155.0, submitter="Beta")]
    board = build_leaderboard([_entry(0, "Alpha", alpha), _entry(1, "Beta", beta)], load_rules(None))
    row = _row(board, "Llama2-70B Offline", "Alpha")
    assert (row["value"], row["rank"], row["points"], row["result"]) == (
        310.0,
        1,
        100.0,
        "open/Alpha/results/box/llama2-70b-99.9/Offline",
    )
    assert _row(board, "Llama2-70B Offline", "Beta")["points"] == 50.0  # 155 / 310 of the best


def test_a_failing_result_is_not_picked_over_a_passing_one():
    alpha = [_result("llama2-70b-99.9", 900.0, passed=False), _result("llama2-70b-99", 150.0)]
    board = build_leaderboard([_entry(0, "Alpha", alpha)], load_rules(None))
    row = _row(board, "Llama2-70B Offline", "Alpha")
    assert (row["status"], row["value"]) == ("ranked", 150.0)


def test_lower_is_better_picks_the_lowest(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text(
        'title = "latency"\n[[category]]\nname = "NVIDIA GPUs"\nmatch = { accelerator_model_name = "nvidia" }\n'
        '[[task]]\nname = "BERT SingleStream"\nmodels = ["bert-99", "bert-99.9"]\n'
        'scenario = "SingleStream"\nlower_is_better = true\n'
    )
    alpha = [
        _result(m, v, scenario="SingleStream", units="Latency (ms)")
        for m, v in (("bert-99", 4.0), ("bert-99.9", 2.5), ("bert-99", 3.0))
    ]
    beta = [_result("bert-99", 5.0, scenario="SingleStream", units="Latency (ms)", submitter="Beta")]
    board = build_leaderboard([_entry(0, "Alpha", alpha), _entry(1, "Beta", beta)], load_rules(rules))
    row = _row(board, "BERT SingleStream", "Alpha")
    assert (row["value"], row["rank"], row["points"]) == (2.5, 1, 100.0)
    assert _row(board, "BERT SingleStream", "Beta")["points"] == 50.0  # 2.5 / 5 of the best


def test_a_result_outside_the_scored_divisions_is_not_ranked_even_when_it_is_the_best():
    # the default rules score open and closed; a network-division result is listed but never ranked
    alpha = [_result("llama2-70b-99", 150.0), _result("llama2-70b-99.9", 900.0, division="network")]
    beta = [_result("llama2-70b-99.9", 800.0, submitter="Beta", division="network")]
    board = build_leaderboard([_entry(0, "Alpha", alpha), _entry(1, "Beta", beta)], load_rules(None))
    row = _row(board, "Llama2-70B Offline", "Alpha")
    assert (row["status"], row["value"], row["points"]) == ("ranked", 150.0, 100.0)
    (category,) = board["categories"]
    assert [r["team"] for r in category["tasks"]["Llama2-70B Offline"]] == ["Alpha"]


def test_a_zero_result_is_never_ranked():
    alpha = [_result("llama2-70b-99", 0.0)]
    beta = [_result("llama2-70b-99", 155.0, submitter="Beta")]
    board = build_leaderboard([_entry(0, "Alpha", alpha), _entry(1, "Beta", beta)], load_rules(None))
    assert _row(board, "Llama2-70B Offline", "Alpha")["status"] == "disqualified"
    assert _row(board, "Llama2-70B Offline", "Beta")["rank"] == 1
