"""The leaderboard document → leaderboard.csv and leaderboard.md (tabulate). JSON is the document itself.

Team names, system names and reasons come from strangers' tarballs: CSV cells that a spreadsheet would run as a
formula are prefixed with a quote; Markdown cells have HTML escaped like leaderboard.html does, and their pipes,
link/image/emphasis/strikethrough characters and line breaks made inert, and words a GFM renderer would
autolink (URLs, www., e-mail addresses) put in code spans.
"""

from __future__ import annotations

import csv
import io

from subtool.md_table import md_cell

CSV_COLUMNS = (
    "category",
    "board",
    "rank",
    "status",
    "team",
    "system",
    "input",
    "accelerator",
    "value",
    "units",
    "accuracy",
    "points",
    "bonus",
    "total",
    "flags",
    "reason",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def fmt_value(value: object) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return ""
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    return f"{value:.4g}"


def fmt_points(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def board_rows(doc: dict):
    """(category, board, row) for every table row, overall boards first; then the inputs ranked nowhere."""
    listed = set()
    for cat in doc["categories"]:
        for row in cat["overall"]:
            listed.add((row["input"], row["team"], row["system"]))
            yield cat["name"], "overall", row
        for task, rows in cat["tasks"].items():
            for row in rows:
                yield cat["name"], task, row
    for dq in doc["disqualified"]:
        if (dq["input"], dq["team"], dq["system"]) not in listed and not dq["task"]:
            yield dq["category"], "not ranked", {**dq, "status": "disqualified", "rank": None}


def _safe_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def leaderboard_csv(doc: dict) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for category, board, row in board_rows(doc):
        record = {
            "category": category,
            "board": board,
            "rank": row.get("rank") or "",
            "status": row.get("status", ""),
            "team": row.get("team", ""),
            "system": row.get("system", ""),
            "input": row.get("input", ""),
            "accelerator": row.get("accelerator", ""),
            "value": row.get("value", "") if board != "overall" else "",
            "units": row.get("units", ""),
            "accuracy": row.get("accuracy", ""),
            "points": row.get("points", ""),
            "bonus": row.get("bonus", ""),
            "total": row.get("total", "") if board == "overall" else "",
            "flags": " ".join(row.get("flags", []) or []),
            "reason": row.get("reason", ""),
        }
        writer.writerow([_safe_cell("" if record[c] is None else record[c]) for c in CSV_COLUMNS])
    return buf.getvalue()


def _table(headers: list[str], rows: list[list[object]]) -> str:
    from tabulate import tabulate

    return tabulate(
        [[md_cell(c) for c in row] for row in rows], headers=headers, tablefmt="pipe", disable_numparse=True
    )


def overall_table_rows(cat: dict, tasks: list[str]) -> tuple[list[str], list[list[object]]]:
    headers = ["Rank", "Team", "System", "Accelerator", *tasks, "Bonus", "Total", "Status"]
    rows = []
    for row in cat["overall"]:
        per_task = [
            fmt_points(row["tasks"].get(t)) if row["tasks"].get(t) is not None else ("DQ" if t in row["tasks"] else "—")
            for t in tasks
        ]
        status = "ranked" if row["status"] == "ranked" else f"disqualified: {row.get('reason', '')}"
        rows.append(
            [
                row["rank"] or "DQ",
                row["team"],
                row["system"],
                row["accelerator"],
                *per_task,
                fmt_points(row["bonus"]),
                fmt_points(row["total"]),
                status,
            ]
        )
    return headers, rows


def task_table_rows(rows_in: list[dict]) -> tuple[list[str], list[list[object]]]:
    headers = ["Rank", "Team", "System", "Result", "Units", "Accuracy", "Run", "Points", "Bonus", "Notes"]
    rows = []
    for row in rows_in:
        notes = row.get("reason", "") if row["status"] != "ranked" else ", ".join(row.get("bonus_for", []))
        if row.get("flags"):
            notes = (notes + "; " if notes else "") + "flags: " + ", ".join(row["flags"])
        rows.append(
            [
                row["rank"] or "DQ",
                row["team"],
                row["system"],
                fmt_value(row.get("value")),
                row["units"],
                row["accuracy"],
                row["run_style"],
                fmt_points(row["points"]),
                fmt_points(row["bonus"]),
                notes,
            ]
        )
    return headers, rows


def leaderboard_md(doc: dict) -> str:
    tasks = [t["name"] for t in doc["rules"]["tasks"]]
    c = doc["counts"]
    out = [
        f"# {md_cell(doc['title'])}",
        "",
        f"{c['inputs']} inputs: {c['scored']} scored, {c['errors']} refused or unreadable; "
        f"{c['ranked']} ranked, {c['disqualified']} disqualified or not ranked. "
        f"Rules: {md_cell(doc['rules']['source'])} (checker {doc['rules']['check']['version']}"
        + (f", waived: {', '.join(doc['rules']['check']['waive'])}" if doc["rules"]["check"]["waive"] else "")
        + ").",
        "",
    ]
    for cat in doc["categories"]:
        out += [f"## {md_cell(cat['name'])}", "", "### Overall", ""]
        headers, rows = overall_table_rows(cat, tasks)
        out += [_table(headers, rows), ""]
        for task, rows_in in cat["tasks"].items():
            if not rows_in:
                continue
            out += [f"### {md_cell(task)}", ""]
            headers, rows = task_table_rows(rows_in)
            out += [_table(headers, rows), ""]
    if doc["disqualified"]:
        out += ["## Disqualified and not ranked", ""]
        out += [
            _table(
                ["Input", "Team", "System", "Category", "Task", "Reason"],
                [
                    [d["input"], d["team"], d["system"], d["category"], d["task"] or "—", d["reason"]]
                    for d in doc["disqualified"]
                ],
            ),
            "",
        ]
    flagged = [(e, f) for e in doc["entries"] for f in e["flags"]]
    if flagged:
        out += ["## Flags (handed-in files that disagree with the tarball)", ""]
        out += [
            _table(
                ["Input", "Teams", "Flag", "What"],
                [[e["input"], ", ".join(e["teams"]), f["rule"], f["message"]] for e, f in flagged],
            ),
            "",
        ]
    return "\n".join(out).rstrip() + "\n"
