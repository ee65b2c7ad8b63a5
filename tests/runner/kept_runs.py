"""A finished LoadGen run's folder as an interrupted run keeps it, for the tests of runner/interrupted.py: a detail
log real enough for the checks a kept run gets before it is reused (its mode, scenario and result)."""

from __future__ import annotations

import json


def detail_log(mode: str, result: float = 1.0) -> str:
    """A LoadGen detail log of an Offline `mode` run as far as a kept run is checked: its mode, scenario, result."""
    meta = {"is_error": False, "is_warning": False, "file": "x.cc", "line_no": 1, "pid": 1, "tid": 1}
    values = {
        "effective_test_mode": "PerformanceOnly" if mode == "performance" else "AccuracyOnly",
        "effective_scenario": "Offline",
        "result_samples_per_second": result,
        "result_validity": "VALID",
    }
    return "".join(
        ":::MLLOG "
        + json.dumps(
            {
                "key": k,
                "value": v,
                "time_ms": 1.0,
                "namespace": "mlperf::logging",
                "event_type": "POINT_IN_TIME",
                "metadata": meta,
            }
        )
        + "\n"
        for k, v in values.items()
    )


def write_mode(folder, mode: str, result: float = 1.0) -> None:
    """A finished `mode` run's folder as the session writes it (performance/run_1/… or accuracy/…)."""
    logs = folder / mode / "run_1" if mode == "performance" else folder / mode
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "mlperf_log_detail.txt").write_text(detail_log(mode, result))
