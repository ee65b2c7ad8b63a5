"""A bound in seconds that a user may set through an environment variable (the stall watches' SUBTOOL_*_STALL_S)."""

from __future__ import annotations

import os

__all__ = ["seconds_from_env"]


def seconds_from_env(name: str, default: float) -> float:
    """`name`'s value in seconds, at least 1; unset, unreadable or NaN: `default`. Infinity is returned as given
    (no bound), for the caller to take or refuse."""
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return max(1.0, value) if value == value else default  # NaN: the default
