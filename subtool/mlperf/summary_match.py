"""Whether a performance run's mlperf_log_summary.txt tells the story of its detail log: the same scenario, the
same verdict (`Result is`), the same result value within the summary's rounding. Two files that disagree come
from different runs, or one was edited. `check` fails such a result (summary.mismatch); `package` refuses to
lay it out (import.summary_mismatch), so that it never reaches a tree."""

from __future__ import annotations

import math
from dataclasses import dataclass

from subtool.mlperf.json_strict import NonFinite
from subtool.mlperf.logs import LoadgenLog, SummaryLog

__all__ = ["ABS_TOLERANCE", "REL_TOLERANCE", "SUMMARY_LABELS", "Disagreement", "disagreements"]

# detail-log result key → the summary's label for the same number
SUMMARY_LABELS = {
    "result_samples_per_second": "Samples per second",
    "result_tokens_per_second": "Tokens per second",
    "result_inferred_tokens_per_second": "Tokens per second (inferred)",
    "result_completed_samples_per_sec": "Completed samples per second",
    "result_completed_tokens_per_second": "Completed tokens per second",
    "result_inferred_completed_tokens_per_second": "Completed tokens per second (inferred)",
    "early_stopping_latency_ss": "Early stopping {percentile}th percentile estimate",
    "early_stopping_latency_ms": "Early stopping {percentile}th percentile estimate",
}
# The early-stopping labels name the run's target percentile (0.9 → "90.0"; pointpainting's 0.999 → "99.9"); a log
# without a usable one has the usual percentile of the key's scenario.
DEFAULT_PERCENTILE = {"early_stopping_latency_ss": 0.9, "early_stopping_latency_ms": 0.99}
# LoadGen prints 6 significant digits in one file and more in the other: two roundings apart at most.
REL_TOLERANCE = 2e-5
# Labels LoadGen prints in fixed point with two decimals (17.86 for a detail log's 17.8585): half a hundredth of
# its own rounding plus the detail log's (at most 0.0005 below 1000; above 1000 REL_TOLERANCE covers both).
ABS_TOLERANCE = {
    "Completed samples per second": 0.006,
    "Completed tokens per second": 0.006,
    "Completed tokens per second (inferred)": 0.006,
}


@dataclass(frozen=True)
class Disagreement:
    kind: str  # "mismatch": the two disagree; "unreadable": a line to compare is missing; "not_finite"
    message: str


def disagreements(summary: SummaryLog, log: LoadgenLog, scenario: str, result_key: str | None) -> list[Disagreement]:
    """What a readable summary (summary.problem is None) says against the detail log `log` of a `scenario` run
    whose result is `result_key`."""
    found = []
    told = summary.value("Scenario")
    if told is not None and told != scenario:
        found.append(Disagreement("mismatch", f"the summary is for a {told[:40]!r} run, the detail log for {scenario}"))
    verdict, validity = summary.value("Result is"), log["result_validity"]
    if verdict is None:
        found.append(Disagreement("unreadable", "mlperf_log_summary.txt has no 'Result is' line"))
    elif isinstance(validity, str) and verdict != validity:
        said = f"the summary says the run is {verdict[:40]!r}, the detail log says {validity}"
        found.append(Disagreement("mismatch", said))
    label = _label(log, result_key)
    detail = log[result_key] if result_key else None
    if label is None or not isinstance(detail, (int, float)) or isinstance(detail, bool):
        return found  # nothing to compare (the performance rules report a missing result)
    value, problem = summary.number(label)
    if value is None:
        kind = "not_finite" if isinstance(problem, NonFinite) else "unreadable"
        found.append(Disagreement(kind, f"mlperf_log_summary.txt {problem}"))
    elif not math.isclose(value, float(detail), rel_tol=REL_TOLERANCE, abs_tol=ABS_TOLERANCE.get(label, 0.0)):
        said = f"the summary's {label} is {summary.value(label)[:40]}, the detail log's {result_key} is {detail!r:.40}"
        found.append(Disagreement("mismatch", said))
    return found


def _label(log: LoadgenLog, result_key: str | None) -> str | None:
    """The summary's label for the detail log's `result_key`, as LoadGen names it for this run."""
    label = SUMMARY_LABELS.get(result_key or "")
    if label is None or "{percentile}" not in label:
        return label
    percentile = log["effective_target_latency_percentile"]
    if not isinstance(percentile, float) or not 0 < percentile < 1:
        percentile = DEFAULT_PERCENTILE[result_key]
    return label.format(percentile=f"{percentile * 100:.1f}")
