"""The one reader of what LoadGen writes: detail log, summary, accuracy log. It never raises on bad bytes.

Every stage reads LoadGen's files here (checker, packaging, runner, pack) and gets what the file says plus, when it
cannot be fully used, a `Problem` in words that it turns into a finding or one error line with its own rule id.

- Detail log (`mlperf_log_detail.txt`): one JSON object per line after the `:::MLLOG ` marker. Every log carries a
  line with each loaded sample index (most of its bytes), so lines whose key the caller did not ask for are not
  decoded; only their shape is checked (a line cut short is how a truncated copy shows up).
- Summary (`mlperf_log_summary.txt`): `label : value` lines under LoadGen's heading.
- Accuracy log (`mlperf_log_accuracy.json`): a JSON list of {"qsl_idx": n, "data": hex}; the reader gives
  (qsl_idx, bytes) pairs and leaves turning bytes into arrays to the model family.
"""

from __future__ import annotations

import errno
import functools
import io
import math
import os
import re
import stat
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subtool.mlperf.detail_entries import LOADGEN_TAIL_BODY, cut_short, every_entry, odd_entries
from subtool.mlperf.json_strict import Missing, NonFinite, NotALog, Problem, Unreadable, parse_json

MARKER = b":::MLLOG "

# Keys any rule reads; everything else is skipped (but still shape-checked).
WANTED_KEYS = frozenset(
    {
        "loadgen_version",
        "loadgen_git_status_message",
        "sut_name",
        "qsl_reported_total_count",
        "qsl_reported_performance_count",
        "effective_scenario",
        "effective_test_mode",
        "effective_samples_per_query",
        "generated_samples_per_query",
        "effective_target_qps",
        "effective_target_latency_ns",
        "effective_target_latency_percentile",
        "effective_min_duration_ms",
        "effective_min_query_count",
        "effective_qsl_rng_seed",
        "effective_sample_index_rng_seed",
        "effective_schedule_rng_seed",
        "effective_performance_sample_count",
        "effective_accuracy_sample_count",
        "effective_sample_concatenate_permutation",
        "requested_use_token_latencies",
        "result_validity",
        "result_invalid_reason",
        "result_min_duration_met",
        "result_min_queries_met",
        "early_stopping_met",
        "early_stopping_result",
        "result_samples_per_second",
        "result_completed_samples_per_sec",
        "result_tokens_per_second",
        "result_completed_tokens_per_second",
        "result_inferred_tokens_per_second",
        "result_inferred_completed_tokens_per_second",
        "early_stopping_latency_ss",
        "early_stopping_latency_ms",
        "result_90.00_percentile_latency_ns",
        "result_99.00_percentile_latency_ns",
        "result_mean_latency_ns",
        "result_max_latency_ns",
        "result_99.00_percentile_per_query_latency_ns",
        "result_mean_query_latency_ns",
        "result_qps_without_loadgen_overhead",
        "result_first_token_99.00_percentile_latency_ns",
        "result_time_per_output_token_99.00_percentile_ns",
        "result_query_count",
        "num_errors",
    }
)


