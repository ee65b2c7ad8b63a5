"""The shape of a detail-log entry's line beyond its key and value: LoadGen writes each as one JSON object naming
each field once, in one order. logs.py's pattern matches that rest as LoadGen writes it (LOADGEN_TAIL_BODY); a
kept line that differs is parsed here to say what is wrong with it (a second "value", which json.loads would
take over the first; garbage), or to accept it as JSON written another way.

Every other `:::MLLOG` line is read here too, as the official reader reads it (every_entry): it stops on a line
that is not a JSON object with a key, and its error count fails a result on an entry without metadata.is_error.
"""

from __future__ import annotations

import json
import re

from subtool.mlperf.json_strict import RepeatedKey, unique_pairs

# What follows an entry's value as LoadGen writes it, to the end of its line (after `, "time_ms": `).
LOADGEN_TAIL_BODY = (
    rb'-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?, "namespace": "mlperf::logging", '
    rb'"event_type": "POINT_IN_TIME", "metadata": \{"is_error": (?:true|false), "is_warning": (?:true|false), '
    rb'"file": "[^"\\\x00-\x1f]*", "line_no": [0-9]+, "pid": [0-9]+, "tid": [0-9]+\}\}[ \t]*'
)


def odd_entries(blob: bytes, a: int, b: int, pattern: re.Pattern[bytes], marker: int) -> list[tuple[int, str, str]]:
    """(offset, key, problem) for each kept entry between a and b that `pattern` (logs._key_pattern: key, value,
    LoadGen's tail) matched without its tail and that is not one JSON object of its key with each name once."""
    found = []
    for match in pattern.finditer(blob, a, b):
        if match[3]:
            continue
        end = len(blob) if (nl := blob.find(b"\n", match.end(2))) < 0 else nl
        key = match[1].decode("utf-8", "replace")
        # the line's shape with its value stood in for by 0 (the value is read apart, when it is used)
        shape = blob[match.start() + marker : match.start(2)] + b"0" + blob[match.end(2) : end]
        problem = _entry_problem(shape, key)  # None: JSON as LoadGen's, written another way (another version)
        if problem:
            found.append((match.start(), key, problem))
    return found


def _entry_problem(line: bytes, key: str) -> str | None:
    """Why a kept entry's line (its value replaced) is not one JSON object of that key, with each name once, or
    None."""
    try:
        entry = _ENTRY_DECODER.decode(line.decode("utf-8", "replace"))
    except RepeatedKey as exc:
        return f"repeats the name {str(exc.args[0])[:40]!r} in one entry (LoadGen writes each once)"
    except (ValueError, RecursionError):
        return "is not valid JSON"
    if entry.get("key") != key:
        return "is not valid JSON"
    return None


_ENTRY_DECODER = json.JSONDecoder(object_pairs_hook=unique_pairs)


_STRUCTURE = re.compile(r"[,:\]}\s]")
_INDEX_LIST = b'{"key": "loaded_qsl_set", "value": ['  # a log's longest line: thousands of sample indices
_TAIL = re.compile(rb'\], "time_ms": ' + LOADGEN_TAIL_BODY)
_KEY_FIRST = re.compile(rb'\{"key": "([^"\\]*)"')
# a line as LoadGen writes it, with a value of a plain kind (a number, a string without escapes, a constant, a
# list of sample indices, an object of plain strings): a JSON object with a key and metadata.is_error for
# certain, read without json.loads (which made reading a log 10 times slower)
_PLAIN_LINE = re.compile(
    rb'\{"key": "[^"\\\x00-\x1f]*", "value": (?:-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|"[^"\\\x00-\x1f]*"'
    rb"|true|false|null|\[(?:[0-9]+(?:, ?[0-9]+)*)?\]"
    rb'|\{(?:"[^"\\\x00-\x1f]*": ?"[^"\\\x00-\x1f]*"(?:, ?"[^"\\\x00-\x1f]*": ?"[^"\\\x00-\x1f]*")*)?\}), "time_ms": '
    + LOADGEN_TAIL_BODY
)


def cut_short(blob: bytes, end: int, marker: bytes) -> bool:
    """Whether the last line (ending at `end`) is a LoadGen entry cut off: a prefix of the marker, or a marker line
    whose JSON ends before it is whole (a value damaged inside it is the kept values' or every_entry's to say; a
    last line without the marker is not LoadGen's and is passed over, as the official reader does)."""
    start = max(blob.rfind(b"\n", 0, end), blob.rfind(b"\r", 0, end)) + 1
    if marker.startswith(blob[start:end]):
        return True  # cut inside the marker (an empty last line was stripped before)
    bare = marker.rstrip()  # the official reader strips each line: a line of ":::MLLOG" is an entry there
    if not blob.startswith(bare, start):
        return False
    text = blob[start + len(bare) : end].decode("utf-8", "replace")
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        # cut: the parser ran out inside a string or a last, partial token (`fa` of false, `1.` of a number)
        return exc.msg.startswith("Unterminated string") or not _STRUCTURE.search(text, exc.pos)
    except (ValueError, RecursionError):
        return False
    return False


def _plain(line: bytes, at: int) -> bool:
    """Whether the line from `at` is LoadGen's entry with a plain value and no error (_PLAIN_LINE), the sample-index
    list checked with C-speed byte operations (a regular expression over its 50 kB took most of a log's read)."""
    if b'"is_error": true' in line:
        return False
    if line.startswith(_INDEX_LIST, at):
        end = line.find(b"]", at)
        digits = line[at + len(_INDEX_LIST) : end]
        return end > 0 and not digits.translate(None, b"0123456789, ") and bool(_TAIL.fullmatch(line, end))
    return bool(_PLAIN_LINE.fullmatch(line, at))


def every_entry(blob: bytes, marker: bytes, kept: dict) -> tuple[list[str], list[str]]:
    """(problems, LoadGen's errors) of every marker line as the official reader takes it: a JSON object with a
    hashable `key` and a `metadata.is_error`; any true is_error is an error. Lines of `kept` keys are the kept
    values' to judge, a cut last line cut_short's, and lines without the marker are passed over."""
    problems, errors = [], []
    bare = marker.rstrip()
    lines = blob.splitlines()  # at \n, \r\n and \r, as the official reader's text mode splits
    last = max((i for i, line in enumerate(lines) if line.strip()), default=0)
    for number, line in enumerate(lines, 1):
        line = line.rstrip()
        if not line.startswith(bare):
            continue
        if _plain(line, len(marker)):
            continue
        try:
            entry = json.loads(line[len(bare) :])
            key = entry["key"]
            hash(key)
        except (ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
            named = _KEY_FIRST.match(line, len(marker))
            if (named and named.group(1).decode("utf-8", "replace") in kept) or (
                number == last + 1 and cut_short(line, len(line), marker)
            ):
                continue
            why = "is not valid JSON" if isinstance(exc, ValueError) else "is no LoadGen entry (an object with a key)"
            problems.append(f"line {number} {why}")
            continue
        metadata = entry.get("metadata")
        if not isinstance(metadata, dict) or "is_error" not in metadata:
            problems.append(f"line {number} ({str(key)[:60]}) has no metadata.is_error, which LoadGen always writes")
        elif metadata["is_error"]:
            errors.append(str(entry.get("value")))
    return problems, errors
