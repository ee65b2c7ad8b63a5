"""LoadGen `:::MLLOG` detail logs: read once, keep the keys the rules need, never raise on bad bytes.

A detail log is one JSON object per line after the `:::MLLOG ` marker. Offline logs carry a line with every
loaded sample index (hundreds of KB), so lines whose key no rule reads are skipped without decoding their
JSON; only their shape is checked (a line cut short is how a truncated copy shows up).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARKER = b":::MLLOG "
_KEY_PREFIX = b':::MLLOG {"key": "'
_ERROR_MARK = b'"is_error": true'

# Keys any rule reads; everything else is skipped (but still shape-checked).
WANTED_KEYS = frozenset({
    "loadgen_version", "loadgen_git_status_message", "sut_name", "qsl_reported_total_count",
    "qsl_reported_performance_count", "effective_scenario", "effective_test_mode", "effective_samples_per_query",
    "effective_target_qps", "effective_target_latency_ns", "effective_min_duration_ms",
    "effective_min_query_count", "effective_qsl_rng_seed", "effective_sample_index_rng_seed",
    "effective_schedule_rng_seed", "effective_performance_sample_count", "effective_accuracy_sample_count",
    "effective_sample_concatenate_permutation", "requested_use_token_latencies", "result_validity",
    "result_invalid_reason", "result_min_duration_met", "result_min_queries_met", "early_stopping_met",
    "early_stopping_result", "result_samples_per_second", "result_completed_samples_per_sec",
    "result_tokens_per_second", "result_completed_tokens_per_second", "result_inferred_tokens_per_second",
    "result_inferred_completed_tokens_per_second", "early_stopping_latency_ss", "early_stopping_latency_ms",
    "result_90.00_percentile_latency_ns", "result_99.00_percentile_latency_ns", "result_mean_latency_ns",
    "result_99.00_percentile_per_query_latency_ns", "result_mean_query_latency_ns",
    "result_qps_without_loadgen_overhead", "result_first_token_99.00_percentile_latency_ns",
    "result_time_per_output_token_99.00_percentile_ns", "result_query_count", "num_errors",
})


@dataclass
class LoadgenLog:
    """What a detail log says, as far as the rules care. `problems` lists why it could not be fully read."""

    path: Path
    values: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)       # LoadGen error messages (is_error entries)
    problems: list[str] = field(default_factory=list)     # unreadable / not a detail log / corrupt lines

    def __getitem__(self, key: str) -> Any:
        return self.values.get(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def has(self, key: str) -> bool:
        return key in self.values

    @property
    def readable(self) -> bool:
        return not self.problems


def read_loadgen_log(path: Path) -> LoadgenLog:
    """Parse `path`; on any trouble return what could be read plus a description in `.problems`."""
    log = LoadgenLog(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        log.problems.append(f"cannot be read ({exc.strerror or exc})")
        return log
    with fh:
        first = True
        for number, raw in enumerate(fh, start=1):
            line = raw.rstrip(b"\r\n ")
            if first:
                first = False
                if not line.startswith(MARKER):
                    log.problems.append("is not a LoadGen detail log (its first line has no ':::MLLOG' marker)")
                    return log
            if not line.isascii():
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    log.problems.append(f"line {number} holds bytes that are not UTF-8 text (binary garbage?)")
                    continue
            if not line.startswith(MARKER):
                continue  # LoadGen never writes such lines, and the official reader ignores them too
            if not line.endswith(b"}"):
                log.problems.append(f"line {number} is cut short (the file looks truncated)")
                continue
            key = None
            if line.startswith(_KEY_PREFIX):
                end = line.find(b'"', len(_KEY_PREFIX))
                key = line[len(_KEY_PREFIX):end].decode("utf-8", "replace") if end > 0 else None
            is_error = _ERROR_MARK in line
            if key is not None and key not in WANTED_KEYS and not is_error:
                continue
            try:
                entry = json.loads(line[len(MARKER):])
                key = entry["key"]
            except (ValueError, KeyError, TypeError):
                log.problems.append(f"line {number} is not valid JSON")
                continue
            value = entry.get("value")
            if is_error and (entry.get("metadata") or {}).get("is_error"):
                log.errors.append(str(value))
            log.values.setdefault(key, value)  # the first occurrence wins, as in the official reader
    if first:
        log.problems.append("is empty")
    return log


def read_text_lines(path: Path, limit_bytes: int = 8 * 1024 * 1024) -> tuple[list[str] | None, str | None]:
    """Lines of a small text file (accuracy.txt, verify_*.txt); (None, reason) when it cannot be used."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit_bytes + 1)
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    if len(data) > limit_bytes:
        data = data[:limit_bytes]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "is not UTF-8 text (binary garbage?)"
    return text.splitlines(keepends=True), None


def read_json_object(path: Path) -> tuple[dict | None, str | None]:
    """A JSON object from `path`; (None, reason) when missing, unreadable, malformed or not an object."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return None, "is missing"
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    try:
        obj = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "is not UTF-8 text"
    except ValueError as exc:
        return None, f"is not valid JSON ({exc})"
    if not isinstance(obj, dict):
        return None, f"must hold a JSON object, found {type(obj).__name__}"
    return obj, None
