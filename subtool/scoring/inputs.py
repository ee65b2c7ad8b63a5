"""What `subtool score INPUTS...` names: tarballs, folders of them, or already-extracted submission trees.

Each found thing becomes one InputJob: the file or folder, how it is shown in the outputs (relative to the
INPUT it was found under, so leaderboards carry no machine paths), and the companion files handed in beside a
tarball (`<name>_summary.json`, `.tstamps`, `.run`, `.md`, `.sha256`).

Nothing found is dropped without a word: a folder that holds both a tarball and division folders (a team's
tarball with its extraction beside it) is scored by its tarball, and the tree is listed as skipped; an archive
of another kind (.zip, .tar.xz, …) is listed as skipped; folders are searched at any depth (up to
MAX_SCAN_FOLDERS folders in all) and a suffix is matched whatever its case.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.mlperf.layout import DIVISIONS

TARBALL_SUFFIXES = (".tar.gz", ".tgz")
OTHER_ARCHIVES = (".tar", ".zip", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar.zst", ".7z", ".rar", ".gz")
COMPANIONS = {
    "summary_json": "{}_summary.json",
    "tstamps": "{}.tstamps",
    "run": "{}.run",
    "md": "{}.md",
    "manifest": "{}.sha256",
    "summary_csv": "{}_summary.csv",
}
# What a team must hand in beside the tarball (the .sha256 and the CSV are subtool's extras).
REQUIRED_COMPANIONS = ("summary_json", "tstamps", "run", "md")
MAX_SCAN_FOLDERS = 100_000


@dataclass(frozen=True)
class InputJob:
    index: int
    kind: str  # "tarball" | "tree"
    path: str  # absolute path of the tarball or tree root
    display: str  # how outputs name it
    name: str  # artifact base name (tarball) or folder name (tree)
    companions: dict = field(default_factory=dict)  # kind → absolute path of the files that exist
    linked: tuple = ()  # companions handed in as symbolic links (names), never read


@dataclass(frozen=True)
class Skipped:
    path: str  # as the outputs show it
    why: str


def is_tree(path: Path) -> bool:
    return any((path / d).is_dir() and not (path / d).is_symlink() for d in DIVISIONS)


def is_tarball_name(name: str) -> bool:
    return name.lower().endswith(TARBALL_SUFFIXES)


def tarball_stem(path: Path) -> str:
    for suffix in TARBALL_SUFFIXES:
        if path.name.lower().endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def _tarballs_in(folder: Path) -> list[Path]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    paths = [folder / n for n in names if is_tarball_name(n)]
    return [p for p in paths if p.is_file() and not p.is_symlink()]


def companions_of(folder: Path, stem: str) -> dict[str, str]:
    """kind → path of each companion beside the tarball that is a regular file (a link is never followed)."""
    found = {}
    for kind, pattern in COMPANIONS.items():
        candidate = folder / pattern.format(stem)
        if candidate.is_file() and not candidate.is_symlink():
            found[kind] = str(candidate)
    return found


def linked_companions(folder: Path, stem: str) -> list[str]:
    """The names of companions beside the tarball that are symbolic links (not read: they could point anywhere)."""
    return [pattern.format(stem) for pattern in COMPANIONS.values() if (folder / pattern.format(stem)).is_symlink()]


def _tree_companions(tree: Path) -> dict[str, str]:
    """Companions kept inside an extracted tree's top folder, when there is exactly one of each."""
    found = {}
    try:
        names = sorted(os.listdir(tree))
    except OSError:
        return found
    for kind, pattern in COMPANIONS.items():
        prefix, suffix = pattern.split("{}")
        matches = [
            n
            for n in names
            if n.endswith(suffix)
            and n.startswith(prefix)
            and (tree / n).is_file()
            and not (tree / n).is_symlink()
            and (kind != "md" or n != "README.md")
        ]
        if kind == "md":
            matches = [n for n in matches if Path(n).stem + "_summary.json" in names]
        if len(matches) == 1:
            found[kind] = str(tree / matches[0])
    return found


