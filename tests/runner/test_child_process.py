"""runner/child_process.py: a signal that ends the command while the benchmark's child process is being started is
handled once the child is held, so the child is killed with the command instead of running on alone (it then
found its settings file gone and printed a traceback under "terminated (SIGHUP) in run: nothing half-written")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from subtool.runner import child_process
from subtool.runner.child_process import held_signals, run_child

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


class Ended(Exception):
    pass


@pytest.fixture
def sigterm_raises():
    def on_sigterm(signum, frame):
        raise Ended(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    yield
    signal.signal(signal.SIGTERM, previous)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead too (its parent has not reaped it yet)
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_signal_that_arrives_while_the_child_starts_kills_the_child_too(monkeypatch, sigterm_raises):
    started: list[subprocess.Popen] = []

    class SignalledWhileStarting(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)
            os.kill(os.getpid(), signal.SIGTERM)  # the command's SIGTERM, before Popen has returned the child

    monkeypatch.setattr(child_process.subprocess, "Popen", SignalledWhileStarting)
    with pytest.raises(Ended, match="SIGTERM"):
        run_child(SLEEPER)
    child = started[0]
    try:
        assert not _alive(child.pid), "the child ran on after the command that started it had stopped"
    finally:
        child.kill()
        child.wait()


def test_the_exit_code_is_the_childs_or_minus_the_signal_that_killed_it():
    assert run_child([sys.executable, "-c", "raise SystemExit(3)"]) == 3
    assert run_child([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]) == -9
    assert run_child([sys.executable, "-c", "import os, sys; sys.exit(os.environ['X'] == 'y')"], env={"X": "y"}) == 1


def test_held_signals_are_handled_when_released_and_the_handlers_come_back(sigterm_raises):
    handler, sigint = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    steps: list[str] = []
    with pytest.raises(Ended), held_signals() as release:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # twice: handled once, as cli_signals ignores a second SIGTERM anyway
        steps.append("held")
        release()
        steps.append("released")
    assert steps == ["held"]
    assert signal.getsignal(signal.SIGTERM) is handler
    assert signal.getsignal(signal.SIGINT) == sigint  # whatever it was: an earlier in-process command may ignore it


def test_outside_the_main_thread_nothing_is_held_and_the_child_runs():
    codes: list[int] = []
    worker = threading.Thread(target=lambda: codes.append(run_child([sys.executable, "-c", "pass"])))
    worker.start()
    worker.join(60)
    assert codes == [0]
