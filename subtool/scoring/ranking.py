"""Entries → leaderboard: per hardware category, one table per task and an overall table, plus everything
that was disqualified and why. Pure functions over the workers' records; the output is plain JSON-ready data.

A competitor is one (input, submitter, system). Ties share a rank (1, 1, 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from subtool.scoring.crosscheck import cross_check
from subtool.scoring.entry import EntryRecord, ResultRecord, SystemRecord
from subtool.scoring.integrity import named_accelerator
from subtool.scoring.rules import UNKNOWN_CATEGORY, Rules, Task


@dataclass
class Competitor:
    entry: EntryRecord
    submitter: str
    system: str
    category: str
    fields: dict
    results: list[ResultRecord]
    dq_reasons: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple:
        return (self.entry.index, self.submitter, self.system)

    def base_row(self) -> dict:
        return {
            "team": self.submitter,
            "system": self.system,
            "input": self.entry.input,
            "system_name": self.fields.get("system_name", ""),
            "accelerator": _accelerator(self.fields),
            "flags": sorted({f.rule for f in self.entry.flags}),
        }


def _accelerator(fields: dict) -> str:
    """What the board shows: the accelerators; a named one even where the count says 0 (that contradiction is
    flagged, system.accelerators_contradict); the CPU where no accelerator is named or counted."""
    name = fields.get("accelerator_model_name", "")
    count = str(fields.get("accelerators_per_node", "")).strip()
    nodes = fields.get("number_of_nodes", "")
    if not named_accelerator(fields) and (not name or count in ("", "0")):
        cpu = fields.get("host_processor_model_name", "")
        return f"CPU: {cpu}" if cpu else ""
    per = f"{count} × {name}" if count not in ("", "0") else name
    return f"{nodes} nodes × {per}" if str(nodes).strip() not in ("", "1") else per


def _competitors(entries: list[EntryRecord], rules: Rules) -> list[Competitor]:
    out = []
    for entry in entries:
        if entry.error:
            continue
        systems: dict[tuple, SystemRecord] = {(s.submitter, s.system): s for s in entry.systems}
        keys = sorted({(r.submitter, r.system) for r in entry.results})
        for submitter, system in keys:
            rec = systems.get((submitter, system))
            fields = rec.fields if rec else {"submitter": submitter, "system": system}
            category = rec.category if rec else UNKNOWN_CATEGORY
            results = [r for r in entry.results if (r.submitter, r.system) == (submitter, system)]
            out.append(Competitor(entry, submitter, system, category, fields, results))
    return out


def _pick(task: Task, comp: Competitor, divisions: tuple[str, ...]) -> ResultRecord | None:
    matches = [r for r in comp.results if task.matches(r.model, r.mlperf_model, r.scenario) and r.division in divisions]
    if not matches:
        return None
    good = [r for r in matches if r.passed and _usable(r.value)]
    if good:
        return (min if task.lower_is_better else max)(good, key=lambda r: r.value)
    return matches[0]


def _usable(value: object) -> bool:
    """Only a positive finite number is ranked: an Infinity would take every point, a NaN breaks every sort."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value) and value > 0
    except OverflowError:  # an int beyond any float
        return False


def _dq_reason(result: ResultRecord) -> str:
    if result.reasons:
        return "; ".join(result.reasons)
    if not result.passed:
        return "the checker fails it: " + ", ".join(result.failed)
    if result.value is None:
        return "no result value in the performance log"
    return f"the result {result.value!r} is not a positive finite number"


def _share_ranks(rows: list[dict], key: str, descending: bool) -> None:
    rows.sort(key=lambda r: (-r[key] if descending else r[key], r["team"], r["system"], r["input"]))
    previous, rank = None, 0
    for i, row in enumerate(rows, start=1):
        if row[key] != previous:
            rank, previous = i, row[key]
        row["rank"] = rank


def _points(task: Task, value: float, best: float, rank: int) -> float:
    if task.points == "rank":
        raw = task.rank_points[rank - 1] if rank <= len(task.rank_points) else 0.0
    else:
        raw = task.max_points * ((best / value) if task.lower_is_better else (value / best))
    return round(raw * task.weight, 2)


def _bonus(rules: Rules, task: Task, comp: Competitor, result: ResultRecord) -> tuple[float, list[str]]:
    fields = {
        **comp.fields,
        "division": result.division,
        "run_style": result.run_style,
        "model": result.model,
        "mlperf_model": result.mlperf_model,
        "scenario": result.scenario,
        "accuracy": result.accuracy,
        "units": result.units,
    }
    won = [b for b in rules.bonuses if b.applies(task.name, fields)]
    return round(float(sum(b.points for b in won)), 2), [b.name for b in won]


def build_leaderboard(entries: list[EntryRecord], rules: Rules) -> dict:
    cross_check(entries)
    competitors = _competitors(entries, rules)
    integrity_dq = set(rules.integrity.disqualify)
    for comp in competitors:
        for flag in comp.entry.flags:
            if flag.rule in integrity_dq:
                comp.dq_reasons.append(f"{flag.rule}: {flag.message}")
    picked = {comp.key: _pick_tasks(comp, rules) for comp in competitors}

    disqualified: list[dict] = []
    categories = []
    for category in [*rules.category_names, UNKNOWN_CATEGORY]:
        members = [c for c in competitors if c.category == category and picked[c.key]]
        if members:
            categories.append(_category_board(category, members, picked, rules, disqualified))
    disqualified += [_dq_entry(e.input, ", ".join(e.teams), "", "", "", _error_reason(e)) for e in entries if e.error]
    disqualified += _unranked(entries, competitors, picked)
    return {"categories": categories, "disqualified": disqualified}


