"""Rules that decide what counts: which result a task takes (scenario, benchmark folder or MLPerf model), which
scenarios rank lower-first by default, where a bonus applies, and the rules-file values that are refused (a
boolean or NaN where a number goes, a limit below its minimum, ...)."""

from __future__ import annotations

import pytest
from result_records import result_record

from subtool.errors import SubtoolError
from subtool.scoring.entry import EntryRecord, ResultRecord, SystemRecord
from subtool.scoring.ranking import build_leaderboard
from subtool.scoring.rules import default_rules_text, load_rules, parse_rules

FIELDS = {"accelerator_model_name": "NVIDIA H100", "accelerators_per_node": "1"}


def _rules(text: str):
    return parse_rules(text, "scoring.toml", "0" * 64)


def _result(team, model, scenario, value, *, mlperf_model=None, run_style="short", passed=True) -> ResultRecord:
    return result_record(team, model, scenario, value, mlperf_model=mlperf_model, run_style=run_style, passed=passed)


def _entry(index: int, team: str, results: list[ResultRecord], fields: dict | None = None) -> EntryRecord:
    fields = {**FIELDS, **(fields or {}), "system_name": f"{team} box"}
    entry = EntryRecord(index=index, input=f"{team}.tar.gz", kind="tarball", name=team)
    entry.systems = [SystemRecord("open", team, "box", load_rules(None).category_of(fields), fields)]
    entry.results = results
    return entry


def _task_rows(board: dict, task: str) -> list[tuple]:
    (category,) = board["categories"]
    return [(r["team"], r["status"], r["value"]) for r in category["tasks"][task]]


# ------------------------------------------------------------------------------------------ what a task takes
def test_a_result_of_another_scenario_does_not_count_for_the_task():
    board = build_leaderboard(
        [
            _entry(0, "Offline", [_result("Offline", "bert-99", "Offline", 100.0)]),
            _entry(1, "Server", [_result("Server", "bert-99", "Server", 900.0)]),
        ],
        load_rules(None),
    )
    assert _task_rows(board, "BERT-99 Offline") == [("Offline", "ranked", 100.0)]
    reasons = {d["team"]: d["reason"] for d in board["disqualified"]}
    assert reasons == {"Server": "no result for a scored task (found: bert-99/Server)"}


def test_an_open_benchmark_folder_counts_through_its_mlperf_model():
    # open division: the folder may be named anything; the MLPerf model it stands for decides the task
    board = build_leaderboard(
        [_entry(0, "Alpha", [_result("Alpha", "bert-99-int8-pruned", "Offline", 100.0, mlperf_model="bert-99")])],
        load_rules(None),
    )
    assert _task_rows(board, "BERT-99 Offline") == [("Alpha", "ranked", 100.0)]


def test_a_benchmark_folder_named_in_the_task_counts_whatever_its_mlperf_model():
    board = build_leaderboard(
        [_entry(0, "Alpha", [_result("Alpha", "bert-99", "Offline", 100.0, mlperf_model="")])],
        load_rules(None),
    )
    assert _task_rows(board, "BERT-99 Offline") == [("Alpha", "ranked", 100.0)]


@pytest.mark.parametrize("scenario,lower", [("SingleStream", True), ("MultiStream", True), ("Server", False)])
def test_latency_scenarios_rank_lower_first_by_default(scenario, lower):
    text = (
        default_rules_text() + f'\n[[task]]\nname = "BERT {scenario}"\nmodels = ["bert-99"]\nscenario = "{scenario}"\n'
    )
    rules = _rules(text)
    assert rules.tasks[-1].lower_is_better is lower
    entries = [
        _entry(i, team, [_result(team, "bert-99", scenario, v)]) for i, (team, v) in enumerate([("A", 2.0), ("B", 8.0)])
    ]
    rows = build_leaderboard(entries, rules)["categories"][0]["tasks"][f"BERT {scenario}"]
    first = "A" if lower else "B"
    assert rows[0]["team"] == first and rows[0]["rank"] == 1 and rows[0]["points"] == 100.0
    assert rows[1]["points"] == 25.0


def test_lower_is_better_set_in_the_rules_file_wins_over_the_scenario():
    text = default_rules_text() + (
        '\n[[task]]\nname = "BERT MultiStream"\nmodels = ["bert-99"]\nscenario = "MultiStream"\n'
        "lower_is_better = false\n"
    )
    assert _rules(text).tasks[-1].lower_is_better is False


# ------------------------------------------------------------------------------------------------ bonuses
def _bonus_rules(bonus: str):
    text = default_rules_text()
    cut = text.index("[[bonus]]")
    return _rules(text[:cut] + bonus)


def test_a_bonus_for_named_tasks_is_not_given_on_the_others():
    rules = _bonus_rules(
        '[[bonus]]\nname = "bert only"\npoints = 7\nmatch = { run_style = "short" }\ntasks = ["BERT-99 Offline"]\n'
    )
    board = build_leaderboard(
        [_entry(0, "A", [_result("A", "bert-99", "Offline", 10.0), _result("A", "llama2-70b-99", "Offline", 5.0)])],
        rules,
    )
    (category,) = board["categories"]
    assert category["tasks"]["BERT-99 Offline"][0]["bonus"] == 7.0
    assert category["tasks"]["Llama2-70B Offline"][0]["bonus"] == 0.0
    assert category["overall"][0]["bonus"] == 7.0 and category["overall"][0]["total"] == 207.0


def test_a_bonus_needs_every_field_of_its_match():
    rules = _bonus_rules(
        '[[bonus]]\nname = "full run on AMD"\npoints = 5\n'
        'match = { run_style = "^valid$", accelerator_model_name = "amd" }\n'
    )
    board = build_leaderboard(
        [
            _entry(0, "Valid", [_result("Valid", "bert-99", "Offline", 10.0, run_style="valid")]),
            _entry(1, "Short", [_result("Short", "bert-99", "Offline", 10.0)]),
        ],
        rules,
    )
    rows = board["categories"][0]["tasks"]["BERT-99 Offline"]
    assert {r["team"]: r["bonus"] for r in rows} == {"Valid": 0.0, "Short": 0.0}


def test_a_rules_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "scoring.toml"
    path.write_bytes(default_rules_text().replace('title = "Student', 'title = "Sch\xf6ne Student').encode("latin-1"))
    with pytest.raises(SubtoolError, match="not UTF-8"):
        load_rules(path)
