"""Every output option given a path that cannot be written ends in one line and exit 2 (1 would say "the checker
found errors"), before anything runs, creating nothing; a full disk or a cross-device rename while writing ends
the same way and leaves no temporary file or folder behind."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli_child import write_fault_script

# (what, argv with {P} for the output path, the path names a directory)
OUTPUTS = [
    ("pack --out", ["pack", "tree", "--out", "{P}"], True),
    ("check --csv", ["check", "tree", "--csv", "{P}"], False),
    ("check --report", ["check", "tree", "--report", "{P}"], False),
    ("system --out", ["system", "--out", "{P}"], False),
    ("score --out", ["score", "junk.tar.gz", "--out", "{P}"], True),
    ("score --metrics", ["score", "junk.tar.gz", "--out", "board", "--metrics", "{P}"], False),
    ("publish --cache", ["publish", "tree", "--fork", "file:///nonexistent", "--dry-run", "--cache", "{P}"], True),
    ("ci --summary", ["ci", "repo", "--base-ref", "HEAD", "--summary", "{P}"], False),
    ("package --out", ["package", "--from", "tree", "--submitter", "T", "--out", "{P}"], True),
    ("all --out", ["all", "--submitter", "T", "--out", "{P}"], True),
    ("run --out", ["run", "--out", "{P}"], True),
]


def subtool(*args, cwd, env=None):
    return subprocess.run(
        [sys.executable, "-m", "subtool.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture()
def work(tmp_path):
    (tmp_path / "tree/open/TeamX/results").mkdir(parents=True)
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    (tmp_path / "afile").write_text("a file\n")
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir/keep").write_text("x")
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "base"], check=True)
    return tmp_path


def _bad_paths(is_dir: bool) -> list[tuple[str, str]]:
    bad = [("below a file", "afile/out"), ("a name too long", "n" * 300 + "/x")]
    bad.append(("a file where a folder goes", "afile") if is_dir else ("a folder where a file goes", "adir"))
    return bad


@pytest.mark.parametrize("what,argv,is_dir", OUTPUTS, ids=[o[0] for o in OUTPUTS])
def test_an_unwritable_output_path_is_one_line_and_exit_2(work, what, argv, is_dir):
    before = listing(work)
    for why, path in _bad_paths(is_dir):
        proc = subtool(*[a.replace("{P}", path) for a in argv], cwd=work)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2, (what, why, proc.stderr)
        assert len(errors) == 1 and "[io." in errors[0], (what, why, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert listing(work) == before, (what, why)  # nothing made, not even an empty folder


@pytest.fixture()
def full_disk(tmp_path):
    """A 256 KiB tmpfs filled to the last byte (root only; skipped elsewhere: the injected tests cover it)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        with open(mnt / "filler", "wb", buffering=0) as fh, contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 4096)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "tree", "--csv", "{P}/sub/summary.csv"],
        ["check", "tree", "--report", "{P}/report.json"],
        ["system", "--out", "{P}/new/system.json"],
        ["score", "junk.tar.gz", "--out", "{P}/board"],
    ],
    ids=lambda a: " ".join(a[:1] + a[-2:-1]),
)
def test_a_full_disk_is_one_line_and_leaves_nothing(work, full_disk, argv):
    proc = subtool(*[a.replace("{P}", str(full_disk)) for a in argv], cwd=work)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "[io.enospc]" in errors[0], proc.stderr
    assert [p.name for p in full_disk.iterdir()] == ["filler"]  # no temporary file, no empty folder


INJECT = write_fault_script()  # ENOSPC at every fsync, EXDEV at every rename


@pytest.mark.parametrize("fault", ["ENOSPC", "EXDEV"])
@pytest.mark.parametrize(
    "argv",
    [
        ["check", "tree", "--csv", "out/sub/summary.csv", "--report", "out/r.json"],
        ["system", "--out", "out/new/system.json"],
        ["score", "junk.tar.gz", "--out", "out/board"],
    ],
    ids=lambda a: a[0],
)
def test_injected_write_faults_are_one_line_and_leave_nothing(work, fault, argv):
    before = listing(work)
    proc = subprocess.run(
        [sys.executable, "-c", INJECT, *argv],
        cwd=work,
        capture_output=True,
        text=True,
        env={**os.environ, "FAULT": fault},
        timeout=120,
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, proc.stderr
    assert len(errors) == 1 and f"[io.{fault.lower()}]" in errors[0] and "Traceback" not in proc.stderr
    assert listing(work) == before


def test_a_directory_in_place_of_the_written_file_is_one_line(tmp_path):
    """The writers themselves (not only the CLI's pre-flight) turn a write that cannot happen into one line."""
    from subtool.errors import SubtoolError
    from subtool.fsutil import atomic_write_text

    (tmp_path / "report.json").mkdir()
    with pytest.raises(SubtoolError) as info:
        atomic_write_text(tmp_path / "report.json", "{}")
    assert info.value.rule == "io.eisdir" and info.value.exit_code == 2
    assert isinstance(info.value, OSError) and info.value.errno == errno.EISDIR  # callers catching OSError still do
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
