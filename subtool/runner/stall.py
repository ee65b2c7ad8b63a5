"""What the stall watches share (loadgen_watch: a LoadGen that never returns; llm/tp_watch and tp_launch: a rank
that makes no progress): their bound in seconds from the environment, and how a watch thread ends the process."""

from __future__ import annotations

import os

from subtool.errors import SubtoolError, last_word
from subtool.fsutil import emergency_cleanup

__all__ = ["end_process_with", "seconds_from_env"]


def seconds_from_env(name: str, default: float) -> float:
    """`name`'s value in seconds, at least 1; unset, unreadable or NaN: `default`. Infinity is returned as given
    (no bound), for the caller to take or refuse."""
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return max(1.0, value) if value == value else default  # NaN: the default


def end_process_with(err: SubtoolError) -> None:
    """A watch thread's end of a process whose main thread is stuck where no exception reaches it: `err` said
    (errors.last_word: in `subtool run`'s benchmark process, the parent says it from its result file), what is in
    flight removed, and the process gone with err's exit code."""
    last_word(err)
    emergency_cleanup()
    os._exit(err.exit_code)