@dataclass
class LoadgenLog:
    """What a detail log says, as far as the rules care. `problems` lists why it could not be fully read."""

    path: Path | str  # as the caller gave it (making a Path of each costs more than reading a small log)
    raw: dict[str, bytes] = field(default_factory=dict)  # key → its JSON value, decoded on first use
    values: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # LoadGen error messages (is_error entries)
    problems: list[str] = field(default_factory=list)  # unreadable / not a detail log / corrupt lines
    non_finite: list[str] = field(default_factory=list)  # keys whose value is NaN or ±Infinity

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key, _UNREAD)
        if value is not _UNREAD:
            return value
        raw = self.raw.get(key)
        if raw is None:
            return default
        value = self.values[key] = self._decode(key, raw)
        return value

    def _decode(self, key: str, raw: bytes) -> Any:
        try:
            return _scalar(raw)
        except ValueError as exc:
            if isinstance(exc.args[0] if exc.args else None, NonFinite):
                self.non_finite.append(key)  # reported as value.not_finite, not as a corrupt log
            else:
                self.problems.append(f"the {key} entry is not valid JSON")
            return None

    def has(self, key: str) -> bool:
        return key in self.raw

    @property
    def readable(self) -> bool:
        return not self.problems

    def decode_all(self) -> dict[str, Any]:
        """Every kept key's value; afterwards `problems` and `non_finite` name every bad one."""
        values = self.values
        for key, raw in self.raw.items():
            if key not in values:
                values[key] = self._decode(key, raw)
        return {key: values[key] for key in self.raw}

    def non_finite_text(self) -> str:
        return ", ".join(f"{key} = {self.raw[key][:40].decode('utf-8', 'replace')}" for key in self.non_finite)

    @property
    def scenario(self) -> str | None:
        value = self.get("effective_scenario")
        return value if isinstance(value, str) else None

    @property
    def mode(self) -> str | None:
        """The test mode in subtool's words (performance, accuracy, submission, find_peak)."""
        raw = self.get("effective_test_mode")
        return _MODE_NAMES.get(raw, raw) if isinstance(raw, str) else None

    @property
    def loadgen_version(self) -> str | None:
        raw = self.get("loadgen_version")
        return raw.split(" ")[0] if isinstance(raw, str) else None

    def settings(self) -> dict[str, Any]:
        """The effective test settings the log holds, without the `effective_` prefix (in the log's order)."""
        return {k[len("effective_") :]: self.get(k) for k in self.raw if k.startswith("effective_")}


_MODE_NAMES = {
    "PerformanceOnly": "performance",
    "AccuracyOnly": "accuracy",
    "SubmissionRun": "submission",
    "FindPeakPerformance": "find_peak",
}
ALL_KEYS = None  # read_loadgen_log(path, keys=ALL_KEYS): keep every key, not only the checker's


@functools.lru_cache(maxsize=16)
def _key_pattern(keys: frozenset[str] | None) -> re.Pattern[bytes]:
    """The regular expression that picks `keys` (every key: None) and their raw values out of a detail log.

    A value ends at the first `, "time_ms": `: LoadGen writes key, value, time_ms in that order, and inside a JSON
    string a quote is always escaped, so the text cannot occur inside a value.
    """
    if keys is None:
        names = rb'[^"\\]+'
    else:
        names = b"|".join(re.escape(k.encode()) for k in sorted(keys, key=len, reverse=True))
    # The marker must start its line (the official reader's lines; Python's text mode ends them at \r too): the
    # look-behind comes after the literal, so the search keeps its fast literal scan. The last group is the rest
    # of the line as LoadGen writes it; where it is empty the caller parses the line (LoadgenLog problems).
    return re.compile(
        rb':::MLLOG (?<![^\r\n]:::MLLOG )\{"key": "(' + names + rb')", "value": (.*?), "time_ms": '
        rb"(?:(" + LOADGEN_TAIL_BODY + rb")(?=[\r\n]|\Z))?"
    )


DETAIL_LIMIT_BYTES = 256 << 20  # LoadGen's detail logs are a few MB (the sample-index line is most of it)
_BIG_LINE = b'{"key": "loaded_qsl_set"'  # one sample index per loaded sample: most of the file's bytes


def read_file(path: Path | str, limit: int | None = None, *, follow_links: bool = False) -> bytes:
    """The file's bytes (at most `limit`) in four system calls; OSError as open() would raise it.

    Checking a tree is mostly small reads, and on a VM each system call costs ~10 µs: the buffered open()
    path makes twice as many. A symbolic link is not followed (ELOOP) and anything but a regular file (a FIFO
    would block, /dev/zero would never end) is refused with EINVAL: a submission holds plain files. A caller
    reading the user's own run folder may follow links (`follow_links`).
    """
    nofollow = 0 if follow_links else getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | nofollow | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(
                errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EINVAL,
                "is a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file",
                str(path),
            )
        size = st.st_size
        want = size + 1 if limit is None else min(size + 1, limit)
        chunks = [os.read(fd, want)]
        if limit is None and len(chunks[0]) == want:  # the file grew (or lied about its size): read the rest
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


class TooLarge(OSError):
    """A file past the bound its reader set (read_bounded): read no further than the bound."""


def _size_words(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} kB" if n >= 1 << 10 else f"{n} bytes"


