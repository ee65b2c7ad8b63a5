"""Read what a LoadGen run says about itself: `mlperf_log_detail.txt` (one `:::MLLOG {json}` per line).

Packaging trusts the logs over the user: scenario, test mode, sample counts and settings come from here, and a
log that is cut short or not a LoadGen log is refused with the file and the line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subtool.errors import SubtoolError

MARKER = ":::MLLOG"

# Keys LoadGen writes at the very end of a run; a log without them was cut short.
_END_KEYS_PERFORMANCE = ("result_validity",)
_MAX_KEPT_ITEMS = 64
_MODE_NAMES = {
    "PerformanceOnly": "performance",
    "AccuracyOnly": "accuracy",
    "SubmissionRun": "submission",
    "FindPeakPerformance": "find_peak",
}


@dataclass
class DetailLog:
    path: Path
    values: dict[str, Any] = field(default_factory=dict)  # first value of each key
    errors: list[str] = field(default_factory=list)  # LoadGen error entries

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    @property
    def scenario(self) -> str | None:
        return self.values.get("effective_scenario")

    @property
    def mode(self) -> str | None:
        raw = self.values.get("effective_test_mode")
        return _MODE_NAMES.get(raw, raw)

    @property
    def loadgen_version(self) -> str | None:
        raw = self.values.get("loadgen_version")
        return raw.split(" ")[0] if isinstance(raw, str) else None

    def settings(self) -> dict[str, Any]:
        """The effective test settings, without the `effective_` prefix."""
        return {k[len("effective_") :]: v for k, v in self.values.items() if k.startswith("effective_")}


def read_detail_log(path: Path, *, expect_mode: str | None = None) -> DetailLog:
    """Parse a detail log; refuse a missing, foreign, cut-short or wrong-mode log."""
    path = Path(path)
    if not path.is_file():
        raise SubtoolError(
            "LoadGen detail log is missing",
            path=path,
            rule="import.missing_log",
            hint="each performance/accuracy directory needs mlperf_log_detail.txt and "
            "mlperf_log_summary.txt as LoadGen wrote them",
        )
    log = DetailLog(path=path)
    last_line_no = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line_no, line in enumerate(fh, start=1):
            last_line_no = line_no
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if not line.startswith(MARKER):
                if line_no == 1:
                    raise SubtoolError(
                        "not a LoadGen detail log (first line has no ':::MLLOG' marker)",
                        path=path,
                        rule="import.not_loadgen_log",
                    )
                continue
            try:
                entry = json.loads(line[len(MARKER) :])
                key = entry["key"]
            except (ValueError, KeyError, TypeError):
                raise SubtoolError(
                    f"line {line_no} is not a complete LoadGen entry: the log is cut short or corrupted",
                    path=path,
                    rule="import.truncated_log",
                    hint="copy the log again from the machine that ran it",
                ) from None
            if key not in log.values:
                value = entry.get("value")
                # loaded_qsl_set, loadgen_file_sha1 …: big, never needed; keeping them would make memory grow
                # with the number of results packaged
                if isinstance(value, (list, dict)) and len(value) > _MAX_KEPT_ITEMS:
                    value = None
                log.values[key] = value
            if (entry.get("metadata") or {}).get("is_error"):
                log.errors.append(str(entry.get("value")))
    if last_line_no == 0:
        raise SubtoolError("LoadGen detail log is empty", path=path, rule="import.truncated_log")
    for key in ("effective_scenario", "effective_test_mode"):
        if key not in log.values:
            raise SubtoolError(f"log has no '{key}' entry: it is cut short", path=path, rule="import.truncated_log")
    if log.mode == "performance":
        for key in _END_KEYS_PERFORMANCE:
            if key not in log.values:
                raise SubtoolError(
                    f"performance log has no '{key}' entry: the run did not finish or the log is cut short",
                    path=path,
                    rule="import.truncated_log",
                )
    if expect_mode and log.mode != expect_mode:
        article = "an" if str(log.mode)[:1].lower() in "aeiou" else "a"
        raise SubtoolError(
            f"this is {article} {log.mode} log (effective_test_mode={log.get('effective_test_mode')}), "
            f"but it was given as the {expect_mode} log",
            path=path,
            rule="import.wrong_mode",
            hint="--perf takes the PerformanceOnly run, --acc the AccuracyOnly run",
        )
    return log


# LoadGen's percentile keys (ns): the latency of each query, and for LLM runs with token latencies the time to first
# token and the time per output token.
PERCENTILES = ("50.00", "90.00", "95.00", "97.00", "99.00", "99.90")
_LATENCY_KEYS = (
    ("latency_ms", "result_{}_percentile_latency_ns"),
    ("ttft_ms", "result_first_token_{}_percentile_latency_ns"),
    ("tpot_ms", "result_time_per_output_token_{}_percentile_ns"),
)


def _percentile_name(p: str) -> str:
    whole, _, frac = p.partition(".")
    return f"p{whole}" + (f".{frac.rstrip('0')}" if frac.rstrip("0") else "")


def latency_percentiles(values: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{"latency_ms" | "ttft_ms" | "tpot_ms": {"p50": ms, "p90": ms, …}} from a detail log's values; only finite,
    non-negative numbers, so a lying log gives fewer entries, never garbage."""
    import math

    out: dict[str, dict[str, float]] = {}
    for name, template in _LATENCY_KEYS:
        found = {}
        for p in PERCENTILES:
            v = values.get(template.format(p))
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0:
                found[_percentile_name(p)] = round(v / 1e6, 3)
        if found:
            out[name] = found
    return out
