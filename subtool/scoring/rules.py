"""The organisers' scoring rules: a small TOML file (default: default_rules.toml beside this module).

Loaded once, validated completely (unknown keys, bad regexes, unknown checker rule ids and rounds are refused
with the file and the key), and turned into frozen dataclasses that travel to the worker processes.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.scoring.extract import ExtractLimits

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

RULE = "score.rules"
POINT_SCHEMES = ("relative", "rank")
FAILED_RESULT = ("zero", "disqualify")
LOWER_IS_BETTER_SCENARIOS = ("singlestream", "multistream")

UNKNOWN_CATEGORY = "Uncategorised"  # a system no [[category]] fits


@dataclass(frozen=True)
class CheckSettings:
    version: str = "v6.1"
    waive: tuple[str, ...] = ("perf.min_duration",)
    skip_compliance: bool = False
    require_accuracy: bool = True
    divisions: tuple[str, ...] = ("open", "closed")


@dataclass(frozen=True)
class CategoryRule:
    name: str
    match: tuple[tuple[str, str], ...]  # (field, regex), all must match

    def fits(self, fields: dict) -> bool:
        # A field the description lacks never matches (an empty pattern must not catch missing data).
        return all(key in fields and re.search(pattern, str(fields[key]), re.IGNORECASE) for key, pattern in self.match)


@dataclass(frozen=True)
class Task:
    name: str
    models: tuple[str, ...]
    scenario: str
    points: str = "relative"
    max_points: float = 100.0
    rank_points: tuple[float, ...] = ()
    weight: float = 1.0
    lower_is_better: bool = False

    def matches(self, model: str, mlperf_model: str, scenario: str) -> bool:
        models = {m.lower() for m in self.models}
        return scenario.lower() == self.scenario.lower() and (model.lower() in models or mlperf_model.lower() in models)


@dataclass(frozen=True)
class Bonus:
    name: str
    points: float
    match: tuple[tuple[str, str], ...]
    tasks: tuple[str, ...] = ()  # empty: every task

    def applies(self, task: str, fields: dict) -> bool:
        if self.tasks and task not in self.tasks:
            return False
        return all(re.search(pattern, str(fields.get(key, "") or ""), re.IGNORECASE) for key, pattern in self.match)


@dataclass(frozen=True)
class Integrity:
    tstamps_slack_s: float = 120.0
    disqualify: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rules:
    title: str
    source: str  # "default" or the file's name
    sha256: str
    check: CheckSettings
    limits: ExtractLimits
    integrity: Integrity
    failed_result: str
    categories: tuple[CategoryRule, ...]
    tasks: tuple[Task, ...]
    bonuses: tuple[Bonus, ...] = field(default_factory=tuple)

    def category_of(self, fields: dict) -> str:
        for rule in self.categories:
            if rule.fits(fields):
                return rule.name
        return UNKNOWN_CATEGORY

    @property
    def category_names(self) -> list[str]:
        names: list[str] = []
        for rule in self.categories:
            if rule.name not in names:
                names.append(rule.name)
        return names

    def summary(self) -> dict:
        return {
            "title": self.title,
            "source": self.source,
            "sha256": self.sha256,
            "check": {
                "version": self.check.version,
                "waive": list(self.check.waive),
                "skip_compliance": self.check.skip_compliance,
                "require_accuracy": self.check.require_accuracy,
                "divisions": list(self.check.divisions),
            },
            "failed_result": self.failed_result,
            "categories": self.category_names,
            "tasks": [
                {
                    "name": t.name,
                    "models": list(t.models),
                    "scenario": t.scenario,
                    "points": t.points,
                    "max_points": t.max_points,
                    "rank_points": list(t.rank_points),
                    "weight": t.weight,
                    "lower_is_better": t.lower_is_better,
                }
                for t in self.tasks
            ],
            "bonuses": [
                {"name": b.name, "points": b.points, "match": dict(b.match), "tasks": list(b.tasks)}
                for b in self.bonuses
            ],
            "integrity": {
                "tstamps_slack_s": self.integrity.tstamps_slack_s,
                "disqualify": list(self.integrity.disqualify),
            },
        }


# ------------------------------------------------------------------------------------------------ loading
class _Reader:
    """Typed access to one TOML table that remembers which keys were read, so leftovers can be refused."""

    def __init__(self, table: object, where: str, source: str) -> None:
        if not isinstance(table, dict):
            raise SubtoolError(f"{where} must be a table", path=source, rule=RULE)
        self.table, self.where, self.source = table, where, source
        self.used: set[str] = set()

    def fail(self, key: str, what: str, hint: str | None = None) -> SubtoolError:
        return SubtoolError(f"{self.where}.{key}: {what}", path=self.source, rule=RULE, hint=hint)

    def get(self, key: str, kind, default=None, required: bool = False):
        self.used.add(key)
        if key not in self.table:
            if required:
                raise self.fail(key, "is required")
            return default
        value = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(key, f"must be {kinds[0].__name__}, not a boolean")
        if not isinstance(value, kinds):
            raise self.fail(key, f"must be {' or '.join(k.__name__ for k in kinds)}, not {type(value).__name__}")
        return value

    def strings(self, key: str, default: tuple[str, ...] = (), required: bool = False) -> tuple[str, ...]:
        value = self.get(key, list, None, required)
        if value is None:
            return default
        if not all(isinstance(v, str) for v in value):
            raise self.fail(key, "must be a list of strings")
        return tuple(value)

    def number(self, key: str, default: float, minimum: float | None = None) -> float:
        value = self.get(key, (int, float), default)
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(key, "must be a finite number (not nan or inf)")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be ≥ {minimum:g}")
        return float(value)

    def integer(self, key: str, default: int, minimum: int = 1) -> int:
        value = self.get(key, int, default)
        if value < minimum:
            raise self.fail(key, f"must be ≥ {minimum}")
        return value

    def patterns(self, key: str) -> tuple[tuple[str, str], ...]:
        table = self.get(key, dict, {})
        out = []
        for field_name, pattern in table.items():
            if not isinstance(pattern, str):
                raise self.fail(f"{key}.{field_name}", "must be a regular expression (a string)")
            try:
                re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                raise self.fail(f"{key}.{field_name}", f"is not a valid regular expression ({exc})") from exc
            out.append((field_name, pattern))
        return tuple(out)

    def done(self) -> None:
        extra = sorted(set(self.table) - self.used)
        if extra:
            raise SubtoolError(
                f"{self.where}: unknown key{'s' if len(extra) > 1 else ''} {', '.join(extra)}",
                path=self.source,
                rule=RULE,
                hint="see the default rules (subtool/scoring/default_rules.toml) for the keys each table takes",
            )


def _tables(reader: _Reader, key: str) -> list[dict]:
    value = reader.get(key, list, [])
    if not all(isinstance(v, dict) for v in value):
        raise reader.fail(key, f"must be an array of tables ([[{key}]])")
    return value


def _check_settings(root: _Reader) -> CheckSettings:
    from subtool.checker.rules import all_rules
    from subtool.mlperf.rounds import VERSIONS

    r = _Reader(root.get("check", dict, {}), "check", root.source)
    version = r.get("version", str, "v6.1")
    if version not in VERSIONS:
        raise r.fail("version", f"unknown round {version!r}", hint=f"use one of {', '.join(VERSIONS)}")
    waive = r.strings("waive", ("perf.min_duration",))
    unknown = [w for w in waive if w not in all_rules()]
    if unknown:
        raise r.fail(
            "waive",
            f"unknown checker rule {', '.join(unknown)}",
            hint="see subtool/checker/RULES.md for the rule ids, e.g. perf.min_duration",
        )
    divisions = r.strings("divisions", ("open", "closed"))
    bad = [d for d in divisions if d not in ("open", "closed", "network")]
    if bad:
        raise r.fail("divisions", f"unknown division {', '.join(bad)}", hint="open, closed or network")
    settings = CheckSettings(
        version=version,
        waive=waive,
        skip_compliance=r.get("skip_compliance", bool, False),
        require_accuracy=r.get("require_accuracy", bool, True),
        divisions=divisions,
    )
    r.done()
    return settings


def _limits(root: _Reader) -> ExtractLimits:
    r = _Reader(root.get("limits", dict, {}), "limits", root.source)
    d = ExtractLimits()
    limits = ExtractLimits(
        max_members=r.integer("max_members", d.max_members),
        max_member_bytes=r.integer("max_member_bytes", d.max_member_bytes),
        max_total_bytes=r.integer("max_total_bytes", d.max_total_bytes),
        max_ratio=r.number("max_ratio", d.max_ratio, minimum=1),
        ratio_grace_bytes=r.integer("ratio_grace_bytes", d.ratio_grace_bytes, minimum=0),
        max_name_length=r.integer("max_name_length", d.max_name_length),
        max_depth=r.integer("max_depth", d.max_depth),
    )
    r.done()
    return limits


def _integrity(root: _Reader) -> Integrity:
    from subtool.scoring.integrity import FLAG_IDS

    r = _Reader(root.get("integrity", dict, {}), "integrity", root.source)
    slack = r.number("tstamps_slack_s", 120.0, minimum=0)
    disqualify = r.strings("disqualify", ())
    unknown = [f for f in disqualify if f not in FLAG_IDS]
    if unknown:
        raise r.fail("disqualify", f"unknown flag {', '.join(unknown)}", hint=f"flags: {', '.join(sorted(FLAG_IDS))}")
    r.done()
    return Integrity(tstamps_slack_s=slack, disqualify=disqualify)


def _task(table: dict, index: int, source: str) -> Task:
    r = _Reader(table, f"task[{index}]", source)
    name = r.get("name", str, required=True)
    scenario = r.get("scenario", str, required=True)
    points = r.get("points", str, "relative")
    if points not in POINT_SCHEMES:
        raise r.fail("points", f"must be one of {', '.join(POINT_SCHEMES)}")
    rank_points = r.get("rank_points", list, [])
    if not all(isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) for p in rank_points):
        raise r.fail("rank_points", "must be a list of finite numbers")
    if points == "rank" and not rank_points:
        raise r.fail("rank_points", 'is required when points = "rank"', hint="e.g. rank_points = [100, 80, 60]")
    lower = scenario.lower() in LOWER_IS_BETTER_SCENARIOS
    task = Task(
        name=name,
        models=r.strings("models", required=True),
        scenario=scenario,
        points=points,
        max_points=r.number("max_points", 100.0, minimum=0),
        rank_points=tuple(float(p) for p in rank_points),
        weight=r.number("weight", 1.0, minimum=0),
        lower_is_better=r.get("lower_is_better", bool, lower),
    )
    if not task.models:
        raise r.fail("models", 'must name at least one benchmark, e.g. ["bert-99"]')
    r.done()
    return task


def parse_rules(text: str, source: str, sha256: str) -> Rules:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SubtoolError(f"not valid TOML ({exc})", path=source, rule=RULE) from exc
    root = _Reader(data, "rules", source)
    title = root.get("title", str, "MLPerf Inference leaderboard")
    check = _check_settings(root)
    limits = _limits(root)
    integrity = _integrity(root)
    ranking = _Reader(root.get("ranking", dict, {}), "ranking", source)
    failed_result = ranking.get("failed_result", str, "zero")
    if failed_result not in FAILED_RESULT:
        raise ranking.fail("failed_result", f"must be one of {', '.join(FAILED_RESULT)}")
    ranking.done()

    categories = []
    for i, table in enumerate(_tables(root, "category")):
        r = _Reader(table, f"category[{i}]", source)
        categories.append(CategoryRule(name=r.get("name", str, required=True), match=r.patterns("match")))
        r.done()
    tasks = [_task(t, i, source) for i, t in enumerate(_tables(root, "task"))]
    if not tasks:
        raise SubtoolError(
            "no [[task]]: nothing would be ranked",
            path=source,
            rule=RULE,
            hint="add a [[task]] table per benchmark/scenario that counts",
        )
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise SubtoolError("two [[task]] tables have the same name", path=source, rule=RULE)
    bonuses = []
    for i, table in enumerate(_tables(root, "bonus")):
        r = _Reader(table, f"bonus[{i}]", source)
        bonus = Bonus(
            name=r.get("name", str, required=True),
            points=r.number("points", 0.0),
            match=r.patterns("match"),
            tasks=r.strings("tasks", ()),
        )
        unknown = [t for t in bonus.tasks if t not in names]
        if unknown:
            raise r.fail("tasks", f"names no [[task]]: {', '.join(unknown)}")
        bonuses.append(bonus)
        r.done()
    root.done()
    return Rules(
        title=title,
        source=source,
        sha256=sha256,
        check=check,
        limits=limits,
        integrity=integrity,
        failed_result=failed_result,
        categories=tuple(categories),
        tasks=tuple(tasks),
        bonuses=tuple(bonuses),
    )


def default_rules_text() -> str:
    return resources.files("subtool.scoring").joinpath("default_rules.toml").read_text(encoding="utf-8")


def load_rules(path: Path | None) -> Rules:
    if path is None:
        text = default_rules_text()
        return parse_rules(text, "default", hashlib.sha256(text.encode()).hexdigest())
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SubtoolError(f"cannot read the rules file ({exc.strerror or exc})", path=path, rule=RULE) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SubtoolError("the rules file is not UTF-8 text", path=path, rule=RULE) from exc
    return parse_rules(text, str(path), hashlib.sha256(raw).hexdigest())
