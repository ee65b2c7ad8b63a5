"""LoadGen `:::MLLOG` detail logs: read once, keep the keys the rules need, never raise on bad bytes.

A detail log is one JSON object per line after the `:::MLLOG ` marker. Every log carries a line with each
loaded sample index (most of its bytes), so lines whose key no rule reads are not decoded; only their shape
is checked (a line cut short is how a truncated copy shows up).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARKER = b":::MLLOG "
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
    raw: dict[str, bytes] = field(default_factory=dict)   # key → its JSON value, decoded on first use
    values: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)       # LoadGen error messages (is_error entries)
    problems: list[str] = field(default_factory=list)     # unreadable / not a detail log / corrupt lines

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.values:
            return self.values[key]
        raw = self.raw.get(key)
        if raw is None:
            return default
        try:
            value = _scalar(raw)
        except ValueError:
            self.problems.append(f"the {key} entry is not valid JSON")
            value = None
        self.values[key] = value
        return value

    def has(self, key: str) -> bool:
        return key in self.raw

    @property
    def readable(self) -> bool:
        return not self.problems

    def decode_all(self) -> dict[str, Any]:
        return {key: self.get(key) for key in self.raw}


_KEY_RE = re.compile(
    rb':::MLLOG \{"key": "(' + b"|".join(re.escape(k.encode()) for k in sorted(WANTED_KEYS, key=len, reverse=True))
    + rb')", "value": (.*?), "time_ms": ')
_BIG_LINE = b'{"key": "loaded_qsl_set"'   # one sample index per loaded sample: most of the file's bytes


def read_file(path: Path | str, limit: int | None = None) -> bytes:
    """The file's bytes (at most `limit`) in four system calls; OSError as open() would raise it.

    Checking a tree is mostly small reads, and on a VM each system call costs ~10 µs: the buffered open()
    path makes twice as many.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        want = size + 1 if limit is None else min(size + 1, limit)
        chunks = [os.read(fd, want)]
        if limit is None and len(chunks[0]) == want:   # the file grew (or lied about its size): read the rest
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


def read_loadgen_log(path: Path | str) -> LoadgenLog:
    """Parse `path`; on any trouble return what could be read plus a description in `.problems`.

    Works on the whole file as bytes with C-speed searches: the loaded_qsl_set lines (most of the bytes) are
    stepped over with one newline search each, the wanted keys are picked out by one regular expression, and
    only LoadGen error entries are decoded as full JSON. Damage it reports: a foreign first line, bytes that are
    not UTF-8 anywhere, a last line cut short, a wanted or error entry that is not valid JSON. (A damaged line
    whose key no rule reads is not noticed; the official reader would stop on it.)
    """
    log = LoadgenLog(Path(path))
    try:
        blob = read_file(path)
    except OSError as exc:
        log.problems.append(f"cannot be read ({exc.strerror or exc})")
        return log
    if not blob.startswith(MARKER):
        log.problems.append("is empty" if not blob.strip() else
                            "is not a LoadGen detail log (its first line has no ':::MLLOG' marker)")
        return log
    if not blob.isascii():
        try:
            blob.decode("utf-8")
        except UnicodeDecodeError as exc:
            log.problems.append(f"line {_line_of(blob, exc.start)} holds bytes that are not UTF-8 text "
                                "(binary garbage?)")
    end = len(blob)
    while end and blob[end - 1] in b"\r\n \t":   # (rstrip would copy the whole file)
        end -= 1
    if blob[end - 1:end] != b"}":
        log.problems.append(f"line {_line_of(blob, end)} is cut short (the file looks truncated)")
    segments = []
    pos = 0
    while (hit := blob.find(_BIG_LINE, pos)) >= 0:
        segments.append((pos, max(pos, blob.rfind(b"\n", pos, hit) + 1)))
        nl = blob.find(b"\n", hit)
        pos = len(blob) if nl < 0 else nl + 1
    segments.append((pos, len(blob)))
    raw = log.raw
    for a, b in segments:
        for m in _KEY_RE.finditer(blob, a, b):
            key = m.group(1).decode()
            if key not in raw:   # the first occurrence wins, as in the official reader
                raw[key] = m.group(2)
    for a, b in segments:   # LoadGen never logs an error inside a sample-index line
        _errors(blob, a, b, log)
    return log


def _line_of(blob: bytes, offset: int) -> int:
    return blob.count(b"\n", 0, offset) + 1


def _scalar(raw: bytes) -> Any:
    if raw[:1] == b'"' or raw[:1] in (b"[", b"{"):
        return json.loads(raw)
    if raw == b"true":
        return True
    if raw == b"false":
        return False
    if raw == b"null":
        return None
    try:
        return int(raw)
    except ValueError:
        return float(raw)


def _errors(blob: bytes, pos: int, stop: int, log: LoadgenLog) -> None:
    while (hit := blob.find(_ERROR_MARK, pos, stop)) >= 0:
        start = blob.rfind(b"\n", 0, hit) + 1
        end = blob.find(b"\n", hit)
        end = len(blob) if end < 0 else end
        pos = end
        try:
            entry = json.loads(blob[start + len(MARKER):end])
        except ValueError:
            log.problems.append(f"line {_line_of(blob, start)} is not valid JSON")
            continue
        if isinstance(entry, dict) and (entry.get("metadata") or {}).get("is_error"):
            log.errors.append(str(entry.get("value")))


def read_text_lines(path: Path, limit_bytes: int = 8 * 1024 * 1024) -> tuple[list[str] | None, str | None]:
    """Lines of a small text file (accuracy.txt, verify_*.txt); (None, reason) when it cannot be used."""
    try:
        data = read_file(path, limit_bytes + 1)
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
        data = read_file(path)
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
