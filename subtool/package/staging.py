"""The all-or-nothing write: each `<division>/<submitter>` directory is rebuilt in a staging directory at the tree
root (a hard-linked copy of what is there, plus the new results) and swapped in with two renames. A failure or an
interruption leaves the previous tree as it was; the next run puts back what an interrupted one moved aside.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.fsutil import landed, mark_in_flight
from subtool.mlperf.layout import Layout
from subtool.package.truncate import commit, deferred_keeps, make_durable

STAGING_PREFIX = ".subtool-staging-"
ASIDE_PREFIX = ".subtool-old-"

# Builds the new `<division>/<submitter>` under a staging root; appends what it wrote outside the tree to the list.
StageGroup = Callable[[Path, str, list[Path]], None]


def check_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SubtoolError(
            f"cannot create the output directory: {exc.strerror or exc}",
            path=out,
            rule="package.out_unwritable",
            hint="choose another --out",
        ) from None
    if not out.is_dir() or not os.access(out, os.W_OK | os.X_OK):
        raise SubtoolError(
            "the output directory is not writable",
            path=out,
            rule="package.out_unwritable",
            hint="choose another --out or fix its permissions",
        )
    probe = out / f"{STAGING_PREFIX}probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise SubtoolError(
            f"the output directory is not writable: {exc.strerror or exc}",
            path=out,
            rule="package.out_unwritable",
            hint="choose another --out",
        ) from None


def recover(out: Path) -> None:
    """Undo what an interrupted earlier package left at the tree root (staging dirs, a moved-aside tree)."""
    for entry in sorted(out.glob(f"{ASIDE_PREFIX}*")):
        parts = entry.name[len(ASIDE_PREFIX) :].split("--")
        if len(parts) >= 2:
            final = out / parts[0] / parts[1]
            if not final.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(entry, final)
                continue
        shutil.rmtree(entry, ignore_errors=True)
    for entry in sorted(out.glob(f"{STAGING_PREFIX}*")):
        shutil.rmtree(entry, ignore_errors=True)


def linked_copy(src: Path, dst: Path) -> None:
    """Copy a tree by hard links (instant, no extra space); files are only ever replaced, never edited."""

    def link(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, symlinks=True, copy_function=link)


def write_text(path: Path, text: str) -> None:
    """Write inside staging. The file may be a hard link shared with the live tree: unlink it first, so that the
    live tree never sees the change before the swap. No fsync here; the staging tree is synced once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    path.write_text(text, encoding="utf-8")


def remove_empty_dirs(root: Path) -> None:
    """The checker rejects empty directories; drop the ones a result without (say) compliance runs left."""
    if not root.is_dir():
        return
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()


def swap_in(new: Path, final: Path, out: Path) -> None:
    """Two renames; `recover` puts the old tree back if we are killed between them."""
    division, submitter = final.parent.name, final.name
    final.parent.mkdir(parents=True, exist_ok=True)
    aside = out / f"{ASIDE_PREFIX}{division}--{submitter}--{os.getpid()}"
    if final.exists():
        os.replace(final, aside)
    os.replace(new, final)
    if aside.exists():
        shutil.rmtree(aside, ignore_errors=True)


def write_staged(out: Path, layout: Layout, submitter: str, divisions: list[str], stage_group: StageGroup) -> None:
    """Stage every division's submitter directory, sync everything written once, then swap each in."""
    check_out_dir(out)
    recover(out)
    with deferred_keeps() as full_logs:  # the kept full logs move into place only with their tree
        _stage_and_swap(out, layout, submitter, divisions, stage_group)
        commit(full_logs)


def _stage_and_swap(out: Path, layout: Layout, submitter: str, divisions: list[str], stage_group: StageGroup) -> None:
    staged: list[tuple[Path, Path]] = []  # (staging root, final submitter dir)
    durable: list[Path] = []  # everything written, synced once before anything is published
    try:
        for division in divisions:
            final = out / layout.submitter_dir(division, submitter)
            staging = out / f"{STAGING_PREFIX}{division}--{submitter}--{os.getpid()}"
            staged.append((staging, final))
            mark_in_flight(staging)  # the signal watchdog's os._exit removes it too
            inner = staging / layout.submitter_dir(division, submitter)
            if final.exists():
                linked_copy(final, inner)
            else:
                inner.mkdir(parents=True)
            stage_group(staging, division, durable)
            durable += [p for p in staging.rglob("*") if p.is_file() and p.stat().st_nlink == 1]
        make_durable(durable)
        for staging, final in staged:
            swap_in(staging / final.relative_to(out), final, out)
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        for staging, _ in staged:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        for staging, _ in staged:
            landed(staging)