def read_bounded(path: Path | str, limit: int, *, follow_links: bool = False) -> bytes:
    """read_file's bytes of a file of at most `limit` bytes; TooLarge (an OSError, worded by describe_os_error
    as 'is larger than N MiB') for a longer one, of which no more than limit + 1 bytes are read."""
    data = read_file(path, limit + 1, follow_links=follow_links)
    if len(data) > limit:
        raise TooLarge(errno.EFBIG, f"is larger than {_size_words(limit)}", str(path))
    return data


def describe_os_error(exc: OSError) -> Unreadable:
    """Why a file could not be read, in words (a link, a folder, a special file, permissions, past its bound)."""
    if isinstance(exc, TooLarge):
        return Unreadable(exc.strerror)
    if exc.errno == errno.ELOOP:
        return Unreadable("cannot be read (it is a symbolic link; a submission holds plain files)")
    return Unreadable(f"cannot be read ({exc.strerror or exc})")


def read_loadgen_log(
    path: Path | str, keys: Collection[str] | None = WANTED_KEYS, *, follow_links: bool = False
) -> LoadgenLog:
    """Parse `path`; on any trouble return what could be read plus a description in `.problems`.

    `keys`: the keys to keep (the checker's by default; ALL_KEYS keeps every one). `follow_links`: read through a
    symbolic link (a run folder of the user's own); a submission tree's reader refuses links.

    Works on the whole file as bytes with C-speed searches: the loaded_qsl_set lines (most of the bytes) are
    stepped over with one newline search each, the wanted keys are picked out by one regular expression, and
    only LoadGen error entries are decoded as full JSON. Damage it reports: a foreign first line, bytes that are
    not UTF-8 anywhere, a last line cut short, a wanted or error entry that is not valid JSON. (A damaged line
    whose key no rule reads is not noticed; the official reader would stop on it.)
    """
    log = LoadgenLog(path)
    try:
        blob = read_bounded(path, DETAIL_LIMIT_BYTES, follow_links=follow_links)  # a 4 GiB one: out of memory
    except FileNotFoundError:
        log.problems.append(Missing("is missing"))
        return log
    except OSError as exc:
        log.problems.append(describe_os_error(exc))
        return log
    if not blob.startswith(MARKER):
        log.problems.append(
            NotALog("is empty")
            if not blob.strip()
            else NotALog("is not a LoadGen detail log (its first line has no ':::MLLOG' marker)")
        )
        return log
    if not blob.isascii():
        try:
            blob.decode("utf-8")
        except UnicodeDecodeError as exc:
            log.problems.append(
                f"line {_line_of(blob, exc.start)} holds bytes that are not UTF-8 text (binary garbage?)"
            )
    end = len(blob)
    while end and blob[end - 1] in b"\r\n \t":  # (rstrip would copy the whole file)
        end -= 1
    if cut_short(blob, end, MARKER):
        log.problems.append(f"line {_line_of(blob, end)} is cut short (the file looks truncated)")
    segments = []
    pos = 0
    while (hit := blob.find(_BIG_LINE, pos)) >= 0:
        segments.append((pos, max(pos, blob.rfind(b"\n", pos, hit) + 1)))
        nl = blob.find(b"\n", hit)
        pos = len(blob) if nl < 0 else nl + 1
    segments.append((pos, len(blob)))
    raw = log.raw
    pattern = _key_pattern(None if keys is None else frozenset(keys))
    for a, b in segments:
        odd = False
        for name, value, tail in pattern.findall(blob, a, b):
            odd = odd or not tail
            key = name.decode("utf-8", "replace")  # bytes that are not UTF-8 are a problem already
            if key not in raw:  # the first occurrence wins, as in the official reader
                raw[key] = value
        if odd:  # a kept line LoadGen did not write as it writes them: parsed, to say what is wrong with it
            for offset, key, problem in odd_entries(blob, a, b, pattern, len(MARKER)):
                log.problems.append(f"line {_line_of(blob, offset)} ({key}) {problem}")
    problems, errors = every_entry(blob, MARKER, log.raw)
    log.problems += problems
    log.errors += errors
    return log


