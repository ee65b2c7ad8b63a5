"""One builder of the scorer's ResultRecord for the tests that rank or tabulate results without packing a tree: a
passing open bert-99 Offline result of team T by default; each test names only what it varies."""

from __future__ import annotations

from subtool.scoring.entry import ResultRecord

FAILED_RULE = "perf.result_invalid"


def result_record(
    submitter: str = "T",
    model: str = "bert-99",
    scenario: str = "Offline",
    value: float | None = 1234.5,
    *,
    division: str = "open",
    system: str = "box",
    mlperf_model: str | None = None,
    passed: bool = True,
    failed_rule: str = FAILED_RULE,
    **fields,
) -> ResultRecord:
    """A result at open/<submitter>/results/<system>/<model>/<scenario>. One that does not pass carries
    `failed_rule` as its failed rule and reason, and fails its accuracy column unless `accuracy_ok` is given."""
    values = {
        "units": "Samples/s",
        "accuracy": "F1: 90.9",
        "run_style": "short",
        "accuracy_ok": passed,
        "performance_ok": True,
        "failed": [] if passed else [failed_rule],
        "reasons": [] if passed else [f"{failed_rule}: LoadGen says INVALID (x)"],
        **fields,
    }
    return ResultRecord(
        result_id=f"{division}/{submitter}/results/{system}/{model}/{scenario}",
        division=division,
        submitter=submitter,
        system=system,
        model=model,
        mlperf_model=model if mlperf_model is None else mlperf_model,
        scenario=scenario,
        value=value,
        passed=passed,
        **values,
    )
