"""Entry point of the checker stage: `check_tree(tree, CheckOptions) -> CheckReport`.

Only an unreadable tree (or an unknown round / rule id) raises SubtoolError; every problem inside the tree
becomes a Finding with the file, the rule id and the fix.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

from subtool.checker.context import ResultJob
from subtool.checker.findings import Finding
from subtool.checker.result import ResultOutcome, check_result, check_results
from subtool.checker.rules import all_rules
from subtool.checker.tree import Discovery, discover
from subtool.errors import SubtoolError
from subtool.mlperf.round import round_config
from subtool.mlperf.rounds import check_version

__all__ = ["CheckOptions", "CheckReport", "Finding", "ResultVerdict", "check_tree", "SUMMARY_COLUMNS"]

SUMMARY_COLUMNS = (
    "Organization",
    "Availability",
    "Division",
    "SystemType",
    "SystemName",
    "Platform",
    "Model",
    "MlperfModel",
    "Scenario",
    "Result",
    "Accuracy",
    "number_of_nodes",
    "host_processor_model_name",
    "host_processors_per_node",
    "host_processor_core_count",
    "accelerator_model_name",
    "accelerators_per_node",
    "total_accelerators",
    "Location",
    "framework",
    "operating_system",
    "notes",
    "compliance",
    "errors",
    "version",
    "inferred",
    "has_power",
    "Units",
    "weight_data_types",
    "design_power_watts",
    "PrivateID",
)

# Below this many results a process pool costs more than it saves.
PARALLEL_MIN_RESULTS = 48
_COMPLIANCE_PATH = re.compile(r"/TEST\d\d(/|$)")


@dataclass(frozen=True)
class CheckOptions:
    version: str | None = "v6.1"  # None: check_tree decides from the tree's models
    submitter: str | None = None
    waive: frozenset[str] = frozenset()
    skip_compliance: bool = False
    official: Path | None = None


@dataclass
class ResultVerdict:
    result: str  # division/submitter/results/system/model/scenario
    division: str
    submitter: str
    system: str
    model: str
    mlperf_model: str
    scenario: str
    path: str  # the result folder on disk
    passed: bool
    value: float | None
    units: str
    accuracy: str
    run_style: str  # "valid" or "short" (min_duration below 600 s)
    waived: list[str] = field(default_factory=list)  # rule ids waived for this result
    failed: list[str] = field(default_factory=list)  # rule ids that fail it (own and shared findings)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class CheckReport:
    tree: str
    version: str
    findings: list[Finding]
    results: list[ResultVerdict]
    rows: list[dict]
    waived_rules: list[str] = field(default_factory=list)
    official_diff: object | None = None

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def findings_for(self, result: str | None) -> list[Finding]:
        return [f for f in self.findings if f.result == result]


def _validate(tree: Path, opts: CheckOptions) -> None:
    check_version(opts.version)
    if not tree.exists():
        raise SubtoolError(
            "submission tree does not exist",
            path=tree,
            rule="layout.tree",
            hint="pass the folder that holds closed/ and/or open/",
        )
    if not tree.is_dir():
        raise SubtoolError(
            "submission tree is not a directory",
            path=tree,
            rule="layout.tree",
            hint="pass the folder that holds closed/ and/or open/ (unpack a tarball first)",
        )
    if not os.access(tree, os.R_OK | os.X_OK):
        raise SubtoolError(
            "submission tree cannot be read", path=tree, rule="layout.tree", hint="check the folder's permissions"
        )
    known = all_rules()
    unknown = sorted(r for r in opts.waive if r not in known)
    if unknown:
        raise SubtoolError(
            f"cannot waive unknown rule {', '.join(unknown)}",
            rule="cli.waive",
            hint="see subtool/checker/RULES.md for the rule ids, e.g. perf.min_duration",
        )


_PENDING: list[ResultJob] = []  # the jobs, inherited by forked workers (so they are never pickled)


def _check_slice(bounds: tuple[int, int]) -> list[ResultOutcome]:
    outcomes = check_results(_PENDING[bounds[0] : bounds[1]])
    for outcome in outcomes:
        outcome.job = None  # the parent has it; do not send it back
    return outcomes


def _run_jobs(jobs: list[ResultJob]) -> list[ResultOutcome]:
    """Check every result; on several cores, forked workers take slices while this process checks the first."""
    global _PENDING
    cores = min(os.cpu_count() or 1, 8)
    if len(jobs) < PARALLEL_MIN_RESULTS or cores < 2:
        return [check_result(job) for job in jobs]
    step = -(-len(jobs) // cores)
    slices = [(i, min(i + step, len(jobs))) for i in range(0, len(jobs), step)]
    _PENDING = jobs
    try:
        with ProcessPoolExecutor(max_workers=len(slices) - 1, mp_context=get_context("fork")) as pool:
            futures = [pool.submit(_check_slice, b) for b in slices[1:]]
            outcomes = check_results(jobs[slices[0][0] : slices[0][1]])
            for (start, _end), future in zip(slices[1:], futures):
                part = future.result()
                for offset, outcome in enumerate(part):
                    outcome.job = jobs[start + offset]
                outcomes.extend(part)
    finally:
        _PENDING = []
    return outcomes


def _waive(finding: Finding, opts: CheckOptions) -> Finding:
    if finding.severity == "waived":
        return finding
    by_rule = finding.rule in opts.waive
    by_compliance = opts.skip_compliance and (
        finding.rule.startswith("compliance.") or bool(_COMPLIANCE_PATH.search(finding.path))
    )
    if not (by_rule or by_compliance):
        return finding
    why = "--skip-compliance" if by_compliance and not by_rule else f"--waive {finding.rule}"
    return Finding(
        finding.rule, "waived", finding.path, f"{finding.message} [waived by {why}]", finding.hint, finding.result
    )


def _orphan(finding: Finding, checked: set[str]) -> Finding:
    """A finding on a folder that looked like a result but is none (a link where a scenario folder would be)
    belongs to no result: it is listed with the tree's findings, never lost under a result nobody prints."""
    if finding.result is None or finding.result in checked:
        return finding
    return replace(finding, result=None)


