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
from subtool.errors import EXIT_USAGE, SubtoolError
from subtool.md_table import markdown_table
from subtool.mlperf.layout import (
    DIR,
    DIVISIONS,
    LINK,
    OTHER,
    Entry,
    check_name,
    listing,
    refusal,
    subdirs,
    walk,
)
from subtool.publish.git import FileEntry

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


def _subdirs(path: Path) -> list[Path]:
    """The real folders in `path` (links are refused by the walk)."""
    return [path / name for name in subdirs(path)]


def _check_names(tree: Path, sub: SubmitterDir) -> None:
    """The names of the submitter folder and of the system, benchmark and scenario folders below it: the alphabet
    of every command (tree.bad_name). They go into the branch, the commit message and the pull request's table,
    where a line break would forge a trailer and a '|' or '[…](…)' would forge a cell or a link."""
    check_name(sub.submitter, "submitter folder", path=tree / sub.rel)
    for root_name in RESULT_ROOTS:
        root = tree / sub.rel / root_name
        for system in subdirs(root):
            check_name(system, "system folder", path=root / system)
            for model in subdirs(root / system):
                check_name(model, "benchmark folder", path=root / system / model)
                for scenario in subdirs(root / system / model):
                    check_name(scenario, "scenario folder", path=root / system / model / scenario)


def find_submitters(tree: Path) -> list[SubmitterDir]:
    if not tree.is_dir():
        raise SubtoolError(
            "the submission tree does not exist or is not a directory",
            path=tree,
            rule="publish.tree",
            exit_code=EXIT_USAGE,
        )
    top = listing(tree) or {}
    for div in DIVISIONS:
        if top.get(div) in (LINK, OTHER):
            raise refusal(Entry(div, top[div]), tree, "publish")
    found = []
    for div in DIVISIONS:
        if top.get(div) != DIR:
            continue
        for name, kind in sorted((listing(tree / div) or {}).items()):
            if kind in (LINK, OTHER):  # the walk refuses it (tree.symlink / tree.special_file)
                found.append(SubmitterDir(div, name))
            elif kind == DIR:
                found.append(SubmitterDir(div, name))
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
    """Every file under the submitter folder, walked as `subtool check` walks it. A link anywhere (to a file or
    a folder, inside or outside the tree, dangling or a loop), a special file or an unreadable entry refuses
    the whole publish, before anything is fetched or pushed, under the rule id check reports it with."""
    entries: list[FileEntry] = []
    top = listing(tree / sub.division) or {}
    if top.get(sub.submitter) in (LINK, OTHER):
        raise refusal(Entry(sub.rel, top[sub.submitter]), tree, "publish")
    for entry in walk(tree, sub.rel, skip=frozenset({".git"})):
        if entry.rule is not None:  # a link, a special file, an unreadable entry, a name with a control character
            raise refusal(entry, tree, "publish")
        if entry.kind == DIR or entry.rel.rpartition("/")[2] == ".git":  # a submodule's .git file, like the folder
            continue
        path = tree / entry.rel
        entries.append(FileEntry(entry.rel, path, os.access(path, os.X_OK)))
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
        _check_names(tree, sub)
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


GITHUB_FILE_MOST = 100 * 1024 * 1024  # GitHub declines a push holding a larger file, once it has all arrived


def refuse_oversized(content: PublishContent, limit: int = GITHUB_FILE_MOST) -> None:
    """A file GitHub would decline, named before gigabytes are hashed and uploaded only to be refused."""
    for f in content.files:
        try:
            size = f.source.stat().st_size
        except OSError:
            continue  # hashing it says what is wrong
        if size > limit:
            raise SubtoolError(
                f"the file is {size / 2**20:,.0f} MiB; GitHub refuses a push holding a file over "
                f"{limit / 2**20:,.0f} MiB",
                path=f.source,
                rule="publish.file_too_large",
                exit_code=EXIT_USAGE,
                hint="the official checker refuses files over 50 MB too: truncate the accuracy log as `subtool "
                "package` does, or leave the file out; nothing was pushed",
            )


BRANCH_NAME_MOST = 200  # characters of the branch name after subtool/: a ref is a file, its name 255 bytes at most


def default_branch(content: PublishContent) -> str:
    """subtool/<submitters>: a valid ref whatever the names ('..' and a '.lock' end are not), never too long for
    a file name (a long one is cut and keeps a digest of the whole, so two teams do not share a branch)."""
    import hashlib

    names = [_SAFE_REF_PART.sub("-", n).strip("-.") or "submitter" for n in content.submitter_names]
    joined = re.sub(r"\.{2,}", ".", "-".join(names))
    if len(joined) > BRANCH_NAME_MOST:
        digest = hashlib.sha256("/".join(content.submitter_names).encode()).hexdigest()[:12]
        joined = f"{joined[: BRANCH_NAME_MOST - 13].rstrip('-.')}-{digest}"
    return "subtool/" + re.sub(r"(\.lock)+$", "", joined).rstrip("-.")


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
    header = ["Division", "Submitter", "System", "Benchmark", "Scenario"]
    rows = markdown_table(header, [list(r) for r in content.results] or [["-"] * len(header)])
    return "\n".join([*rows, "", f"{len(content.files)} files. Published with subtool {__version__}."]) + "\n"


def no_changes_body(base: str, dropped: list[str], reset: list[str] | None = None) -> str:
    """The pull request's body once `--replace` left its branch holding nothing the base does not."""
    parts = [f"{len(dropped)} result(s) dropped"] if dropped else []
    parts += [f"{len(reset)} result(s) back to `{base}`'s copy"] if reset else []
    what = f" ({', '.join(parts)})" if parts else ""
    return (
        f"**No changes against `{base}`.** This branch was published again with `--replace` and now holds nothing "
        f"that `{base}` does not{what}: there is nothing to merge. Close this pull request, or publish new results "
        f"to the branch.\n\nPublished with subtool {__version__}.\n"
    )
