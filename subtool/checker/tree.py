"""Walk a submission tree in the official order and check what is shared by many results.

Shared findings (submitter folders, system descriptions, benchmark folders) are kept once, in a scope, and
every result under that scope fails with them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from subtool.checker.config import DIVISIONS, RoundConfig
from subtool.checker.context import ResultJob
from subtool.checker.findings import Collector
from subtool.checker.logs import read_json_object
from subtool.checker.rules import layout
from subtool.checker.rules.scenarios import MAPPING_INVALID, check_benchmark
from subtool.checker.rules.system import check_system, load_system, system_json_rel


@dataclass
class Discovery:
    jobs: list[ResultJob] = field(default_factory=list)
    scopes: dict[str, Collector] = field(default_factory=dict)   # scope key → its findings
    job_scopes: dict[str, list[str]] = field(default_factory=dict)  # result id → scope keys
    tree: Collector = field(default_factory=Collector)             # findings that belong to no result

    def scope(self, key: str) -> Collector:
        return self.scopes.setdefault(key, Collector())


def subdirs(path: Path | str) -> list[str]:
    try:
        with os.scandir(path) as it:
            return sorted(e.name for e in it if e.is_dir())
    except OSError:
        return []


def discover(root: Path, cfg: RoundConfig, submitter_filter: str | None) -> Discovery:
    found = Discovery()
    for division in subdirs(root):
        if division not in DIVISIONS:
            layout.note_stray_dir(found.tree, division)
            continue
        for submitter in subdirs(root / division):
            if submitter_filter is not None and submitter != submitter_filter:
                continue
            _submitter(root, cfg, division, submitter, found)
    return found


def _submitter(root: Path, cfg: RoundConfig, division: str, submitter: str, found: Discovery) -> None:
    sub_rel = f"{division}/{submitter}"
    sub = root / sub_rel
    sub_key = sub_rel
    out = found.scope(sub_key)
    if not (sub / "results").is_dir():
        found.tree.add(layout.MISSING_DIR, f"{sub_rel}/results", "results/ folder is missing",
                       "put each result under results/<system>/<model>/<scenario>/")
        return
    _generation(cfg, sub, sub_rel, out)
    code = cfg.layout.code_dir
    if not (sub / code).is_dir():
        out.add(layout.MISSING_DIR, f"{sub_rel}/{code}", f"{code}/ folder is missing",
                f"put the code used for the runs (or a README pointing to it) in {sub_rel}/{code}/")
    mapping = {}
    if division == "open" and (sub / "model_mapping.json").exists():
        data, problem = read_json_object(sub / "model_mapping.json")
        if data is None:
            out.add(MAPPING_INVALID, f"{sub_rel}/model_mapping.json", f"model_mapping.json {problem}",
                    'write {"<your model folder>": "<official benchmark, e.g. bert-99>"}')
        else:
            bad = [k for k, v in data.items() if not isinstance(v, str)]
            if bad:
                out.add(MAPPING_INVALID, f"{sub_rel}/model_mapping.json",
                        f"model_mapping.json maps {', '.join(bad)} to something that is not a benchmark name",
                        "map each folder name to an official benchmark name (a string)")
            mapping = {k: v for k, v in data.items() if isinstance(v, str)}
    results = os.path.join(sub, "results")
    for system in subdirs(results):
        sys_key = system_json_rel(division, submitter, system)
        sys_out = found.scope(sys_key)
        system_json = load_system(root, division, submitter, system, sys_out)
        if system_json is not None:
            check_system(system_json, division, submitter, sys_key, sys_out)
        system_type = (system_json or {}).get("system_type")
        system_dir = os.path.join(results, system)
        for model in subdirs(system_dir):
            model_rel = f"{sub_rel}/results/{system}/{model}"
            mlperf_model = cfg.resolve(model, mapping)
            scenarios = subdirs(os.path.join(system_dir, model))
            check_benchmark(cfg, division, model_rel, model, mlperf_model, system_type, scenarios,
                            found.scope(model_rel))
            for scenario in scenarios:
                job = ResultJob(root=str(root), version=cfg.version, division=division, submitter=submitter,
                                system=system, model=model, scenario=scenario, mlperf_model=mlperf_model,
                                system_json=system_json)
                found.jobs.append(job)
                found.job_scopes[job.result_id] = [sub_key, sys_key, model_rel]


def _generation(cfg: RoundConfig, sub: Path, sub_rel: str, out: Collector) -> None:
    """A v6 tree checked with v5 rules (or the reverse) fails everywhere; say why once, up front."""
    has_v5_dirs = (sub / "measurements").is_dir() or (sub / "compliance").is_dir()
    if cfg.layout.name == "v5" and not (sub / "measurements").is_dir():
        out.add(layout.LEGACY_LAYOUT, f"{sub_rel}/measurements",
                f"{cfg.version} keeps measurements.json, user.conf and README.md under "
                f"{sub_rel}/measurements/<system>/<model>/<scenario>/, and this tree has no measurements/ folder",
                "this looks like a v6-layout tree: check it with --version v6.1 (or v6.0), or package it again "
                f"with --version {cfg.version}")
    elif cfg.layout.name == "v6" and has_v5_dirs:
        out.add(layout.LEGACY_LAYOUT, sub_rel,
                f"{cfg.version} keeps measurements and compliance runs inside each result folder, but this tree "
                "has v5-style measurements/ or compliance/ folders",
                "check it with --version v5.1 (or v5.0), or package it again with --version "
                f"{cfg.version}")
