"""The benchmark's child process, started so that a signal can never leave it running on its own.

SIGTERM, SIGHUP and Ctrl-C end a subtool command by raising in its main thread (cli_signals). One that arrived
while `subprocess` was still starting the child raised inside Popen's constructor, before any code held the child:
the command cleaned up and exited while the child ran on, found its settings file gone and printed a traceback
under the line that said the run had stopped cleanly. Here those signals are held while the child starts and
handled right after, where the child is held (and killed, as subprocess.run kills it on any exception).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

ENDING_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # what ends a command (cli_signals) and so must not end a start


def run_child(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Run `argv` to its end and return its exit code (negative: the signal that killed it). Any exception in
    this process while it runs, a signal's among them, kills the child before it propagates."""
    with held_signals() as release:
        proc = subprocess.Popen(list(argv), env=None if env is None else dict(env))
        with proc:
            try:
                release()  # a signal held while the child started is handled here, where the child is held
                proc.communicate()  # as subprocess.run waits: Ctrl-C gives the child a moment to end by itself
            except BaseException:
                proc.kill()
                raise
    return proc.returncode


@contextlib.contextmanager
def held_signals() -> Iterator[Callable[[], None]]:
    """Within the block, ENDING_SIGNALS are noted instead of handled; the function it yields (called at the
    latest when the block ends) puts the handlers back and sends each noted signal again, so that its own handler
    runs then. Outside the main thread (where Python handles no signals) nothing is held."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    signums = [getattr(signal, name) for name in ENDING_SIGNALS if hasattr(signal, name)]
    previous = {s: signal.getsignal(s) for s in signums}
    noted: list[int] = []
    for s in signums:
        signal.signal(s, lambda signum, frame: noted.append(signum))
    released = False

    def release() -> None:
        nonlocal released
        if released:
            return
        released = True
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        for s in dict.fromkeys(noted):
            os.kill(os.getpid(), s)  # its handler runs at once, in the caller's frame

    try:
        yield release
    finally:
        release()
