"""The rules file (every mistake refused with the key that is wrong), the default hardware categories, and the
ranking arithmetic (ties, lower-is-better tasks, rank points, entries that rank nowhere)."""

from __future__ import annotations

import pytest
from result_records import result_record

from subtool.errors import SubtoolError
from subtool.scoring.entry import EntryRecord, SystemRecord
from subtool.scoring.ranking import build_leaderboard
from subtool.scoring.rules import default_rules_text, load_rules, parse_rules


def _rules(text: str):
    return parse_rules(text, "scoring.toml", "0" * 64)


def test_default_rules_are_the_scc_tasks():
    rules = load_rules(None)
    assert rules.source == "default" and len(rules.sha256) == 64
    assert [(t.name, t.models, t.scenario, t.points) for t in rules.tasks] == [
        ("BERT-99 Offline", ("bert-99",), "Offline", "relative"),
        ("Llama2-70B Offline", ("llama2-70b-99", "llama2-70b-99.9"), "Offline", "relative"),
    ]
    assert rules.check.version == "v6.1" and rules.check.waive == ("perf.min_duration",)
    assert rules.category_names == [
        "CPUs",
        "NVIDIA GPUs",
        "AMD GPUs",
        "Intel GPUs and accelerators",
        "Other accelerators",
    ]


@pytest.mark.parametrize(
    "accelerator,count,category",
    [
        ("NVIDIA H100-SXM-80GB", "8", "NVIDIA GPUs"),
        ("A100-SXM4-80GB", "4", "NVIDIA GPUs"),
        ("NVIDIA GeForce RTX 4090", "1", "NVIDIA GPUs"),
        ("L40S", "2", "NVIDIA GPUs"),
        ("GH200 Grace Hopper Superchip", "1", "NVIDIA GPUs"),
        ("AMD Instinct MI300X", "8", "AMD GPUs"),
        ("MI250X", "4", "AMD GPUs"),
        ("Radeon PRO W7900", "2", "AMD GPUs"),
        ("Intel Data Center GPU Max 1550", "4", "Intel GPUs and accelerators"),
        ("Intel Gaudi 2", "8", "Intel GPUs and accelerators"),
        ("N/A", "0", "CPUs"),
        ("", "0", "CPUs"),
        ("N/A", "", "CPUs"),
        ("Tenstorrent Wormhole n300", "2", "Other accelerators"),
    ],
)
def test_default_categories(accelerator, count, category):
    fields = {"accelerator_model_name": accelerator, "accelerators_per_node": count}
    assert load_rules(None).category_of(fields) == category


def test_a_description_without_accelerator_fields_is_uncategorised():
    assert load_rules(None).category_of({"host_processor_model_name": "EPYC"}) == "Uncategorised"


@pytest.mark.parametrize(
    "change,message",
    [
        (("[check]", "[check]\nverison = 1"), "check: unknown key verison"),
        (('title = "', 'titel = "x"\ntitle = "'), "rules: unknown key titel"),
        (('version = "v6.1"', 'version = "v4.0"'), "check.version: unknown round 'v4.0'"),
        (
            ('waive = ["perf.min_duration"]', 'waive = ["perf.too_short"]'),
            "check.waive: unknown checker rule perf.too_short",
        ),
        (
            (
                'disqualify = ["entry.duplicate", "entry.several_teams", "entry.several_systems", '
                '"system.accelerators_contradict"]',
                'disqualify = ["summary.lies"]',
            ),
            "integrity.disqualify: unknown flag summary.lies",
        ),
        (("max_members = 10000", "max_members = 0"), "limits.max_members: must be ≥ 1"),
        (("max_members = 10000", 'max_members = "many"'), "limits.max_members: must be int, not str"),
        (
            ('failed_result = "zero"', 'failed_result = "ignore"'),
            "ranking.failed_result: must be one of zero, disqualify",
        ),
        (
            ("match = { accelerator_model_name = 'nvidia", "match = { accelerator_model_name = '(nvidia"),
            "category[2].match.accelerator_model_name: is not a valid regular expression",
        ),
        (
            (
                'points = "relative"\nmax_points = 100\nweight = 1.0\n\n[[task]]\nname = "Llama',
                'points = "rank"\nmax_points = 100\nweight = 1.0\n\n[[task]]\nname = "Llama',
            ),
            'task[0].rank_points: is required when points = "rank"',
        ),
        (('name = "Llama2-70B Offline"', 'name = "BERT-99 Offline"'), "two [[task]] tables have the same name"),
        (("points = 10\n", 'points = 10\ntasks = ["ResNet"]\n'), "bonus[0].tasks: names no [[task]]: ResNet"),
        (("[check]", "[check\n"), "not valid TOML"),
        # values of the right key but the wrong kind, range or name
        (("max_points = 100", "max_points = true"), "task[0].max_points: must be int, not a boolean"),
        (("max_points = 100", "max_points = nan"), "task[0].max_points: must be a finite number"),
        (("max_points = 100", "max_points = inf"), "task[0].max_points: must be a finite number"),
        (("max_points = 100", "max_points = -1"), "task[0].max_points: must be ≥ 0"),
        (("weight = 1.0", "weight = -1.0"), "task[0].weight: must be ≥ 0"),
        (("max_ratio = 200", "max_ratio = 0.5"), "limits.max_ratio: must be ≥ 1"),
        (("tstamps_slack_s = 120", "tstamps_slack_s = -1"), "integrity.tstamps_slack_s: must be ≥ 0"),
        (
            ('divisions = ["open", "closed"]', 'divisions = ["open", "closd"]'),
            "check.divisions: unknown division closd",
        ),
        (('\npoints = "relative"', '\npoints = "linear"'), "task[0].points: must be one of relative, rank"),
        (
            ('\npoints = "relative"', '\npoints = "rank"\nrank_points = [10, nan]'),
            "task[0].rank_points: must be a list",
        ),
        (
            ('\npoints = "relative"', '\npoints = "rank"\nrank_points = [10, true]'),
            "task[0].rank_points: must be a list",
        ),
        (('models = ["bert-99"]', "models = []"), "task[0].models: must name at least one benchmark"),
        (('models = ["bert-99"]', "models = [99]"), "task[0].models: must be a list of strings"),
        (('scenario = "Offline"\n', ""), "task[0].scenario: is required"),
        (('scenario = "Offline"', "scenario = 1"), "task[0].scenario: must be str, not int"),
        (("skip_compliance = false", "skip_compliance = 0"), "check.skip_compliance: must be bool, not int"),
    ],
)
def test_rule_file_mistakes_are_refused_with_the_key(change, message):
    old, new = change
    text = default_rules_text()
    assert old in text, old
    with pytest.raises(SubtoolError) as err:
        _rules(text.replace(old, new, 1))
    assert err.value.rule == "score.rules" and err.value.path == "scoring.toml"
    assert message in err.value.message, err.value.message


