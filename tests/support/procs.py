"""A process's children, command line and liveness, read from Linux /proc: the direct children through
/proc/PID/task/TID/children (a few small reads, where scanning all of /proc took milliseconds a pass: long enough
under CI's load to miss a worker that lives for tens of them)."""

from __future__ import annotations

import os

__all__ = ["alive", "children", "cmdline"]


def children(pid: int, marker: bytes = b"") -> list[int]:
    """The live children of `pid` whose command line holds `marker`; none when `pid` is gone."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found += [int(c) for c in fh.read().split()]
        except OSError:  # the thread ended meanwhile
            continue
    return [c for c in found if marker in cmdline(c) and alive(c)]


def cmdline(pid: int) -> bytes:
    """`pid`'s command line, NUL-separated; empty once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    """Whether `pid` runs: a zombie (ended, not yet reaped) does not."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
