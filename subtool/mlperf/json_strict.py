"""Strict JSON, and the `Problem` words every reader gives instead of raising.

Python's json takes NaN, Infinity and numbers no float can hold; a rule that compares them would pass or crash.
`parse_json` refuses them (and, when asked, an object that repeats a key) and returns why, never raising.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any


class Problem(str):
    """Why a file or a value cannot be used, in words (a str, so callers may simply print it)."""


class NonFinite(Problem):
    """The reason is a NaN or ±Infinity number: rules report these as value.not_finite."""


class Missing(Problem):
    """The file is not there."""


class Unreadable(Problem):
    """The file cannot be read as the plain file of bounded size it should be: a link, a folder, a FIFO or device,
    no permission, or over its size bound."""


class NotALog(Problem):
    """The file is empty or is not the LoadGen file it should be (a foreign first line, no heading)."""


class _NonFiniteNumber(Exception):
    pass


def _no_constant(name: str) -> Any:
    raise _NonFiniteNumber(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFiniteNumber(text)
    return value


_FLOAT_MAX = int(sys.float_info.max)


def _finite_int(text: str) -> int:
    if len(text.lstrip("-")) > 309:  # past any float, and int() would refuse it past Python's digit limit
        raise _NonFiniteNumber(text[:20] + "…")
    value = int(text)
    if abs(value) > _FLOAT_MAX:  # no rule could compare or divide it as a float
        raise _NonFiniteNumber(text[:20] + "…")
    return value


class RepeatedKey(Exception):
    """Raised by unique_pairs: one JSON object names a key twice (json.loads would keep the last)."""


def unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise RepeatedKey(key)
        out[key] = value
    return out


def parse_json(data: bytes | str, *, unique_keys: bool = False) -> tuple[Any, Problem | None]:
    """The checker's one JSON parser: (value, None), or (None, why) for any input; it never raises.

    Strict where Python's json is lenient: NaN, Infinity and numbers too large for a float (1e999, or an
    integer of 310 digits) are refused (JSON has no non-finite numbers); nesting too deep for the parser and
    integers too long to convert are reasons, not exceptions. `unique_keys`: an object that repeats a key is
    refused too (for files a person writes, where the last value silently winning hides a mistake; the checker
    reads submissions as the official checker does, last value winning).
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            return None, Problem("is not UTF-8 text")
    hook = unique_pairs if unique_keys else None
    try:
        value = json.loads(
            data, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_finite_int, object_pairs_hook=hook
        )
        return value, None
    except RepeatedKey as exc:
        return None, Problem(f"repeats the key {str(exc.args[0])[:60]!r} in one object (which value was meant?)")
    except _NonFiniteNumber as exc:
        return None, NonFinite(f"holds {str(exc)[:40]}, which is not a finite number (JSON has no NaN or Infinity)")
    except RecursionError:
        return None, Problem("is nested too deeply to read")
    except ValueError as exc:  # JSONDecodeError, and integers over Python's digit limit
        return None, Problem(f"is not valid JSON ({str(exc)[:120]})")
