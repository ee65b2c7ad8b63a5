"""Token-latency percentiles in a run's record and console summary, read through the one LoadGen reader
(mlperf/logs.py): a detail log with NaN, infinite, negative, wrongly typed or missing percentiles, or cut short,
gives n/a for what it lacks and never an exception or a non-finite number."""

from __future__ import annotations

import json
import math
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.scratch import module_scratch

from subtool.mlperf.logs import MARKER
from subtool.runner.llm.workload import LlmWorkload
from subtool.runner.session import SUMMARY_PERCENTILES, summary_lines

FUZZ = settings(
    max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
SCRATCH = module_scratch("subtool-token-summary-")
KEYS = [f"result_first_token_{p}_percentile_latency_ns" for p in ("50.00", "90.00", "95.00", "97.00", "99.00")] + [
    f"result_time_per_output_token_{p}_percentile_ns" for p in ("50.00", "90.00", "95.00", "97.00", "99.00")
]
OTHER = ["result_completed_tokens_per_second", "requested_server_ttft_latency", "requested_server_tpot_latency"]
values = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(10**12), 10**12)
    | st.text(max_size=5)
    | st.none()
    | st.booleans()
)


def _log(entries: list[tuple[str, object]], cut: int | None) -> Path:
    lines = [
        MARKER + json.dumps({"key": k, "value": v, "time_ms": 1.0, "namespace": "mlperf::logging"}).encode()
        for k, v in entries
    ]
    blob = b"\n".join(lines) + b"\n"
    path = SCRATCH / "mlperf_log_detail.txt"
    path.write_bytes(blob[:cut] if cut is not None else blob)
    return path


def test_summary_names_the_percentiles_and_limits_and_says_na_for_a_missing_one():
    entry = {
        "result": 1338.5,
        "units": "Tokens/s",
        "result_field": "result_completed_tokens_per_second",
        "result_validity": "VALID",
        "ttft_ms": {"p50": 51.284, "p90": 92.571, "p95": 115.8, "p97": 125.351, "p99": 141.127, "p99.9": 150.0},
        "tpot_ms": {"p50": 5.635, "p99": 9.698},
        "limits": {"ttft_ms": 500.0, "tpot_ms": 30.0},
    }
    assert summary_lines(entry, token_latencies=True) == [
        "  result_completed_tokens_per_second = 1,338.5 Tokens/s  (VALID)",
        "  TTFT ms: p50 51.284  p90 92.571  p95 115.8  p97 125.351  p99 141.127  (limit 500)",
        "  TPOT ms: p50 5.635  p90 n/a  p95 n/a  p97 n/a  p99 9.698  (limit 30)",
    ]
    # a latency scenario's result is ms (LoadGen's ns converted), said as ms; no token lines without token latencies
    latency = {"result": 0.1234, "units": "Latency (ms)", "result_field": "early_stopping_latency_ss"}
    assert summary_lines({**latency, "result_validity": "VALID"}, token_latencies=False) == [
        "  early_stopping_latency_ss = 0.123 ms  (VALID)"
    ]


@FUZZ
@given(
    st.lists(st.tuples(st.sampled_from(KEYS + OTHER), values), max_size=14),
    st.one_of(st.none(), st.integers(0, 4000)),
    st.sampled_from(["Offline", "Server", "Interactive"]),
)
def test_any_detail_log_gives_finite_percentiles_or_na(entries, cut, scenario):
    workload = LlmWorkload("llama3.1-8b")
    perf = workload.performance_metrics(_log(entries, cut), scenario)
    for key in ("ttft_ms", "tpot_ms", "latency_ms"):
        for v in (perf.get(key) or {}).values():
            assert isinstance(v, float) and math.isfinite(v) and v >= 0
    for v in (perf.get("limits") or {}).values():
        assert math.isfinite(v)
    entry = {"result_validity": "INVALID", "units": "Tokens/s", "result_field": "x", **perf}
    lines = summary_lines(entry, token_latencies=True)
    assert len(lines) == 3 and all("nan" not in line.lower() and "inf" not in line.lower() for line in lines)
    for line, key in zip(lines[1:], ("ttft_ms", "tpot_ms"), strict=True):
        for p in SUMMARY_PERCENTILES:
            assert (f"{p} n/a" in line) == (p not in (perf.get(key) or {}))