def _line_of(blob: bytes, offset: int) -> int:
    return blob.count(b"\n", 0, offset) + 1


_UNREAD = object()
_CONSTANTS = {b"true": True, b"false": False, b"null": None}
_PLAIN_STRING = re.compile(rb'"[^"\\\x00-\x1f]*"\Z')
_JSON_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z")


def _scalar(raw: bytes) -> Any:
    """A detail-log value, read by the one strict JSON parser (NaN, Infinity, 1e999 are refused)."""
    if raw.isdigit():
        # the common case, without the parser (longer: past any float; a leading zero: not JSON; the parser says so)
        if len(raw) < 300 and (raw[:1] != b"0" or len(raw) == 1):
            return int(raw)
    elif raw in _CONSTANTS:
        return _CONSTANTS[raw]
    elif _PLAIN_STRING.match(raw):  # no escapes, no control characters: the text between the quotes
        try:
            return raw[1:-1].decode("utf-8")
        except UnicodeDecodeError:
            pass  # the parser says why
    elif len(raw) < 40 and _JSON_NUMBER.match(raw):
        if raw[:1] == b"-" and raw[1:].isdigit():
            return int(raw)
        value = float(raw)
        if math.isfinite(value):
            return value
    value, problem = parse_json(raw)
    if problem is not None:
        raise ValueError(problem)
    return value


def read_text_lines(path: Path, limit_bytes: int = 8 * 1024 * 1024) -> tuple[list[str] | None, str | None]:
    """Lines of a small text file (accuracy.txt, verify_*.txt) as Python's text mode gives them to the official
    checker: split at \\n, \\r\\n and \\r only, each line but an unended last one ending in \\n (a CRLF file's hash
    line matches `$` there; a form feed or U+2028 splits no line); (None, reason) when it cannot be used."""
    try:
        data = read_bounded(path, limit_bytes)  # not cut: a verdict line past the cut would go unseen
    except OSError as exc:
        return None, describe_os_error(exc)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "is not UTF-8 text (binary garbage?)"
    return io.StringIO(text, newline=None).readlines(), None  # universal newlines, as open() in text mode


# ------------------------------------------------------------------------------------------------- JSON
def read_json_object(path: Path | str) -> tuple[dict | None, str | None]:
    """A JSON object from `path`; (None, reason) when missing, unreadable, malformed or not an object.

    Every JSON file the checker reads goes through here (and so through parse_json).
    """
    try:
        data = read_file(path)
    except FileNotFoundError:
        return None, Problem("is missing")
    except OSError as exc:
        return None, describe_os_error(exc)
    obj, problem = parse_json(data)
    if problem is not None:
        return None, problem
    if not isinstance(obj, dict):
        return None, Problem(f"must hold a JSON object, found {type(obj).__name__}")
    return obj, None


# ------------------------------------------------------------------------------------------ summary log
SUMMARY_LIMIT_BYTES = 1 << 20  # a LoadGen summary is a few kB
_SUMMARY_HEADER = "MLPerf Results Summary"
_SUMMARY_LINE = re.compile(r"^\s*(?:\*\s*)?([^:]+?)\s*:\s*(.*?)\s*$")
_PLAIN_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$")
_SUMMARY_END = re.compile(r"^(No errors|\d+ ERRORS?) encountered")