def _dq_entry(input_: str, team: str, system: str, category: str, task: str, reason: str) -> dict:
    return {"input": input_, "team": team, "system": system, "category": category, "task": task, "reason": reason}


def _error_reason(entry: EntryRecord) -> str:
    return f"{entry.error['rule']}: {entry.error['message']}"


def _pick_tasks(comp: Competitor, rules: Rules) -> dict[str, ResultRecord]:
    """The result that stands for each task; with `failed_result = disqualify` a failed one disqualifies."""
    chosen = {}
    for task in rules.tasks:
        result = _pick(task, comp, rules.check.divisions)
        if result is not None:
            chosen[task.name] = result
    if rules.failed_result == "disqualify":
        for task_name, result in chosen.items():
            if not result.passed:
                comp.dq_reasons.append(f"{task_name}: {_dq_reason(result)}")
    return chosen


def _category_board(
    category: str, members: list[Competitor], picked: dict, rules: Rules, disqualified: list[dict]
) -> dict:
    """One category: a table per task, then the overall table of points plus bonus."""
    totals: dict[tuple, dict] = {}
    for comp in members:
        totals[comp.key] = {
            **comp.base_row(),
            "category": category,
            "tasks": {},
            "points": 0.0,
            "bonus": 0.0,
            "total": 0.0,
            "ranked_tasks": 0,
            "reasons": list(comp.dq_reasons),
        }
    tables = {}
    for task in rules.tasks:
        tables[task.name] = _task_table(task, category, members, picked, rules, totals, disqualified)
    return {
        "name": category,
        "overall": _overall_table(category, members, totals, disqualified),
        "tasks": {t.name: tables.get(t.name, []) for t in rules.tasks},
    }


def _task_table(
    task, category: str, members: list[Competitor], picked: dict, rules: Rules, totals: dict, disqualified: list
) -> list[dict]:
    """Rank one task's results (shared ranks, points from the best), the disqualified ones after them."""
    ranked, dq = [], []
    for comp in members:
        result = picked[comp.key].get(task.name)
        if result is None:
            continue
        row = {
            **comp.base_row(),
            "category": category,
            "task": task.name,
            "value": result.value,
            "units": result.units,
            "accuracy": result.accuracy,
            "run_style": result.run_style,
            "division": result.division,
            "result": result.result_id,
        }
        usable = result.passed and _usable(result.value)
        if comp.dq_reasons or not usable:
            reason = "; ".join(comp.dq_reasons) if comp.dq_reasons else _dq_reason(result)
            row.update(status="disqualified", rank=None, points=0.0, bonus=0.0, bonus_for=[], reason=reason)
            dq.append(row)
            totals[comp.key]["tasks"][task.name] = None
            if not comp.dq_reasons:
                totals[comp.key]["reasons"].append(f"{task.name}: {reason}")
            disqualified.append(_dq_entry(comp.entry.input, comp.submitter, comp.system, category, task.name, reason))
            continue
        row.update(status="ranked", reason="")
        bonus, bonus_for = _bonus(rules, task, comp, result)
        row.update(bonus=bonus, bonus_for=bonus_for)
        ranked.append((comp, row))
    rows = [row for _, row in ranked]
    if rows:
        _share_ranks(rows, "value", descending=not task.lower_is_better)
        best = rows[0]["value"]
        for row in rows:
            row["points"] = _points(task, row["value"], best, row["rank"])
    for comp, row in ranked:
        total = totals[comp.key]
        total["tasks"][task.name] = row["points"]
        total["points"] = round(total["points"] + row["points"], 2)
        total["bonus"] = round(total["bonus"] + row["bonus"], 2)
        total["ranked_tasks"] += 1
    return rows + sorted(dq, key=lambda r: (r["team"], r["system"], r["input"]))


def _overall_table(category: str, members: list[Competitor], totals: dict, disqualified: list[dict]) -> list[dict]:
    overall_ranked, overall_dq = [], []
    for comp in members:
        total = totals[comp.key]
        total["total"] = round(total["points"] + total["bonus"], 2)
        if comp.dq_reasons or total["ranked_tasks"] == 0:
            total.update(
                status="disqualified", rank=None, total=0.0, reason="; ".join(total["reasons"]) or "no task ranked"
            )
            overall_dq.append(total)
            if comp.dq_reasons:
                disqualified.append(
                    _dq_entry(comp.entry.input, comp.submitter, comp.system, category, "", total["reason"])
                )
        else:
            total.update(status="ranked", reason="; ".join(total["reasons"]))
            overall_ranked.append(total)
    _share_ranks(overall_ranked, "total", descending=True)
    for row in [*overall_ranked, *overall_dq]:
        row.pop("reasons", None)
    return overall_ranked + overall_dq


def _unranked(entries: list[EntryRecord], competitors: list[Competitor], picked: dict) -> list[dict]:
    """Inputs that hold nothing a task scores: listed with why, after the disqualified."""
    unranked = []
    for comp in competitors:
        if not picked[comp.key]:
            found = ", ".join(sorted({f"{r.model}/{r.scenario}" for r in comp.results})) or "none"
            reason = f"no result for a scored task (found: {found})"
            unranked.append(_dq_entry(comp.entry.input, comp.submitter, comp.system, comp.category, "", reason))
    for entry in entries:
        if not entry.error and not entry.results:
            why = "; ".join(entry.tree_errors[:3]) or "the tree holds no results"
            unranked.append(_dq_entry(entry.input, ", ".join(entry.teams), "", "", "", f"no results: {why}"))
    return unranked
