"""mlperf_log_summary.txt of a performance run against its detail log: same scenario, verdict and result.

The detail log is what the rules (and the official checker) read; the summary is what people read. A summary
that tells another story than its detail log comes from another run or was edited, so it fails the result.
The official rules list the summary among a run's files but no official check reads it, so a summary that
cannot be read at all (empty, cut short, garbage) is a warning, as is a missing one (layout.missing_summary).
"""

from __future__ import annotations

import math

from subtool.checker.context import ResultContext
from subtool.checker.registry import define
from subtool.checker.rules.inputs import NOT_FINITE
from subtool.mlperf.logs import LoadgenLog, NonFinite, read_summary
from subtool.wording import plain_number, with_article

MISMATCH = define(
    "summary.mismatch",
    "error",
    "A performance run's mlperf_log_summary.txt disagrees with its mlperf_log_detail.txt about the scenario, "
    "the verdict (Result is : VALID/INVALID) or the result value (beyond the summary's 6-digit rounding). "
    "The two files come from different runs, or one was edited.",
    "not checked (the checker never reads the summary); subtool is deliberately stricter",
)
UNREADABLE = define(
    "summary.unreadable",
    "warning",
    "A performance run's mlperf_log_summary.txt cannot be compared with the detail log: empty, cut short, not "
    "a LoadGen summary, binary garbage, or without the verdict or result line. A warning because no official "
    "check reads the summary; the verdict comes from the detail log.",
    "not checked",
)

# detail-log result key → the summary's label for the same number
SUMMARY_LABELS = {
    "result_samples_per_second": "Samples per second",
    "result_tokens_per_second": "Tokens per second",
    "result_inferred_tokens_per_second": "Tokens per second (inferred)",
    "result_completed_samples_per_sec": "Completed samples per second",
    "result_completed_tokens_per_second": "Completed tokens per second",
    "result_inferred_completed_tokens_per_second": "Completed tokens per second (inferred)",
    "early_stopping_latency_ss": "Early stopping 90.0th percentile estimate",
    "early_stopping_latency_ms": "Early stopping 99.0th percentile estimate",
}
# LoadGen prints 6 significant digits in one file and more in the other: two roundings apart at most.
REL_TOLERANCE = 2e-5


def check_summary(ctx: ResultContext, log: LoadgenLog, rel: str, scenario: str) -> None:
    """Compare the summary beside the detail log `rel` (performance runs only; a missing one is not ours)."""
    summary_rel = rel.rsplit("/", 1)[0] + "/mlperf_log_summary.txt"
    if not ctx.is_file(summary_rel):
        return
    summary = read_summary(ctx.abs(summary_rel))
    hint_redo = "copy mlperf_log_summary.txt again from the same run directory as the detail log; never edit it"
    if summary.problem is not None:
        ctx.out.add(UNREADABLE, summary_rel, f"mlperf_log_summary.txt {summary.problem}", hint_redo)
        return
    told = summary.value("Scenario")
    if told is not None and told != scenario:
        ctx.out.add(
            MISMATCH,
            summary_rel,
            f"the summary is for {with_article(repr(told[:40]))} run, the detail log for {scenario}",
            hint_redo,
        )
    verdict = summary.value("Result is")
    validity = log["result_validity"]
    if verdict is None:
        ctx.out.add(UNREADABLE, summary_rel, "mlperf_log_summary.txt has no 'Result is' line", hint_redo)
    elif isinstance(validity, str) and verdict != validity:
        ctx.out.add(
            MISMATCH,
            summary_rel,
            f"the summary says the run is {verdict[:40]!r}, the detail log says {validity}",
            hint_redo,
        )
    key = ctx.rules.result_field(scenario) if ctx.rules else None
    label = SUMMARY_LABELS.get(key or "")
    detail = log[key] if key else None
    if label is None or not isinstance(detail, (int, float)) or isinstance(detail, bool):
        return  # nothing to compare (the performance rules report a missing result)
    value, problem = summary.number(label)
    if value is None:
        rule = NOT_FINITE if isinstance(problem, NonFinite) else UNREADABLE
        ctx.out.add(rule, summary_rel, f"mlperf_log_summary.txt {problem}", hint_redo)
    elif not math.isclose(value, float(detail), rel_tol=REL_TOLERANCE):
        ctx.out.add(
            MISMATCH,
            summary_rel,
            f"the summary's {label} is {summary.value(label)[:40]}, the detail log's {key} is {plain_number(detail)}",
            hint_redo,
        )
