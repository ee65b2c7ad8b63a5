"""Walk a submission tree in the official order and check what is shared by many results.

Shared findings (submitter folders, system descriptions, benchmark folders) are kept once, in a scope, and
every result under that scope fails with them.

The walk never follows a link and never drops a listing for one bad entry: each link, special file and
unreadable entry below a submitter folder is a finding of its own (tree.*), filed with the result or submitter
that holds it, and everything beside it is still checked. Hidden folders and files at the root (.git,
.github, README.md) are the repository's own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from subtool.checker.context import ResultJob
from subtool.checker.findings import Collector
from subtool.checker.rules import inputs, layout
from subtool.checker.rules.scenarios import MAPPING_INVALID, check_benchmark
from subtool.checker.rules.system import check_system, load_system, system_json_rel
from subtool.mlperf.layout import (
    BAD_NAME,
    DIR,
    DIVISIONS,
    FILE,
    GENERATION_FOLDERS,
    LINK,
    NAME_ALPHABET,
    OTHER,
    UNLISTABLE,
    UNPRINTABLE_NAME,
    Entry,
    Listings,
    generation_of,
    generation_text,
    name_problem,
    problem_text,
    walk,
    why_unlistable,
)
from subtool.mlperf.layout import listing as _list
from subtool.mlperf.layout import subdirs as _subdirs
from subtool.mlperf.logs import NonFinite, read_json_object
from subtool.mlperf.round import RoundConfig


@dataclass
class Discovery:
    jobs: list[ResultJob] = field(default_factory=list)
    scopes: dict[str, Collector] = field(default_factory=dict)  # scope key → its findings
    job_scopes: dict[str, list[str]] = field(default_factory=dict)  # result id → scope keys
    tree: Collector = field(default_factory=Collector)  # findings that belong to no result

    def scope(self, key: str) -> Collector:
        return self.scopes.setdefault(key, Collector())


# ------------------------------------------------------------------------------------------- the walker
# The walk itself (listing, kinds, links never followed) is subtool.mlperf.layout's, shared with pack and publish.
_RESULT_ROOTS = ("results", "measurements", "compliance")
_MEMO: Listings | None = None  # the folder listings of the discover() under way, handed to its jobs


def listing(path: Path | str) -> dict[str, str] | None:
    """name → kind for one folder (mlperf.layout.listing), each folder listed once per discover()."""
    return _list(path, _MEMO)


def subdirs(path: Path | str) -> list[str]:
    """The real folders in `path` (mlperf.layout.subdirs), each folder listed once per discover(); the scan reports
    one that cannot be listed."""
    return _subdirs(path, _MEMO)


def scope_of(rel: str) -> tuple[str, str | None]:
    """Where a finding on `rel` belongs: (scope key, result id or None).

    A path inside a result folder (v6) or its v5 measurements/compliance twin fails that result; one elsewhere
    under a submitter fails the submitter's results; anything higher belongs to the tree.
    """
    parts = rel.split("/")
    if len(parts) >= 6 and parts[2] in _RESULT_ROOTS:
        rid = "/".join([parts[0], parts[1], "results", *parts[3:6]])
        return rid, rid
    if len(parts) >= 2:
        return "/".join(parts[:2]), None
    return "", None


def _note_entry(found: Discovery, root: Path, entry: Entry) -> None:
    key, _rid = scope_of(entry.rel)
    out = found.tree if not key else found.scopes.setdefault(key, Collector(result=_rid))
    message, hint = problem_text(entry, root)
    if entry.kind == UNLISTABLE:
        hint += "; everything beside it was still checked"
    out.add(entry.rule, entry.rel, message, hint)


def _note_name(out: Collector, rel: str, what: str) -> None:
    name = rel.rsplit("/", 1)[-1]
    problem = name_problem(name)
    if problem is not None:
        out.add(BAD_NAME, rel, f"{what} {name!r} {problem}", f"rename it: use {NAME_ALPHABET}")


def scan(root: Path, top: str, found: Discovery) -> bool:
    """Report every link, special file and unreadable entry at or below `top`; False when `top` itself is unreadable."""
    top_ok = True
    for entry in walk(root, top, memo=_MEMO):
        if entry.rule is None:
            if entry.kind == FILE:
                key, rid = scope_of(entry.rel)
                out = found.tree if not key else found.scopes.setdefault(key, Collector(result=rid))
                layout.note_large_file(out, root, entry.rel)
            continue
        _note_entry(found, root, entry)
        top_ok = top_ok and (entry.rel != top or entry.rule == UNPRINTABLE_NAME)  # a bad name still reads
    return top_ok


# ---------------------------------------------------------------------------------------------- discover
def discover(root: Path, cfg: RoundConfig, submitter_filter: str | None) -> Discovery:
    global _MEMO
    _MEMO = {}
    try:
        return _discover(root, cfg, submitter_filter)
    finally:
        _MEMO = None


def _discover(root: Path, cfg: RoundConfig, submitter_filter: str | None) -> Discovery:
    found = Discovery()
    top = listing(root) or {}
    for division, kind in sorted(top.items()):
        if division.startswith("."):
            continue  # .git, .github: the repository's own, not a division
        if division not in DIVISIONS:
            if kind == DIR:
                layout.note_stray_dir(found.tree, division)
            continue  # a file at the top (README.md, LICENSE) is the repository's own
        if kind == FILE:
            layout.note_division_file(found.tree, division)
            continue
        if kind != DIR:
            _note_entry(found, root, Entry(division, kind))
            continue
        kinds = listing(root / division)
        if kinds is None:
            _note_entry(found, root, Entry(division, UNLISTABLE, why_unlistable(root / division), True))
            continue
        for submitter, sub_kind in sorted(kinds.items()):
            if submitter_filter is not None and submitter != submitter_filter:
                continue
            if sub_kind in (LINK, OTHER):
                _note_entry(found, root, Entry(f"{division}/{submitter}", sub_kind))
            elif sub_kind == DIR and scan(root, f"{division}/{submitter}", found):
                _submitter(root, cfg, division, submitter, found)
    if not found.jobs:
        layout.note_no_results(found.tree, submitter_filter, root)
    return found


def _submitter(root: Path, cfg: RoundConfig, division: str, submitter: str, found: Discovery) -> None:
    sub_rel = f"{division}/{submitter}"
    sub = root / sub_rel
    sub_key = sub_rel
    out = found.scope(sub_key)
    _note_name(out, sub_rel, "submitter folder")
    here = listing(sub) or {}
    if here.get("results") != DIR:
        found.tree.add(
            layout.MISSING_DIR,
            f"{sub_rel}/results",
            "results/ folder is missing",
            "put each result under results/<system>/<model>/<scenario>/",
        )
        return
    _generation(cfg, here, sub_rel, out)
    code = cfg.layout.code_dir
    if here.get(code) != DIR:
        out.add(
            layout.MISSING_DIR,
            f"{sub_rel}/{code}",
            f"{code}/ folder is missing",
            f"put the code used for the runs (or a README pointing to it) in {sub_rel}/{code}/",
        )
    # the layout this submitter folder shows, else the round's: hints name only rounds of that layout
    shown = generation_of(n for n, kind in here.items() if kind == DIR) or cfg.layout.name
    results = os.path.join(sub, "results")
    mapping = _mapping(cfg, sub, sub_rel, here, out) if division == "open" else {}
    for system in subdirs(results):
        sys_key = system_json_rel(division, submitter, system)
        sys_out = found.scope(sys_key)
        _note_name(sys_out, f"{sub_rel}/results/{system}", "system folder")
        system_json = load_system(root, division, submitter, system, sys_out)
        if system_json is not None:
            check_system(system_json, division, submitter, sys_key, sys_out)
        system_type = (system_json or {}).get("system_type")
        system_dir = os.path.join(results, system)
        for model in subdirs(system_dir):
            model_rel = f"{sub_rel}/results/{system}/{model}"
            mlperf_model = cfg.resolve(model, mapping)
            scenarios = subdirs(os.path.join(system_dir, model))
            check_benchmark(
                cfg, division, model_rel, model, mlperf_model, system_type, scenarios, found.scope(model_rel), shown
            )
            for scenario in scenarios:
                job = ResultJob(
                    root=str(root),
                    version=cfg.version,
                    division=division,
                    submitter=submitter,
                    system=system,
                    model=model,
                    scenario=scenario,
                    mlperf_model=mlperf_model,
                    system_json=system_json,
                    listings=_MEMO,
                    generation=shown,
                )
                found.jobs.append(job)
                # the result's own key last: links and unreadable entries inside it (see scope_of)
                found.job_scopes[job.result_id] = [sub_key, sys_key, model_rel, job.result_id]


def _mapping(cfg: RoundConfig, sub: Path, sub_rel: str, here: dict[str, str], out: Collector) -> dict[str, str]:
    """An open submitter's model_mapping.json. The official checker opens it (a folder there ends it in an
    IsADirectoryError) but reads it only for a model folder that is no benchmark name: a broken mapping that no
    folder needs is a warning, not an error."""
    kind = here.get("model_mapping.json")
    rel = f"{sub_rel}/model_mapping.json"
    if kind is None:
        return {}
    if kind != FILE:
        out.add(MAPPING_INVALID, rel, "model_mapping.json is not a file", "make it a JSON file, or remove it")
        return {}
    results = sub / "results"
    needed = any(cfg.model(cfg.resolve(m)) is None for s in subdirs(str(results)) for m in subdirs(str(results / s)))
    severity = None if needed else "warning"
    data, problem = read_json_object(sub / "model_mapping.json")
    hint = 'write {"<your model folder>": "<official benchmark, e.g. bert-99>"}'
    if data is None:
        rule = inputs.NOT_FINITE if isinstance(problem, NonFinite) else MAPPING_INVALID
        out.add(rule, rel, f"model_mapping.json {problem}", hint, severity=severity)
        return {}
    bad = [k for k, v in data.items() if not isinstance(v, str)]
    if bad:
        said = f"model_mapping.json maps {', '.join(bad)} to something that is not a benchmark name"
        out.add(MAPPING_INVALID, rel, said, "map each folder name to an official benchmark name (a string)", severity)
    return {k: v for k, v in data.items() if isinstance(v, str)}


def _generation(cfg: RoundConfig, here: dict[str, str], sub_rel: str, out: Collector) -> None:
    """A v6 tree checked with v5 rules (or the reverse) fails everywhere; say why once, up front."""
    has_v5_dirs = any(here.get(name) == DIR for name in GENERATION_FOLDERS["v5"])
    if cfg.layout.name == "v5" and here.get("measurements") != DIR:
        out.add(
            layout.LEGACY_LAYOUT,
            f"{sub_rel}/measurements",
            f"{cfg.version} keeps measurements.json, user.conf and README.md under "
            f"{sub_rel}/measurements/<system>/<model>/<scenario>/, and this tree has no measurements/ folder",
            f"this looks like a v6-layout tree: check it with --version {generation_text('v6')}, or package it "
            f"again with --version {cfg.version}",
        )
    elif cfg.layout.name == "v6" and has_v5_dirs:  # a warning: the results' own missing files, if any, fail them
        out.add(
            layout.LEGACY_LAYOUT,
            sub_rel,
            f"{cfg.version} keeps measurements and compliance runs inside each result folder, and reads nothing "
            "in this tree's v5-style measurements/ or compliance/ folders",
            f"remove them, or if the tree is laid out for v5, check it with --version {generation_text('v5')}",
            severity="warning",
        )
