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
EXIT_BUG = 70  # an unexpected exception: a bug in subtool (sysexits' EX_SOFTWARE)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM, e.g. Slurm's time limit (128 + SIGTERM)


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
        where = f"{printable(str(self.path))}: " if self.path else ""
        rule = f" [{self.rule}]" if self.rule else ""
        return f"{where}{printable(self.message)}{rule}"

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.one_line()


def printable(text: str) -> str:
    """`text` with control characters (line breaks, escape sequences) and undecodable bytes written as escapes,
    so that a hostile file name can neither forge a second output line nor drive the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else ascii(ch)[1:-1] for ch in text)


def exception_line(exc: BaseException) -> str:
    """An exception no check foresaw, in one line: its type and the first line of its message (at most 200
    characters), as the one-line errors quote it."""
    detail = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}{': ' + detail if detail else ''}"


def safe_markup(text: object) -> str:
    """Text from files (folder and file names, messages quoting them) for a rich console line: markup escaped,
    and control characters written as escapes, so that a name can neither start a line of its own (a forged
    verdict, or a GitHub workflow command in CI) nor drive the terminal."""
    from rich.markup import escape

    return escape(printable(str(text)))


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP: the terminal closed, the ssh link dropped), raised in the main thread like Ctrl-C so
    that every cleanup path that handles Ctrl-C runs. `name` is the signal's."""

    def __init__(self, name: str = "SIGTERM") -> None:
        super().__init__(name)
        self.name = name


_INTERRUPTION_EXPLAINED = False


def interruption_explained(value: bool | None = None) -> bool:
    """A stage that caught Ctrl-C/SIGTERM and told the user what it means sets this, so the CLI adds no second
    line (typer turns the exception into an exit code, so the exception itself cannot carry it)."""
    global _INTERRUPTION_EXPLAINED
    if value is not None:
        _INTERRUPTION_EXPLAINED = value
    return _INTERRUPTION_EXPLAINED


_ERROR_TAKER: list = []  # how this process hands the error it ends on to another that says it (hand_errors_to)


def hand_errors_to(taker) -> None:
    """A process whose error lines another says (the benchmark child: its parent prints what its result file holds)
    registers `taker(err)` here, for `last_word`."""
    _ERROR_TAKER[:] = [taker]


def last_word(err: SubtoolError) -> None:
    """For a thread about to end the process with os._exit (its main thread stuck where no exception reaches it):
    `err` handed to whoever says this process's errors, or, when none does (or the hand-over fails), written to
    stderr the CLI's way. Said once either way."""
    import sys

    for taker in _ERROR_TAKER:
        try:
            taker(err)
            return
        except Exception:  # a full disk, say: the line still reaches the user, on stderr
            pass
    sys.stderr.write(f"error: {err.one_line()}\n" + (f"  hint: {err.hint}\n" if err.hint else ""))
    sys.stderr.flush()


class FileSystemError(SubtoolError, OSError):
    """A SubtoolError made from an OSError: still an OSError (errno kept) for callers that handle those."""

    def __init__(self, message: str, *, errno: int | None, **kwargs) -> None:
        SubtoolError.__init__(self, message, **kwargs)
        self.errno = errno


def os_error(exc: OSError, *, action: str = "cannot write", path: str | Path | None = None) -> SubtoolError:
    """An OSError (full disk, read-only file system, a name too long, a directory where a file belongs…) as
    the one-line error a user can act on: the path, what failed and why, rule `io.<errno name>`."""
    import errno as _errno

    name = _errno.errorcode.get(exc.errno or 0, "error").lower()
    where = path if path is not None else (exc.filename if exc.filename is not None else None)
    reason = exc.strerror or str(exc) or type(exc).__name__
    hints = {
        "enospc": "free space on that file system, or choose another output path",
        "edquot": "free space in your quota, or choose another output path",
        "enametoolong": "use a shorter name or a shorter output path",
        "erofs": "choose an output path on a writable file system",
        "eacces": "choose another output path or fix its permissions",
        "eperm": "choose another output path or fix its permissions",
        "exdev": "keep the output path on one file system",
        "eisdir": "give a file name, not a directory",
        "enotdir": "a part of the path is a file, not a directory",
    }
    if isinstance(exc, SubtoolError):
        return exc
    return FileSystemError(f"{action}: {reason}", errno=exc.errno, path=where, rule=f"io.{name}", hint=hints.get(name))