def test_rules_without_tasks_are_refused(tmp_path):
    text = default_rules_text()
    cut = text[: text.index("[[task]]")]
    with pytest.raises(SubtoolError, match="no \\[\\[task\\]\\]"):
        _rules(cut)
    with pytest.raises(SubtoolError, match="cannot read the rules file"):
        load_rules(tmp_path / "missing.toml")


# ------------------------------------------------------------------------------------------------ ranking
def _entry(
    index: int,
    team: str,
    results: list[tuple[str, str, float | None, bool]],
    accel="NVIDIA H100",
    error: dict | None = None,
) -> EntryRecord:
    entry = EntryRecord(index=index, input=f"{team}.tar.gz", kind="tarball", name=team, error=error)
    if error:
        return entry
    fields = {"accelerator_model_name": accel, "accelerators_per_node": "1", "system_name": f"{team} box"}
    entry.systems = [SystemRecord("open", team, "box", load_rules(None).category_of(fields), fields)]
    for model, scenario, value, passed in results:
        entry.results.append(result_record(team, model, scenario, value, passed=passed))
    return entry


def test_ties_share_a_rank_and_points():
    board = build_leaderboard(
        [
            _entry(0, "A", [("bert-99", "Offline", 200.0, True)]),
            _entry(1, "B", [("bert-99", "Offline", 200.0, True)]),
            _entry(2, "C", [("bert-99", "Offline", 50.0, True)]),
        ],
        load_rules(None),
    )
    rows = board["categories"][0]["tasks"]["BERT-99 Offline"]
    assert [(r["team"], r["rank"], r["points"]) for r in rows] == [("A", 1, 100.0), ("B", 1, 100.0), ("C", 3, 25.0)]


def test_latency_tasks_rank_lower_first_and_rank_points_run_out():
    text = default_rules_text() + (
        '\n[[task]]\nname = "BERT SingleStream"\nmodels = ["bert-99"]\n'
        'scenario = "SingleStream"\npoints = "rank"\nrank_points = [10, 5]\n'
    )
    rules = _rules(text)
    assert rules.tasks[-1].lower_is_better
    entries = [
        _entry(i, team, [("bert-99", "SingleStream", ms, True)])
        for i, (team, ms) in enumerate([("Slow", 9.0), ("Fast", 1.5), ("Mid", 3.0)])
    ]
    rows = build_leaderboard(entries, rules)["categories"][0]["tasks"]["BERT SingleStream"]
    assert [(r["team"], r["rank"], r["points"]) for r in rows] == [("Fast", 1, 10.0), ("Mid", 2, 5.0), ("Slow", 3, 0.0)]


def test_entries_that_rank_nowhere_are_listed_with_why():
    entries = [
        _entry(0, "Good", [("bert-99", "Offline", 10.0, True)]),
        _entry(1, "Invalid", [("bert-99", "Offline", 12.0, False)]),
        _entry(2, "Resnet", [("resnet", "Offline", 99.0, True)]),
        _entry(3, "Broken", [], error={"rule": "extract.truncated", "message": "refused: cut short"}),
    ]
    board = build_leaderboard(entries, load_rules(None))
    reasons = {d["team"] or d["input"]: d["reason"] for d in board["disqualified"]}
    assert reasons == {
        "Invalid": "perf.result_invalid: LoadGen says INVALID (x)",
        "Resnet": "no result for a scored task (found: resnet/Offline)",
        "Broken.tar.gz": "extract.truncated: refused: cut short",
    }
    overall = board["categories"][0]["overall"]
    assert [(r["team"], r["status"]) for r in overall] == [("Good", "ranked"), ("Invalid", "disqualified")]
