"""The suite's guard against hangs (pyproject.toml's pytest `timeout`, pytest-timeout): a test that never returns
fails with every thread's stack instead of holding CI until its 90-minute limit. On 2026-12-07 a fresh-clone CI
hung that way: a `subtool run` child sat in LoadGen's GetLatenciesBlocking after LoadGen's I/O thread had stopped
reading the main thread's log buffer (a LoadGen race; the SUT had answered), so the worker waited for ever."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_guard_is_on_for_the_suite_with_a_limit_far_above_its_longest_test(pytestconfig):
    assert pytestconfig.pluginmanager.hasplugin("timeout")
    assert float(pytestconfig.getini("timeout")) == 900  # the longest test takes about 70 s in CI
    assert pytestconfig.getini("timeout_method") == "thread"


def test_a_test_blocked_in_native_code_fails_at_the_limit_with_its_stack(tmp_path):
    # blocked in a futex wait with the GIL released, as LoadGen's GetLatenciesBlocking was: a default pthread mutex
    # locked twice by its owner waits for ever, and no signal ends that wait, so a signal-based timeout would wait
    # too (its handler runs only when the call returns); the thread method does not
    (tmp_path / "test_blocked.py").write_text(
        textwrap.dedent(
            """
            import ctypes
            import ctypes.util


            def test_blocked_in_libc():
                libc = ctypes.CDLL(ctypes.util.find_library("c"))
                mutex = ctypes.create_string_buffer(64)  # zeroed: PTHREAD_MUTEX_INITIALIZER (glibc)
                libc.pthread_mutex_lock(mutex)
                libc.pthread_mutex_lock(mutex)
            """
        )
    )
    cmd = [sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path)]
    cmd += ["-p", "no:cacheprovider", "-o", "timeout=2", str(tmp_path / "test_blocked.py")]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and time.monotonic() - start < 20, out
    assert "Timeout" in out and "test_blocked_in_libc" in out, out