def _scan(folder: Path, out_dir: Path | None) -> tuple[list[tuple[str, Path]], list[tuple[Path, str]]]:
    """Tarballs and trees below `folder` (links not followed, the output folder skipped), sorted by path, and
    what was seen and not scored, with why."""
    found: list[tuple[str, Path]] = []
    skipped: list[tuple[Path, str]] = []
    visited = 0
    for current, dirs, files in os.walk(folder, followlinks=False):
        visited += 1
        if visited > MAX_SCAN_FOLDERS:
            raise SubtoolError(
                f"holds more than {MAX_SCAN_FOLDERS:,} folders: not a folder of hand-ins",
                path=folder,
                rule="score.input",
                hint="pass the folder that holds the teams' hand-ins",
            )
        here = Path(current)
        if is_tree(here):  # reached only when it holds a tarball: that is the hand-in, not its extraction
            skipped.append((here, "division folders beside a tarball: the tarball is scored, not this tree"))
            dirs[:] = [d for d in dirs if d not in DIVISIONS]
        keep = []
        for d in sorted(dirs):
            sub = here / d
            if out_dir is not None and os.path.realpath(sub) == os.path.realpath(out_dir):
                continue
            if d.startswith(".") or sub.is_symlink():
                continue
            if is_tree(sub) and not _tarballs_in(sub):
                found.append(("tree", sub))
            else:
                keep.append(d)
        dirs[:] = keep
        for f in sorted(files):
            p = here / f
            if is_tarball_name(f) and not p.is_symlink() and p.is_file():
                found.append(("tarball", p))
            elif f.lower().endswith(OTHER_ARCHIVES):
                skipped.append((p, "an archive of another kind: only .tar.gz and .tgz hand-ins are scored"))
    return sorted(found, key=lambda item: str(item[1])), skipped


def discover(inputs: list[Path], out_dir: Path | None = None) -> tuple[list[InputJob], list[Skipped]]:
    """The inputs to score, and what was seen among them and not scored (with why)."""
    jobs: list[InputJob] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()

    def shown(path: Path, base: Path) -> str:
        try:
            return path.relative_to(base).as_posix()
        except ValueError:
            return path.name

    def add(kind: str, path: Path, base: Path) -> None:
        real = os.path.realpath(path)
        if real in seen:
            return
        seen.add(real)
        display = shown(path, base)
        if kind == "tarball":
            stem = tarball_stem(path)
            companions, linked = companions_of(path.parent, stem), tuple(linked_companions(path.parent, stem))
        else:
            stem = path.name
            companions, linked = _tree_companions(path), ()
        job = InputJob(len(jobs), kind, str(Path(real)), display, stem, companions=companions, linked=linked)
        jobs.append(job)

    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise SubtoolError(
                "no such file or folder",
                path=path,
                rule="score.input",
                hint="pass tarballs, folders of tarballs, or extracted submission trees",
            )
        base = path.absolute().parent
        if path.is_file():
            add("tarball", path.absolute(), base)
        elif is_tree(path) and not _tarballs_in(path):
            add("tree", path.absolute(), base)
        elif path.is_dir():
            found, passed_over = _scan(path.absolute(), out_dir)
            if not found:
                raise SubtoolError(
                    "no .tar.gz / .tgz and no submission tree (closed/, open/) in this folder",
                    path=path,
                    rule="score.input",
                    hint="pass the folder that holds the teams' hand-ins",
                )
            for kind, item in found:
                add(kind, item, base)
            skipped += [Skipped(shown(p, base), why) for p, why in passed_over]
        else:
            raise SubtoolError("not a file or folder", path=path, rule="score.input")
    if not jobs:
        raise SubtoolError("nothing to score", rule="score.input", hint="pass at least one tarball or folder")
    return jobs, skipped
