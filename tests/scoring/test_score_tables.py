"""leaderboard.csv and leaderboard.md from one small leaderboard: which rows each board has (a disqualified team
once on each board, an input ranked nowhere once under "not ranked"), which cells a row fills (the value on a
task board, the total on the overall one), the counts, and the cells a spreadsheet would run as formulas."""

from __future__ import annotations

import csv
import io

import pytest
from result_records import result_record

from subtool.scoring.api import leaderboard_document, writable
from subtool.scoring.entry import EntryRecord, SystemRecord
from subtool.scoring.integrity import Flag
from subtool.scoring.rules import load_rules
from subtool.scoring.tables import leaderboard_csv, leaderboard_md

FIELDS = {"accelerator_model_name": "NVIDIA H100", "accelerators_per_node": "1"}


def _entry(index: int, team: str, value: float) -> EntryRecord:
    entry = EntryRecord(index=index, input=f"{team}.tar.gz", kind="tarball", name=team)
    entry.systems = [SystemRecord("open", team, "box", "NVIDIA GPUs", {**FIELDS, "system_name": "box"})]
    entry.results = [result_record(team, value=value)]
    return entry


@pytest.fixture
def doc() -> dict:
    good = _entry(0, "=Good", 10.0)
    dup = _entry(1, "Dup", 12.0)
    dup.flags.append(Flag("entry.duplicate", "the same logs as another hand-in"))
    late = _entry(2, "@Late", 5.0)
    broken = EntryRecord(
        index=3,
        input="Broken.tar.gz",
        kind="tarball",
        name="Broken",
        error={"rule": "extract.truncated", "message": "cut"},
    )
    return writable(leaderboard_document([good, dup, late, broken], load_rules(None)))


def test_csv_rows_per_board_and_the_cells_each_fills(doc):
    rows = list(csv.reader(io.StringIO(leaderboard_csv(doc))))
    header = rows[0]
    got = [dict(zip(header, r)) for r in rows[1:]]
    pick = ("board", "rank", "status", "team", "input", "value", "points", "total", "flags")
    assert [tuple(r[k] for k in pick) for r in got] == [
        ("overall", "1", "ranked", "'=Good", "'=Good.tar.gz", "", "100.0", "100.0", ""),
        ("overall", "2", "ranked", "'@Late", "'@Late.tar.gz", "", "50.0", "50.0", ""),
        ("overall", "", "disqualified", "Dup", "Dup.tar.gz", "", "0.0", "0.0", "entry.duplicate"),
        ("BERT-99 Offline", "1", "ranked", "'=Good", "'=Good.tar.gz", "10.0", "100.0", "", ""),
        ("BERT-99 Offline", "2", "ranked", "'@Late", "'@Late.tar.gz", "5.0", "50.0", "", ""),
        ("BERT-99 Offline", "", "disqualified", "Dup", "Dup.tar.gz", "12.0", "0.0", "", "entry.duplicate"),
        ("not ranked", "", "disqualified", "", "Broken.tar.gz", "", "", "", ""),
    ]
    assert got[-1]["reason"] == "extract.truncated: cut"


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t"])
def test_every_formula_start_is_quoted_in_csv(start):
    team = f"{start}cmd|' /C calc'!A0"
    doc = writable(leaderboard_document([_entry(0, team, 10.0)], load_rules(None)))
    rows = list(csv.reader(io.StringIO(leaderboard_csv(doc))))
    assert rows[1][rows[0].index("team")] == "'" + writable(team)


def test_counts_name_each_disqualified_hand_in_once(doc):
    assert doc["counts"] == {
        "inputs": 4,
        "scored": 3,
        "errors": 1,
        "ranked": 2,
        "disqualified": 2,
        "flagged": 1,
        "retried": 0,
        "skipped": 0,
    }


def test_markdown_overall_table_marks_a_disqualified_task_and_an_absent_one(doc):
    md = leaderboard_md(doc)
    dup = next(
        line for line in md.splitlines() if line.startswith("| DQ ") and "| Dup " in line and "Total" not in line
    )
    cells = [c.strip() for c in dup.strip("|").split("|")]
    # Rank, Team, System, Accelerator, BERT-99 Offline, Llama2-70B Offline, Bonus, Total, Status
    assert cells[4:] == ["DQ", "—", "0.00", "0.00", "disqualified: entry.duplicate: the same logs as another hand-in"]
    assert "## Disqualified and not ranked" in md and "| Broken.tar.gz |" in md
    assert "## Flags (handed-in files that disagree with the tarball)" in md


def test_control_characters_and_lone_surrogates_are_replaced_before_writing():
    assert writable({"team": "a\x1b[31mb\x00c\ud800", "n": float("nan"), "ok": "tab\tnew\nline"}) == {
        "team": "a\ufffd[31mb\ufffdc\ufffd",
        "n": None,
        "ok": "tab\tnew\nline",
    }
