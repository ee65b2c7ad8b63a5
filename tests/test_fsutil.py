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
    code = (
        "import os, signal, sys; from subtool.fsutil import staged_directory\n"
        "with staged_directory(sys.argv[1]) as d:\n"
        "    (d / 'x').write_text('half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(final)])
    assert proc.returncode == -9
    assert len(list(tmp_path.iterdir())) == 2  # the abandoned staging dir is still there
    with staged_directory(final) as d:
        (d / "x").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]
    assert (final / "x").read_text() == "new"


def test_killed_between_the_two_renames_restores_the_previous_version(tmp_path):
    final = tmp_path / "result"
    with staged_directory(final) as d:
        (d / "x").write_text("old")
    # what a kill between "final → .old-PID" and "staging → final" leaves behind
    dead_pid = 2**22 + 12345
    os.replace(final, tmp_path / f".result.old-{dead_pid}")
    with staged_directory(final) as d:
        assert (final / "x").read_text() == "old"  # restored before the new staging started
        (d / "x").write_text("new")
    assert (final / "x").read_text() == "new"


def test_undo_on_error_removes_only_what_the_block_made(tmp_path):
    from subtool.fsutil import undo_on_error

    existing = tmp_path / "logs"
    (existing / "old").mkdir(parents=True)
    (existing / "old" / "kept.json").write_text("from an earlier run")
    new_root = tmp_path / "new" / "tree"
    with pytest.raises(RuntimeError):
        with undo_on_error(new_root, existing) as written:
            (new_root / "open").mkdir(parents=True)
            (existing / "old" / "kept.json").write_text("rewritten in place")  # listed, but was there before
            (existing / "fresh" / "deep").mkdir(parents=True)
            (existing / "fresh" / "deep" / "copy.json").write_text("half")
            written += [existing / "old" / "kept.json", existing / "fresh" / "deep" / "copy.json"]
            raise RuntimeError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]  # the new root and its parent: gone
    assert sorted(str(p.relative_to(existing)) for p in existing.rglob("*")) == ["old", "old/kept.json"]


def test_undo_on_error_turns_an_oserror_into_one_line(tmp_path):
    import errno

    from subtool.errors import SubtoolError
    from subtool.fsutil import undo_on_error

    with pytest.raises(SubtoolError) as info:
        with undo_on_error(tmp_path / "tree"):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
    assert info.value.rule == "io.exdev" and info.value.exit_code == 2 and str(tmp_path / "tree") in str(info.value)


def test_remove_leftovers_keeps_a_live_writers_files(tmp_path):
    from subtool.fsutil import remove_leftovers

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        gone = [
            tmp_path / f".a.json.{dead.pid}.tmp",
            tmp_path / "sub" / f".pack.{dead.pid}.abc_def1.staging",
            tmp_path / "sub" / "deep" / f".state.json.{dead.pid}.k2m_9x0a.tmp",
            tmp_path / f".subtool-staging-open--TeamX--{dead.pid}",
        ]
        kept = [
            tmp_path / f".b.json.{child.pid}.tmp",  # its writer is alive
            tmp_path / "visible.tmp",
            tmp_path / "sub" / ".git" / f".c.{dead.pid}.tmp",
            tmp_path / "notes" / f".d.{dead.pid}.tmp",  # not below a folder subtool writes
        ]
        for p in gone + kept:
            p.parent.mkdir(parents=True, exist_ok=True)
            (p.mkdir() if p.name.endswith(".staging") or "staging-" in p.name else p.write_text("x"))
        assert sorted(remove_leftovers(tmp_path, within=[tmp_path / "sub"])) == sorted(gone)
        assert all(p.exists() for p in kept) and not any(p.exists() for p in gone)
    finally:
        child.kill()
        child.wait()


def test_remove_leftovers_never_takes_a_users_own_hidden_files(tmp_path):
    """`all --out .` in a user's folder removed their `.draft.tmp` and `.thesis.staging/` with all it held."""
    from subtool.fsutil import remove_leftovers

    mine = [tmp_path / "src" / ".draft.tmp", tmp_path / "docs" / ".thesis.staging" / "ch1.tex", tmp_path / ".x.tmp"]
    for p in mine:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("important\n")
    assert remove_leftovers(tmp_path, within=[tmp_path / "src", tmp_path / "docs"]) == []
    assert all(p.read_text() == "important\n" for p in mine)


def test_exclusive_refuses_a_second_holder_with_its_pid(tmp_path):
    from subtool.errors import SubtoolError
    from subtool.fsutil import exclusive

    code = (
        "import sys, time; from subtool.fsutil import exclusive\n"
        "with exclusive(sys.argv[1]):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SubtoolError) as info:
            with exclusive(tmp_path):
                pass
        assert info.value.rule == "out.locked" and f"pid {holder.pid}" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    with exclusive(tmp_path) as lock:  # the kernel dropped the killed holder's lock
        assert lock.read_text().strip() == str(os.getpid())


def test_exclusive_tidy_removes_its_lock_and_a_waiter_takes_the_new_file(tmp_path):
    import threading

    from subtool.fsutil import exclusive

    where = tmp_path / "a" / "b"
    waited, inside = threading.Event(), []

    def second():
        with exclusive(where, wait=True, on_wait=lambda pid: waited.set()) as lock:
            inside.append(lock.exists() and lock.read_text().strip() == str(os.getpid()))

    with exclusive(where, tidy=True):
        t = threading.Thread(target=second)
        t.start()
        assert waited.wait(10)  # its descriptor is open on the file this holder is about to unlink
    t.join(10)
    assert inside == [True]  # it locked the file that exists, not the unlinked one
    assert (where / ".subtool.lock").exists()  # the second holder was not tidy
    with exclusive(where, tidy=True):
        pass
    assert not where.exists() and (tmp_path / "a").is_dir()  # the lock and its folder went; "a" was there before
