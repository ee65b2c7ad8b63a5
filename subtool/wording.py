"""Words and numbers in messages as a person reads them: "an Offline run", "7350880", never "a Offline" or
"7.35088e+06"."""

from __future__ import annotations

import math


def with_article(word: str) -> str:
    """ "an Offline", "a Server", "an 'Offline'": the article English wants before a name (quotes are skipped)."""
    first = word.lstrip("'\"")[:1]
    return f"{'an' if first.upper() in ('A', 'E', 'I', 'O', 'U') and first else 'a'} {word}"


def plain_number(value: object, digits: int = 6) -> str:
    """A number without an exponent: whole values as integers (7350880, not 7.35088e+06 or 7350880.0), others to
    `digits` significant digits, but with their whole part and one decimal at least (0.000123457, 89.9653,
    7350879.6). Anything that is not a finite number as str() writes it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    whole_digits = len(str(int(abs(value))))
    if abs(value) >= 1:
        text = f"{value:.{max(1, digits - whole_digits)}f}"
    else:
        from decimal import Decimal  # (only here: `subtool check` starts without it)

        text = format(Decimal(f"{value:.{digits}g}"), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """ "1 input", "3 inputs", "0 inputs": a count with its noun in the number English wants."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