def check_tree(tree: Path, opts: CheckOptions, console=None) -> CheckReport:
    tree = Path(tree)
    if opts.version is None:  # the round the tree's models point to, decided here (said when subtool chose it)
        from subtool.mlperf.round_choice import announce, choose_round_for_tree

        chosen = choose_round_for_tree(tree, None)
        opts = replace(opts, version=(announce(chosen, console) if console else chosen).version)
    _validate(tree, opts)
    cfg = round_config(opts.version)
    found: Discovery = discover(tree, cfg, opts.submitter)
    outcomes = _run_jobs(found.jobs)

    findings: list[Finding] = [_waive(f, opts) for f in found.tree.findings]
    checked = {job.result_id for job in found.jobs}
    scope_findings = {
        key: [_waive(_orphan(f, checked), opts) for f in col.findings] for key, col in found.scopes.items()
    }
    for key in found.scopes:
        findings.extend(scope_findings[key])

    results: list[ResultVerdict] = []
    rows: list[dict] = []
    for outcome in outcomes:
        own = [_waive(f, opts) for f in outcome.findings]
        findings.extend(own)
        shared = [f for key in found.job_scopes[outcome.job.result_id] for f in scope_findings.get(key, [])]
        verdict = _verdict(tree, outcome, own, shared)
        results.append(verdict)
        if verdict.passed and outcome.result_value is not None:
            rows.append(_summary_row(tree, opts.version, outcome))
    report = CheckReport(
        tree=str(tree),
        version=opts.version,
        findings=findings,
        results=results,
        rows=rows,
        waived_rules=sorted(opts.waive),
    )
    if opts.official is not None:
        from subtool.checker.official import diff_with_official

        report.official_diff = diff_with_official(tree, opts, report)
    return report


def _verdict(tree: Path, outcome, own: list[Finding], shared: list[Finding]) -> ResultVerdict:
    """One result's verdict from its own findings and those of the scopes it shares (its system, its code …)."""
    job = outcome.job
    everything = own + shared
    failed = sorted({f.rule for f in everything if f.severity == "error"})
    short = any(f.rule == "perf.min_duration" and not _COMPLIANCE_PATH.search(f.path) for f in own)
    return ResultVerdict(
        result=job.result_id,
        division=job.division,
        submitter=job.submitter,
        system=job.system,
        model=job.model,
        mlperf_model=job.mlperf_model,
        scenario=job.scenario,
        path=str(tree / job.result_id),
        passed=not failed,
        value=outcome.result_value,
        units=outcome.units,
        accuracy=outcome.accuracy,
        run_style="short" if short else "valid",
        waived=sorted({f.rule for f in everything if f.severity == "waived"}),
        failed=failed,
    )


def _product(a: object, b: object) -> int | str:
    """number_of_nodes × accelerators_per_node; "" when either is not a whole number (system rules say why)."""
    try:
        return int(a) * int(b)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return ""


def _summary_row(tree: Path, version: str, outcome: ResultOutcome) -> dict:
    """One summary.csv row, with the values the official checker writes (raw Python values; see report.py)."""
    job = outcome.job
    sj = job.system_json or {}
    # the notes joined as the official checker joins them, each as text (a number or a list there crashed it)
    notes = ". ".join(str(sj[k]) for k in ("hw_notes", "sw_notes") if sj.get(k))
    perf_log = os.path.join(str(tree), job.result_id, "performance", "run_1", "mlperf_log_detail.txt")
    effective = outcome.effective_scenario
    inferred = 1 if job.scenario != effective and (effective, job.scenario) != ("server", "interactive") else 0
    row = {
        "Organization": job.submitter,
        "Availability": sj.get("status"),
        "Division": job.division,
        "SystemType": sj.get("system_type"),
        "SystemName": sj.get("system_name"),
        "Platform": job.system,
        "Model": job.model,
        "MlperfModel": job.mlperf_model,
        "Scenario": job.scenario,
        "Result": outcome.result_value,
        "Accuracy": outcome.accuracy,
        "number_of_nodes": sj.get("number_of_nodes"),
        "host_processor_model_name": sj.get("host_processor_model_name"),
        "host_processors_per_node": sj.get("host_processors_per_node"),
        "host_processor_core_count": sj.get("host_processor_core_count"),
        "accelerator_model_name": sj.get("accelerator_model_name"),
        "accelerators_per_node": sj.get("accelerators_per_node"),
        "total_accelerators": _product(sj.get("number_of_nodes"), sj.get("accelerators_per_node")),
        "Location": os.path.dirname(perf_log),
        "framework": sj.get("framework"),
        "operating_system": sj.get("operating_system"),
        "notes": notes,
        "compliance": job.division,
        "errors": 0,
        "version": version,
        "inferred": inferred,
        "has_power": False,
        "Units": outcome.units,
        "weight_data_types": outcome.weight_data_types,
        # v6.1 looks for a nameplate-power file and records None when a result has no power run.
        "design_power_watts": None if round_config(version).nameplate_power else "",
        "PrivateID": "",
    }
    return row
