"""What an earlier publish left on the team's branch, and what a new publish keeps of it.

A team publishes one benchmark from one output folder and another from a second: the branch (and its pull
request) must end up holding both. The new commit is therefore built as: the base branch, then the team's
submitter directories as the branch holds them (each result directory there replacing the base's copy), then
this tree (each of its result directories replacing that). `--replace` skips the middle step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from subtool.mlperf.layout import DIVISIONS
from subtool.publish.content import RESULT_ROOTS, PublishContent, SubmitterDir
from subtool.publish.git import BlobEntry, FileEntry

Result = tuple[str, str, str, str, str]  # division, submitter, system, model, scenario


@dataclass
class Kept:
    entries: list[BlobEntry] = field(default_factory=list)  # the team's files on the branch
    replace: list[str] = field(default_factory=list)  # result directories the branch holds
    results: list[Result] = field(default_factory=list)  # of those, the ones under results/
    submitters: list[SubmitterDir] = field(default_factory=list)


def kept_from_branch(entries: Sequence[BlobEntry], submitter_names: Sequence[str]) -> Kept:
    """The part of the branch that belongs to these submitters (in any division)."""
    names = set(submitter_names)
    kept = Kept()
    replace: set[str] = set()
    results: set[Result] = set()
    subs: set[tuple[str, str]] = set()
    for entry in entries:
        parts = entry.path.split("/")
        if len(parts) < 3 or parts[0] not in DIVISIONS or parts[1] not in names:
            continue
        kept.entries.append(entry)
        subs.add((parts[0], parts[1]))
        if len(parts) >= 7 and parts[2] in RESULT_ROOTS:
            replace.add("/".join(parts[:6]))
            if parts[2] == "results":
                results.add((parts[0], parts[1], parts[3], parts[4], parts[5]))
    kept.replace, kept.results = sorted(replace), sorted(results)
    kept.submitters = [SubmitterDir(d, s) for d, s in sorted(subs)]
    return kept


def result_id(r: Result) -> str:
    return f"{r[0]}/{r[1]}/results/{r[2]}/{r[3]}/{r[4]}"


def only_on_branch(kept: Kept, content: PublishContent) -> list[Result]:
    """Results the branch holds that this tree does not bring again."""
    ours = set(content.results)
    return [r for r in kept.results if r not in ours]


def differing_from_base(kept: Kept, changes: Sequence[tuple[str, str]]) -> Kept:
    """`kept` less the results the branch holds exactly as the base does (`changes`: base → branch): those are the
    base's, not an earlier publish's, so they are neither kept nor dropped, and the words never call them the team's."""
    touched = set()
    for _, path in changes:  # a v5 result's measurements/ and compliance/ folders are part of it
        parts = path.split("/")
        if len(parts) >= 7 and parts[2] in RESULT_ROOTS:
            touched.add((parts[0], parts[1], parts[3], parts[4], parts[5]))
    return dataclasses.replace(kept, results=[r for r in kept.results if r in touched])


def merged_view(content: PublishContent, kept: Kept) -> PublishContent:
    """The content as the branch will hold it, for the words (title, commit message, pull request body)."""
    if not kept.entries:
        return content
    results = sorted(set(content.results) | set(kept.results))
    scenarios: dict[str, set[str]] = {}
    for r in results:
        scenarios.setdefault(r[3], set()).add(r[4])
    paths = {f.path for f in content.files}
    replaced = tuple(f"{d}/" for d in content.replace)
    extra = [
        FileEntry(e.path, Path(e.path), e.mode == "100755")
        for e in kept.entries
        if e.path not in paths and not e.path.startswith(replaced)
    ]
    return dataclasses.replace(
        content,
        submitters=sorted(set(content.submitters) | set(kept.submitters), key=lambda s: s.rel),
        files=sorted([*content.files, *extra], key=lambda f: f.path),
        results=results,
        systems=sorted({r[2] for r in results}),
        models=sorted(scenarios),
        scenarios={m: sorted(s) for m, s in scenarios.items()},
    )


def others_on_branch(changes: Sequence[tuple[str, str]], submitter_names: Sequence[str]) -> list[str]:
    """Other submitters' directories where the branch holds files the base lacks or holds otherwise (`changes`:
    base → branch): a new commit never carries them, so they leave the branch."""
    names = set(submitter_names)
    found = set()
    for status, path in changes:
        parts = path.split("/")
        if status in ("A", "M") and len(parts) >= 3 and parts[0] in DIVISIONS and parts[1] not in names:
            found.add(f"{parts[0]}/{parts[1]}")
    return sorted(found)
