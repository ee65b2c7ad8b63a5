"""The one exception type that stages raise for bad input.

The CLI turns it into a single line `error: <path>: <message> [<rule>]` plus an optional hint, and the exit
code it carries. Stages never print tracebacks for problems a user can fix.
"""

from __future__ import annotations

from pathlib import Path


# Exit codes shared by every subcommand (see README "Exit codes").
EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_REMOTE = 3


class SubtoolError(Exception):
    """A problem the user can fix: names the file and the rule that was broken."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        rule: str | None = None,
        hint: str | None = None,
        exit_code: int = EXIT_USAGE,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.rule = rule
        self.hint = hint
        self.exit_code = exit_code

    def one_line(self) -> str:
        where = f"{self.path}: " if self.path else ""
        rule = f" [{self.rule}]" if self.rule else ""
        return f"{where}{self.message}{rule}"

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.one_line()