@dataclass
class SummaryLog:
    """mlperf_log_summary.txt as `label → text` (first occurrence wins); `problem` says why it cannot be used.

    Lines are read as labels are asked for (`value`): the compared labels come first; `values` reads them all."""

    path: Path | str  # as the caller gave it
    problem: str | None = None
    lines: list[str] = field(default_factory=list, repr=False)
    _found: dict[str, str] = field(default_factory=dict, repr=False)
    _read: int = 0  # lines read into _found so far

    @property
    def values(self) -> dict[str, str]:
        self._read_until(None)
        return self._found

    def value(self, label: str) -> str | None:
        """The text of the first `label : text` line; None when there is none."""
        if label not in self._found:
            self._read_until(label)
        return self._found.get(label)

    def _read_until(self, wanted: str | None) -> None:
        found, lines = self._found, self.lines
        while self._read < len(lines):
            line = lines[self._read]
            self._read += 1
            colon = line.find(":")
            if colon < 0:
                continue  # a `label : value` line has a colon
            label = line[:colon].strip()
            if label[:1] == "*":
                label = label[1:].lstrip()
            if not label:  # only `*` or spaces before the colon: the pattern says what the label is
                m = _SUMMARY_LINE.match(line)
                if m is None:
                    continue
                label = m.group(1)
            if label not in found:
                found[label] = line[colon + 1 :].strip()
                if label == wanted:
                    return

    def number(self, label: str) -> tuple[float | None, Problem | None]:
        """(value, None), or (None, why) when the label is absent or its text is not a finite number."""
        text = self.value(label)
        if text is None:
            return None, Problem(f"has no '{label}' line")
        if _PLAIN_NUMBER.match(text):
            value = float(text)
            if math.isfinite(value):
                return value, None
        elif text.strip().lower().lstrip("+-") not in ("nan", "inf", "infinity"):
            return None, Problem(f"gives {label} as {text[:40]!r}, not a number")
        return None, NonFinite(f"gives {label} as {text[:40]!r}, not a finite number")


def read_summary(path: Path | str, *, follow_links: bool = False) -> SummaryLog:
    """Parse LoadGen's summary log; on any trouble `.problem` says what (never raises). `follow_links` as for
    read_loadgen_log: a run folder of the user's own, not a submission tree."""
    summary = SummaryLog(path)
    try:
        data = read_bounded(path, SUMMARY_LIMIT_BYTES, follow_links=follow_links)
    except OSError as exc:
        summary.problem = describe_os_error(exc)
        return summary
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        summary.problem = "is not UTF-8 text (binary garbage?)"
        return summary
    if not text.strip():
        summary.problem = "is empty"
        return summary
    if _SUMMARY_HEADER not in text[:400]:
        summary.problem = f"is not a LoadGen summary (no '{_SUMMARY_HEADER}' heading)"
        return summary
    lines = summary.lines = text.splitlines()
    last = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
    if not _SUMMARY_END.match(last):
        summary.problem = "is cut short (it does not end with LoadGen's error count line)"
    return summary


# ------------------------------------------------------------------------------------------- accuracy log
@dataclass
class AccuracyLog:
    """mlperf_log_accuracy.json as (qsl_idx, response bytes) in the file's order; `problem` says why it cannot be
    used (then `entries` is empty)."""

    path: Path
    entries: list[tuple[int, bytes]] = field(default_factory=list)
    problem: Problem | None = None


def read_accuracy_log(path: Path | str) -> AccuracyLog:
    """Parse LoadGen's accuracy log: a JSON list of {"qsl_idx": n, "data": "hex"}; never raises.

    An entry whose qsl_idx is not a whole number ≥ 0 or whose data is not hex text makes the whole log unusable:
    a response cannot be scored half-read.
    """
    log = AccuracyLog(Path(path))
    try:
        blob = read_file(path, follow_links=True)  # the runner's own output folder
    except OSError as exc:
        log.problem = Missing("is missing") if isinstance(exc, FileNotFoundError) else describe_os_error(exc)
        return log
    data, problem = parse_json(blob) if blob.strip() else (None, NotALog("is empty"))
    if problem is None and not isinstance(data, list):
        problem = NotALog(f"must hold a JSON list of responses, found {type(data).__name__}")
    if problem is not None:
        log.problem = problem if isinstance(problem, (NonFinite, NotALog)) else Problem(f"{problem} (cut short?)")
        return log
    for number, entry in enumerate(data, start=1):
        idx, response = _response(entry)
        if response is None:
            log.entries = []
            log.problem = Problem(f"entry {number} has no qsl_idx (a whole number) and data (hex text)")
            return log
        log.entries.append((idx, response))
    return log


def _response(entry: object) -> tuple[int, bytes | None]:
    idx = entry.get("qsl_idx") if isinstance(entry, dict) else None
    hex_text = entry.get("data") if isinstance(entry, dict) else None
    if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0 or not isinstance(hex_text, str):
        return -1, None
    try:
        return idx, bytes.fromhex(hex_text)
    except ValueError:
        return -1, None


# ------------------------------------------------------------------------------------ latency percentiles
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
