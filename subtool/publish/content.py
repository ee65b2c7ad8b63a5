"""What a publish carries: the submitter directories of a tree, their files, and words that describe them.

The fork receives each `<division>/<submitter>/` at the same relative place. Files are written over what the
base branch has; a result directory (`results|measurements|compliance/<system>/<model>/<scenario>/`) that the
tree provides replaces the fork's copy as a whole, so no stale log from an earlier run stays mixed into a new
result. Nothing outside the submitter directories of the tree is ever touched.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from subtool import __version__
from subtool.checker.rules.inputs import refuse_link
from subtool.errors import EXIT_USAGE, SubtoolError
from subtool.publish.git import FileEntry

DIVISIONS = ("closed", "open", "network")
RESULT_ROOTS = ("results", "measurements", "compliance")
_SAFE_REF_PART = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class SubmitterDir:
    division: str
    submitter: str

    @property
    def rel(self) -> str:
        return f"{self.division}/{self.submitter}"


@dataclass
class PublishContent:
    tree: Path
    submitters: list[SubmitterDir]
    files: list[FileEntry]
    replace: list[str]
    systems: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    scenarios: dict[str, list[str]] = field(default_factory=dict)  # model → scenarios
    results: list[tuple[str, str, str, str, str]] = field(default_factory=list)  # division, submitter, system, …

    @property
    def submitter_names(self) -> list[str]:
        return sorted({s.submitter for s in self.submitters})

    @property
    def divisions(self) -> list[str]:
        return sorted({s.division for s in self.submitters})


def _subdirs(path: Path, links: bool = False) -> list[Path]:
    """Folders in `path` (hidden ones left out); with `links`, links are kept too, so that they are refused."""
    return sorted(
        p for p in path.iterdir() if (p.is_dir() or (links and p.is_symlink())) and not p.name.startswith(".")
    )


def find_submitters(tree: Path) -> list[SubmitterDir]:
    if not tree.is_dir():
        raise SubtoolError(
            "the submission tree does not exist or is not a directory",
            path=tree,
            rule="publish.tree",
            exit_code=EXIT_USAGE,
        )
    for div in DIVISIONS:
        if (tree / div).is_symlink():
            raise refuse_link(tree / div, tree, "publish")
    found = [
        SubmitterDir(div, sub.name)
        for div in DIVISIONS
        if (tree / div).is_dir()
        for sub in _subdirs(tree / div, links=True)
    ]
    if not found:
        raise SubtoolError(
            "no <division>/<submitter>/ directory to publish (expected closed/, open/ or network/)",
            path=tree,
            rule="publish.tree",
            exit_code=EXIT_USAGE,
            hint="give the tree root written by `subtool package --out`",
        )
    return found


def _walk_files(tree: Path, sub: SubmitterDir) -> list[FileEntry]:
    """Every file under the submitter folder. A link anywhere (to a file or a folder, inside or outside the
    tree, dangling or a loop) refuses the whole publish, before anything is fetched or pushed: the rule
    check and pack apply too (tree.symlink)."""
    entries: list[FileEntry] = []
    root = tree / sub.rel
    if root.is_symlink():
        raise refuse_link(root, tree, "publish")

    def unreadable(exc: OSError) -> None:
        raise SubtoolError(
            f"cannot be read ({exc.strerror or exc})",
            path=exc.filename or root,
            rule="publish.tree",
            exit_code=EXIT_USAGE,
            hint="make it readable or remove it",
        )

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in sorted(dirnames + filenames):
            if (Path(dirpath) / name).is_symlink():
                raise refuse_link(Path(dirpath) / name, tree, "publish")
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(tree).as_posix()
            if any(ch in rel for ch in "\n\r\t\0"):
                raise SubtoolError(
                    "file name contains a control character", path=path, rule="publish.tree", exit_code=EXIT_USAGE
                )
            if not path.is_file():
                raise SubtoolError(
                    "not a regular file (FIFO, socket or device)", path=path, rule="publish.tree", exit_code=EXIT_USAGE
                )
            entries.append(FileEntry(rel, path, os.access(path, os.X_OK)))
    return entries


def scan_tree(tree: Path) -> PublishContent:
    tree = Path(tree)
    submitters = find_submitters(tree)
    files: list[FileEntry] = []
    replace: list[str] = []
    systems: set[str] = set()
    scenarios: dict[str, set[str]] = {}
    results: list[tuple[str, str, str, str, str]] = []
    for sub in submitters:
        files.extend(_walk_files(tree, sub))
        for root_name in RESULT_ROOTS:
            root = tree / sub.rel / root_name
            if not root.is_dir():
                continue
            for system in _subdirs(root):
                for model in _subdirs(system):
                    for scenario in _subdirs(model):
                        replace.append(f"{sub.rel}/{root_name}/{system.name}/{model.name}/{scenario.name}")
                        if root_name == "results":
                            results.append((sub.division, sub.submitter, system.name, model.name, scenario.name))
                            systems.add(system.name)
                            scenarios.setdefault(model.name, set()).add(scenario.name)
    if not files:
        raise SubtoolError(
            "the submitter directories hold no files", path=tree, rule="publish.tree", exit_code=EXIT_USAGE
        )
    return PublishContent(
        tree=tree,
        submitters=submitters,
        files=sorted(files, key=lambda f: f.path),
        replace=sorted(replace),
        systems=sorted(systems),
        models=sorted(scenarios),
        scenarios={m: sorted(s) for m, s in scenarios.items()},
        results=sorted(results),
    )


def default_branch(content: PublishContent) -> str:
    names = [_SAFE_REF_PART.sub("-", n).strip("-.") or "submitter" for n in content.submitter_names]
    return "subtool/" + "-".join(names)


def _benchmarks(content: PublishContent) -> str:
    return ", ".join(f"{m} ({', '.join(content.scenarios[m])})" for m in content.models) or "no results"


def default_title(content: PublishContent) -> str:
    who = ", ".join(content.submitter_names)
    what = ", ".join(content.models) or "submission"
    return f"{who}: {what} results ({', '.join(content.divisions)})"


def commit_message(content: PublishContent, title: str | None) -> str:
    lines = [title or default_title(content), ""]
    lines.append(f"Submitters: {', '.join(s.rel for s in content.submitters)}")
    lines.append(f"Systems: {', '.join(content.systems) or 'none'}")
    lines.append(f"Benchmarks: {_benchmarks(content)}")
    lines.append(f"Files: {len(content.files)}")
    lines.append("")
    lines.append(f"Published with subtool {__version__}.")
    return "\n".join(lines) + "\n"


def pr_body(content: PublishContent) -> str:
    rows = ["| Division | Submitter | System | Benchmark | Scenario |", "|---|---|---|---|---|"]
    rows += [f"| {' | '.join(r)} |" for r in content.results] or ["| - | - | - | - | - |"]
    return "\n".join([*rows, "", f"{len(content.files)} files. Published with subtool {__version__}."]) + "\n"
