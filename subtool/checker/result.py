"""Check one result folder: every per-result rule, in the official checker's order. Runs in worker processes."""

from __future__ import annotations

from dataclasses import dataclass

from subtool.checker.context import ResultContext, ResultJob
from subtool.checker.findings import Finding
from subtool.checker.rules import layout
from subtool.checker.rules.accuracy import accuracy_summary, check_accuracy
from subtool.checker.rules.compliance import check_compliance
from subtool.checker.rules.measurements import check_measurements
from subtool.checker.rules.performance import check_perf_log


@dataclass
class ResultOutcome:
    job: ResultJob
    findings: list[Finding]
    result_value: float | None
    accuracy: str
    units: str
    inferred: bool
    weight_data_types: object
    effective_scenario: object


def check_result(job: ResultJob) -> ResultOutcome:
    ctx = ResultContext(job)
    layout.check_result_files(ctx)
    if ctx.perf_log is not None:
        check_perf_log(ctx, ctx.perf_log, ctx.perf_rel, main_run=True)
    check_accuracy(ctx)
    measurements = check_measurements(ctx)
    check_compliance(ctx)
    units = ctx.rules.units(ctx.scenario) if ctx.rules else ""
    return ResultOutcome(
        job=job,
        findings=ctx.out.findings,
        result_value=ctx.result_value,
        accuracy=accuracy_summary(ctx.accuracy_metrics),
        units=units,
        inferred=ctx.inferred,
        weight_data_types=(measurements or {}).get("weight_data_types", ""),
        effective_scenario=ctx.perf_log["effective_scenario"] if ctx.perf_log is not None else None,
    )


def check_results(jobs: list[ResultJob]) -> list[ResultOutcome]:
    """A batch, for one worker: fewer, larger messages between processes."""
    return [check_result(job) for job in jobs]
