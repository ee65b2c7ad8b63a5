"""Atomic writes and staged directories: an interruption leaves the old or the new version, never a mix."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from subtool.fsutil import atomic_write_text, staged_directory


def test_atomic_write_replaces_whole_file_and_reads_like_any_file(tmp_path):
    p = tmp_path / "a" / "f.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert oct(p.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert [x.name for x in p.parent.iterdir()] == ["f.txt"]


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_failed_staging_keeps_the_previous_directory(tmp_path):
    final = tmp_path / "result"
    with staged_directory(final) as d:
        (d / "x").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_directory(final) as d:
            (d / "x").write_text("new, half done")
            raise RuntimeError("boom")
    assert (final / "x").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]


def test_a_killed_process_leaves_nothing_that_the_next_run_keeps(tmp_path):
    final = tmp_path / "result"
    with staged_directory(final) as d:
        (d / "x").write_text("old")
    # a process that dies (SIGKILL) inside the staging block
    code = ("import os, signal, sys; from subtool.fsutil import staged_directory\n"
            "with staged_directory(sys.argv[1]) as d:\n"
            "    (d / 'x').write_text('half')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(final)])
    assert proc.returncode == -9
    assert len(list(tmp_path.iterdir())) == 2          # the abandoned staging dir is still there
    with staged_directory(final) as d:
        (d / "x").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]
    assert (final / "x").read_text() == "new"


def test_killed_between_the_two_renames_restores_the_previous_version(tmp_path):
    final = tmp_path / "result"
    with staged_directory(final) as d:
        (d / "x").write_text("old")
    # what a kill between "final → .old-PID" and "staging → final" leaves behind
    dead_pid = 2 ** 22 + 12345
    os.replace(final, tmp_path / f".result.old-{dead_pid}")
    with staged_directory(final) as d:
        assert (final / "x").read_text() == "old"   # restored before the new staging started
        (d / "x").write_text("new")
    assert (final / "x").read_text() == "new"
