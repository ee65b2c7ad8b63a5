"""The counts of a system description that no real system has: the bounds subtool holds them to.

The official checker asks only that number_of_nodes and accelerators_per_node be truthy and that int() take them
(the summary multiplies them): 10^300 accelerators per node, -3 nodes or "0" nodes pass it. `subtool system` (and
`package`, which validates with it) refuses such a value, since it describes no machine; `subtool check` keeps the
official verdict and adds a warning (`system.count_implausible`). The bounds are generous on purpose: the largest
machine ever built (Fugaku) has 158,976 nodes; the most accelerators one MLPerf "node" has held is a rack
(GB200 NVL72: 72); CPUs reach a few hundred cores and servers 32 sockets.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

RULE = "system.count_implausible"


@dataclass(frozen=True)
class CountBound:
    field: str
    least: int
    most: int
    unit: str  # what one of the count is, for the message


COUNT_BOUNDS = (
    CountBound("number_of_nodes", 1, 1_000_000, "nodes"),
    CountBound("accelerators_per_node", 0, 10_000, "accelerators in one node"),
    CountBound("host_processors_per_node", 1, 1_024, "CPU sockets in one node"),
    CountBound("host_processor_core_count", 1, 100_000, "cores in one CPU"),
    CountBound("host_network_card_count", 0, 10_000, "network cards in one node"),
)
BOUNDS_BY_FIELD = {b.field: b for b in COUNT_BOUNDS}
_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")


def _number(value: object) -> int | float | None:
    """The number a count field holds (a JSON number, or text of digits), None when it holds none (text that is no
    whole number, a list, NaN or infinity: other rules say what is wrong with those)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        sign, digits = -1 if "-" in value else 1, _digits(value)
        return sign * (int(digits) if len(digits) <= _LONGEST else _HUGE)  # int() takes at most 4300 digits of text
    return None


_LONGEST = 24  # digits of a count shown as it is; a longer one is said by its length, past every bound
_HUGE = 10 ** (_LONGEST + 1)  # what a count of more digits than int() may read stands for: its size is all that matters


def _digits(text: str) -> str:
    """The significant digits of a count written as text ("-0042" → "42")."""
    return text.strip().lstrip("+-").lstrip("0") or "0"


def count_problem(field: str, value: object) -> str | None:
    """Why `value` in count field `field` is no real system's (a phrase: "is 10^300, more than …"), or None."""
    bound = BOUNDS_BY_FIELD.get(field)
    number = _number(value) if bound is not None else None
    if number is None:
        return None
    too_long = isinstance(value, str) and abs(number) == _HUGE  # text int() cannot read (a JSON 10^25 is a number)
    shown = f"a {len(_digits(value))}-digit number" if too_long else _shown(number)
    if number != int(number):
        return f"is {shown}, not a whole number of {bound.unit}"
    if number < bound.least:
        return f"is {shown}, fewer {bound.unit} than any real system has (at least {bound.least})"
    if number > bound.most:
        return f"is {shown}, more {bound.unit} than any real system has (at most {bound.most:,})"
    return None


def _shown(number: int | float) -> str:
    text = repr(number)
    if len(text) <= 24:
        return text
    return f"a {len(str(abs(int(number))))}-digit number" if isinstance(number, int) else f"{number:.3g}"


def allowed(field: str) -> str:
    """The allowed range of a count field, for a refusal's "allowed values"."""
    bound = BOUNDS_BY_FIELD[field]
    if bound.least == 0:  # the number 0 is empty to the official checker
        return f'a whole number from 1 to {bound.most:,}, or "0" as a string'
    return f"a whole number from {bound.least} to {bound.most:,}"
