"""`subtool score` at the accuracy boundary: teams whose hand-ins sit exactly at, just over and just under the
round's thresholds (bert-99 F1, and each Llama2-70B-99.9 metric), packed by the real pack stage and scored
through the CLI. At or over is ranked; 0.01 under is disqualified for that task, naming the metric. The thresholds
are the published ones written out (reference × fraction), never read from the code under test."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from subtool.cli import app

KEYS = {
    "F1": '"f1": ',
    "ROUGE1": "'rouge1': ",
    "ROUGE2": "'rouge2': ",
    "ROUGEL": "'rougeL': ",
    "TOKENS_PER_SAMPLE": "'tokens_per_sample': ",
}
STEP = 0.01


THRESHOLDS = {
    "bert-99": {"F1": 90.874 * 0.99},
    "llama2-70b-99.9": {
        "ROUGE1": 44.4312 * 0.999,
        "ROUGE2": 22.0352 * 0.999,
        "ROUGEL": 28.6162 * 0.999,
        "TOKENS_PER_SAMPLE": 294.45 * 0.9,
    },
}


def _thresholds(model: str) -> dict[str, float]:
    return THRESHOLDS[model]


def _set(path, values: dict[str, float]) -> None:
    text = path.read_text()
    for metric, value in values.items():
        text, n = re.subn(re.escape(KEYS[metric]) + r"[0-9.]+", KEYS[metric] + repr(value), text, count=1)
        assert n == 1, metric
    path.write_text(text)


def test_score_ranks_at_and_over_the_threshold_and_disqualifies_just_under(sc_logs, tmp_path):
    import teamgen

    bert, llama = _thresholds("bert-99"), _thresholds("llama2-70b-99.9")
    assert set(bert) == {"F1"} and set(llama) == {"ROUGE1", "ROUGE2", "ROUGEL", "TOKENS_PER_SAMPLE"}
    teams = {
        "AtLine": (bert, llama),
        "Over": ({m: v + STEP for m, v in bert.items()}, {m: v + STEP for m, v in llama.items()}),
        "UnderF1": ({"F1": bert["F1"] - STEP}, llama),
    }
    for metric in llama:  # one team per Llama metric just under, the others exactly at
        teams[f"Under{metric.title().replace('_', '')}"] = (bert, {**llama, metric: llama[metric] - STEP})
    handins = tmp_path / "handins"
    for team, (bert_values, llama_values) in teams.items():
        spec = teamgen.TeamSpec(team, results={"bert-99": 0, "llama2-70b-99.9": 1})
        tree = teamgen.build_team_tree(tmp_path / team / "tree", sc_logs, spec)
        results = tree / "open" / team / "results" / "cluster"
        _set(results / "bert-99" / "Offline" / "accuracy" / "accuracy.txt", bert_values)
        _set(results / "llama2-70b-99.9" / "Offline" / "accuracy" / "accuracy.txt", llama_values)
        teamgen.pack_team(tree, handins / team)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["score", str(handins), "--out", str(out), "--jobs", "2"])
    assert res.exit_code == 0, res.output
    board = json.loads((out / "leaderboard.json").read_text())
    (category,) = board["categories"]
    rows = {(task, row["team"]): row for task, table in category["tasks"].items() for row in table}
    for task, low in (
        ("BERT-99 Offline", {"UnderF1"}),
        ("Llama2-70B Offline", {t for t in teams if t.startswith("Under") and t != "UnderF1"}),
    ):
        for team in teams:
            row = rows[(task, team)]
            if team in low:
                assert row["status"] == "disqualified", (task, team, row)
                assert "acc.below_threshold" in row["reason"]
            else:
                assert row["status"] == "ranked", (task, team, row["reason"])
    reasons = {team: rows[("Llama2-70B Offline", team)]["reason"] for team in teams if team.startswith("Under")}
    assert "ROUGE2 " in reasons["UnderRouge2"] and "TOKENS_PER_SAMPLE " in reasons["UnderTokensPerSample"]
