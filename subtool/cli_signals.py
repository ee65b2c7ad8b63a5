"""How a `subtool` command ends: SIGTERM and SIGHUP handled like Ctrl-C (with a watchdog for a main thread stuck in
native code), and every exception that escapes a command turned into one line and a distinct exit code."""

from __future__ import annotations

import contextlib
import sys

from subtool.cli_common import _console
from subtool.errors import SubtoolError, exception_line

_TERMINATED = False
_TERMINATED_BY = "SIGTERM"
SIGNAL_GRACE_S = 5.0  # after SIGTERM/Ctrl-C, how long the main thread gets to unwind before the watchdog exits


def terminated() -> bool:
    """A SIGTERM or SIGHUP arrived (the exit code is then 143, whatever the command returned)."""
    return _TERMINATED


def terminated_by() -> str:
    """The signal that ended the command (SIGTERM or SIGHUP), for the line that says so."""
    return _TERMINATED_BY


def _on_sigterm(signum, frame) -> None:
    """SIGTERM (Slurm's time limit, `kill`) is handled like Ctrl-C: the same clean-up paths run."""
    import signal

    from subtool.errors import Terminated

    global _TERMINATED, _TERMINATED_BY
    if _TERMINATED:
        return  # a second SIGTERM must not interrupt the clean-up of the first
    _TERMINATED, _TERMINATED_BY = True, signal.Signals(signum).name
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Terminated(_TERMINATED_BY)


def _install_signal_handlers() -> None:
    """SIGTERM raises in the main thread like Ctrl-C. Python runs signal handlers only when the main thread runs
    Python code, and it may be waiting inside LoadGen's native code for minutes; so the C-level handler also
    writes the signal to a pipe that a watchdog thread reads: if the process is still alive SIGNAL_GRACE_S
    later, the watchdog removes what is in flight, records the stage as interrupted and exits (143 or 130)."""
    import os
    import signal
    import threading

    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGHUP, _on_sigterm)  # a closed terminal or a dropped ssh link: cleaned up the same way
    try:
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    except (OSError, ValueError):
        return
    threading.Thread(target=_watchdog, args=(read_end,), name="subtool-signal-watchdog", daemon=True).start()
    _end_with_starter()


STARTER_ENV = "SUBTOOL_CLI_PARENT"  # the pid of a process that starts this command and means to stop it (MCP)


def _end_with_starter() -> None:
    """Linux: a command started with STARTER_ENV gets SIGTERM (its clean-up, exit 143) when that process dies.
    The MCP server stops its command when a call is cancelled; killed itself, it could not, and the command ran on
    (a benchmark: minutes to hours of GPU time) until it next wrote to the server's closed pipe."""
    import ctypes
    import os
    import signal

    starter = os.environ.pop(STARTER_ENV, "")  # for this process only: its children have their own ways
    if not starter.isdigit() or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(starter):  # it died before the call
        os.kill(os.getpid(), signal.SIGTERM)


def _watchdog(read_end: int) -> None:
    import os
    import signal
    import time

    from subtool.errors import EXIT_INTERRUPTED, EXIT_TERMINATED
    from subtool.fsutil import emergency_cleanup

    while True:
        data = os.read(read_end, 64)
        if not data:
            return
        got = {b for b in data if b in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
        if got:
            break
    time.sleep(SIGNAL_GRACE_S)
    code = EXIT_TERMINATED if got & {signal.SIGTERM, signal.SIGHUP} else EXIT_INTERRUPTED
    _kill_children()  # e.g. the LoadGen session process, which would keep writing
    emergency_cleanup()
    with contextlib.suppress(Exception):
        what = f"terminated ({terminated_by()})" if code == EXIT_TERMINATED else "interrupted"
        sys.stderr.write(
            f"{what} while subtool was still working: what it was writing is removed; run the same "
            "command again (a run resumes where it stopped)\n"
        )
        sys.stderr.flush()
    os._exit(code)


def _print_line(text: str, hint: str | None = None, rule: str | None = None, path: object = None) -> None:
    from rich.markup import escape

    from subtool.cli_common import record_error

    record_error(text, hint, rule, path)
    console = _console()
    console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)
    if hint:
        console.print(f"  hint: {escape(hint)}", highlight=False, soft_wrap=True)


def _command_name() -> str:
    words = [a for a in sys.argv[1:] if not a.startswith("-")]
    return words[0] if words else "subtool"


def _exit_for(exc: BaseException) -> int:
    """The one line (and exit code) for an exception that escaped a command."""
    import os
    import traceback

    from subtool.errors import EXIT_BUG, EXIT_REMOTE, os_error

    if isinstance(exc, SubtoolError):
        _print_line(exc.one_line(), exc.hint, exc.rule, exc.path)
        return exc.exit_code
    if isinstance(exc, (ConnectionError, TimeoutError)):
        _print_line(
            f"network failure: {exc} [remote.network]",
            "check the network and run the same command again",
            "remote.network",
        )
        return EXIT_REMOTE
    if isinstance(exc, OSError):
        err = os_error(exc, action="cannot read or write")
        _print_line(err.one_line(), err.hint, err.rule, err.path)
        return err.exit_code
    if os.environ.get("SUBTOOL_DEBUG"):
        traceback.print_exception(exc)
    _print_line(
        f"`subtool {_command_name()}` failed unexpectedly ({exception_line(exc)}): this is a bug in subtool [internal]",
        None
        if os.environ.get("SUBTOOL_DEBUG")
        else "run it again with SUBTOOL_DEBUG=1 for the traceback, and report it",
        "internal",
    )
    return EXIT_BUG


def _kill_children() -> None:
    """SIGKILL this process's children (Linux /proc); nothing elsewhere."""
    import os
    import signal

    me = str(os.getpid())
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError):
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    ppid = fh.read().rsplit(b")", 1)[1].split()[1].decode()
                if ppid == me:
                    os.kill(int(entry), signal.SIGKILL)


def _is_usage_error(exc: BaseException) -> bool:
    """click's ClickException (typer vendors its own click, so matched by name): a bad command line."""
    return any(cls.__name__ == "ClickException" for cls in type(exc).__mro__)


def _usage_error(exc) -> int:
    """A bad command line (unknown option, missing argument, a value of the wrong type): one line, not typer's
    box; with no command at all, the help."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        exc.show()
        return exc.exit_code
    ctx = getattr(exc, "ctx", None)
    where = f"subtool {ctx.info_name}" if ctx is not None and ctx.parent is not None else "subtool"
    _print_line(f"{exc.format_message()} [cli.usage]", f"`{where} --help` lists every option", "cli.usage")
    return exc.exit_code
