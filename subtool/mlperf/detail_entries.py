"""The shape of a detail-log entry's line beyond its key and value: LoadGen writes each as one JSON object naming
each field once, in one order. logs.py's pattern matches that rest as LoadGen writes it (LOADGEN_TAIL_BODY); a
kept line that differs is parsed here to say what is wrong with it (a second "value", which json.loads would
take over the first; garbage), or to accept it as JSON written another way."""

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
