"""mlperf_log_summary.txt of a performance run against its detail log: same scenario, verdict and result.

The detail log is what the rules (and the official checker) read; the summary is what people read. A summary
that tells another story than its detail log comes from another run or was edited, so it fails the result.
The official rules list the summary among a run's files but no official check reads it, so a summary that
cannot be read at all (empty, cut short, garbage) is a warning, as is a missing one (layout.missing_summary).
"""

from __future__ import annotations

from subtool.checker.context import ResultContext
from subtool.checker.registry import define
from subtool.checker.rules.inputs import NOT_FINITE
from subtool.mlperf.logs import LoadgenLog, read_summary
from subtool.mlperf.summary_match import disagreements

__all__ = ["MISMATCH", "UNREADABLE", "check_summary"]

MISMATCH = define(
    "summary.mismatch",
    "error",
    "A performance run's mlperf_log_summary.txt disagrees with its mlperf_log_detail.txt about the scenario, "
    "the verdict (Result is : VALID/INVALID) or the result value (beyond the summary's rounding: 6 significant "
    "digits, or two decimals for the Server 'Completed … per second' lines). The two files come from different "
    "runs, or one was edited.",
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

_RULES = {"mismatch": MISMATCH, "unreadable": UNREADABLE, "not_finite": NOT_FINITE}


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
    key = ctx.rules.result_field(scenario) if ctx.rules else None
    for said in disagreements(summary, log, scenario, key):
        ctx.out.add(_RULES[said.kind], summary_rel, said.message, hint_redo)
