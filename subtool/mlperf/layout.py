"""The official submission tree: its folder names, where each file of a result lives per round, the one name
check and the one tree walker.

Path rules: the current layout (v6.x) keeps measurements and compliance runs inside `results/`, and the code in
`src/`; the legacy layout (v5.x) splits them into `measurements/`, `compliance/` and `code/`. Every stage asks
this module instead of joining paths itself.

Names: a submitter or system name becomes a folder of the tree (and a branch name, a file name); `check_name`
is the one alphabet, with one rule id, for every command (package, all, system, pack, publish, ci, check).

Walking: `walk` lists a tree without following links and without dropping a listing for one bad entry; each
link, special file and unreadable entry comes back as an entry with its rule id, so the checker reports it and
pack and publish refuse it under the same id (`refusal`).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from subtool.errors import EXIT_USAGE, SubtoolError
from subtool.fsutil import within
from subtool.mlperf.rounds import ROUNDS, check_version

# The folders at the top of a tree (what the official checker walks) and the ones subtool's package writes.
DIVISIONS = ("closed", "open", "network")
WRITABLE_DIVISIONS = ("closed", "open")
SCENARIOS = ("SingleStream", "MultiStream", "Offline", "Server", "Interactive")

# Rule ids for what a tree may hold instead of plain files and folders; the checker registers them (with their
# documentation, checker/rules/inputs.py), pack and publish raise them.
SYMLINK = "tree.symlink"
UNREADABLE = "tree.unreadable"
SPECIAL_FILE = "tree.special_file"
BAD_NAME = "tree.bad_name"
UNPRINTABLE_NAME = "tree.unprintable_name"

# ------------------------------------------------------------------------------------------------- names
# The official checker (and MLCommons' repository_checks.sh) refuses a name with a space or a leading dot; a
# '/' would change the tree's depth. subtool allows the characters that are safe in a folder, a file name, a
# git branch and a URL everywhere, which every submitter and system of the results repositories uses.
NAME_ALPHABET = "letters, digits, '.', '_', '+' and '-', starting with a letter or a digit"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def name_problem(value: str) -> str | None:
    """Why `value` cannot be a submitter or system folder, or None when it can."""
    if not isinstance(value, str) or not value:
        return "is empty"
    if _NAME_RE.fullmatch(value):
        return None
    if value[0] == ".":
        return "starts with a dot (git hides it; the official checker refuses it)"
    bad = sorted({c for c in value if not re.fullmatch(r"[A-Za-z0-9._+-]", c)})
    if bad:
        shown = ", ".join("a space" if c == " " else repr(c) for c in bad[:5])
        return f"holds {shown}"
    return f"starts with {value[0]!r}"


def suggest_name(value: str) -> str:
    """A name the tree allows, close to `value`: accents dropped (Équipe → Equipe), other characters as '_'."""
    import unicodedata

    plain = unicodedata.normalize("NFKD", value or "").encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", plain).strip("._+-") or "TeamX"


def check_name(value: str, what: str, *, flag: str | None = None, path: Path | str | None = None) -> str:
    """Refuse a submitter/system name that cannot be a folder of the official tree (one rule id everywhere)."""
    problem = name_problem(value)
    if problem is None:
        return value
    raise SubtoolError(
        f"{what} {value!r} {problem}: not a name the submission tree allows",
        path=path,
        rule=BAD_NAME,
        exit_code=EXIT_USAGE,
        hint=f"use {NAME_ALPHABET}, e.g. {suggest_name(value)!r}" + (f" in {flag}" if flag else ""),
    )


# ------------------------------------------------------------------------------------------------ layout
@dataclass(frozen=True)
class ResultKey:
    """Names one result of the tree."""

    division: str
    submitter: str
    system: str
    model: str
    scenario: str

    def label(self) -> str:
        return f"{self.division}/{self.submitter}/{self.system}/{self.model}/{self.scenario}"


@dataclass(frozen=True)
class Layout:
    """Path templates of one submission round. `name` is the generation ("v6": current, "v5": legacy)."""

    version: str

    @property
    def name(self) -> str:
        return ROUNDS[self.version]["layout"]

    @property
    def legacy(self) -> bool:
        return self.name == "v5"

    @property
    def code_dir(self) -> str:
        return "code" if self.legacy else "src"

    @property
    def measurements_json_in_dir(self) -> bool:
        """v6: results/…/measurements.json; v5: measurements/…/<system>[_<scenario>].json."""
        return not self.legacy

    # -- relative to the submitter folder (the checker's view) ---------------------------------------------
    def measurements(self, system: str, model: str, scenario: str) -> str:
        return f"{'measurements' if self.legacy else 'results'}/{system}/{model}/{scenario}"

    def compliance(self, system: str, model: str, scenario: str) -> str:
        """The folder holding TEST01/, TEST04/, …"""
        return f"{'compliance' if self.legacy else 'results'}/{system}/{model}/{scenario}"

    # -- relative to the tree root (package's view) --------------------------------------------------------
    def submitter_dir(self, division: str, submitter: str) -> Path:
        return Path(division) / submitter

    def src_dir(self, division: str, submitter: str) -> Path:
        return self.submitter_dir(division, submitter) / self.code_dir

    def documentation_dir(self, division: str, submitter: str) -> Path:
        return self.submitter_dir(division, submitter) / "documentation"

    def system_json(self, division: str, submitter: str, system: str) -> Path:
        return self.submitter_dir(division, submitter) / "systems" / f"{system}.json"

    def model_mapping(self, division: str, submitter: str) -> Path:
        return self.submitter_dir(division, submitter) / "model_mapping.json"

    def result_dir(self, key: ResultKey) -> Path:
        """performance/run_1 and accuracy live here (both layouts)."""
        return self.submitter_dir(key.division, key.submitter) / "results" / key.system / key.model / key.scenario

    def measurements_dir(self, key: ResultKey) -> Path:
        """measurements.json (v5: <system>_<scenario>.json), user.conf, README.md, mlperf.conf."""
        sub = self.submitter_dir(key.division, key.submitter)
        return sub / self.measurements(key.system, key.model, key.scenario)

    def measurements_file(self, key: ResultKey) -> Path:
        # v5.x checkers look for a file that starts with the system name and ends with `_<scenario>.json`.
        name = f"{key.system}_{key.scenario}.json" if self.legacy else "measurements.json"
        return self.measurements_dir(key) / name

    def compliance_dir(self, key: ResultKey, test: str) -> Path:
        sub = self.submitter_dir(key.division, key.submitter)
        return sub / self.compliance(key.system, key.model, key.scenario) / test

    def owned_dirs(self, key: ResultKey) -> list[Path]:
        """Every directory that belongs to exactly this result (what a replacement removes)."""
        dirs = [self.result_dir(key)]
        if self.legacy:
            dirs.append(self.measurements_dir(key))
            dirs.append(self.compliance_dir(key, "TEST01").parent)
        return dirs


def layout_for(version: str) -> Layout:
    return Layout(check_version(version))


# --------------------------------------------------------------------------------------------- generations
# The folders of a submitter that one generation of rounds lays out and the other never reads: what shows which
# rounds a tree was laid out for when no --version names one. v5's code/ is not among them (every v5 tree holds
# measurements/, and a code/ folder is an easy slip in a v6 one).
GENERATION_FOLDERS = {"v5": ("measurements", "compliance"), "v6": ("src",)}


def generation_of(folders: Iterable[str]) -> str | None:
    """The generation whose own folders are among `folders` (a submitter folder's sub-folders); None when they
    hold neither generation's or both generations' (a v6 tree with a v5 leftover)."""
    names = set(folders)
    seen = [gen for gen, own in GENERATION_FOLDERS.items() if names.intersection(own)]
    return seen[0] if len(seen) == 1 else None


def generation_rounds(generation: str) -> tuple[str, ...]:
    """The rounds laid out as `generation`, oldest first."""
    return tuple(v for v in sorted(ROUNDS) if ROUNDS[v]["layout"] == generation)


def generation_text(generation: str) -> str:
    """`generation`'s rounds for a hint, newest first: 'v6.1 (or v6.0)'."""
    newest, *older = reversed(generation_rounds(generation))
    return newest + (f" (or {', '.join(older)})" if older else "")


# ------------------------------------------------------------------------------------------------ walker
# An entry's kind, from the directory listing alone (links are never followed).
DIR, FILE, LINK, OTHER, UNLISTABLE = "dir", "file", "link", "other", "unreadable"
_RULE_OF = {LINK: SYMLINK, OTHER: SPECIAL_FILE, UNLISTABLE: UNREADABLE}


class Entry(NamedTuple):
    """One entry of a walk: `rel` is relative to the walk's root, with '/'; `reason` says why it is unreadable."""

    rel: str
    kind: str  # DIR | FILE | LINK | OTHER | UNLISTABLE
    reason: str = ""
    is_dir: bool = False  # for an UNLISTABLE entry: a folder (True) or a file

    @property
    def rule(self) -> str | None:
        """The tree.* rule this entry breaks; None for a plain file or folder with a printable name."""
        if self.kind in (DIR, FILE) and not self.rel.rpartition("/")[2].isprintable():
            return UNPRINTABLE_NAME
        return _RULE_OF.get(self.kind)


Listings = dict[str, "dict[str, str] | None"]  # folder → its listing (None: it cannot be listed)


def listing(path: Path | str, memo: Listings | None = None) -> dict[str, str] | None:
    """name → kind for one folder, links not followed; None when the folder cannot be listed.

    One entry whose type cannot be told is OTHER; it never hides its siblings. With `memo`, a folder is listed
    once: the checker's tree walk and every result check of one run share what it saw.
    """
    key = os.fspath(path)
    if memo is not None and key in memo:
        return memo[key]
    try:
        with os.scandir(key) as it:
            entries = list(it)
    except OSError:
        entries = None
    kinds = None if entries is None else {e.name: _kind(e) for e in entries}
    if memo is not None:
        memo[key] = kinds
    return kinds


def _kind(e: os.DirEntry) -> str:
    try:
        if e.is_symlink():
            return LINK
        if e.is_dir(follow_symlinks=False):
            return DIR
        return FILE if e.is_file(follow_symlinks=False) else OTHER
    except OSError:
        return OTHER


def subdirs(path: Path | str, memo: Listings | None = None) -> list[str]:
    """The real folders in `path` (not links to folders), sorted; [] when it cannot be listed."""
    kinds = listing(path, memo) or {}
    return sorted(name for name, kind in kinds.items() if kind == DIR)


def why_unlistable(path: Path | str) -> str:
    try:
        with os.scandir(path):
            return "unknown error"
    except OSError as exc:
        return exc.strerror or str(exc)


def walk(
    root: Path | str, top: str, *, skip: frozenset[str] = frozenset(), memo: Listings | None = None
) -> Iterator[Entry]:
    """Every entry at and below `root/top`, parents before children, siblings sorted by name; links are never
    followed. A folder that cannot be listed, or a file that cannot be read, is one UNLISTABLE entry and the
    walk goes on beside it. Folders named in `skip` are left out with what they hold; `memo` as for listing()."""
    stack = [Entry(top, DIR)]
    while stack:
        entry = stack.pop()
        path = os.path.join(root, entry.rel)
        if entry.kind == FILE:
            yield entry if os.access(path, os.R_OK) else Entry(entry.rel, UNLISTABLE, "permission denied")
            continue
        if entry.kind != DIR:
            yield entry
            continue
        kinds = listing(path, memo)
        if kinds is None:
            yield Entry(entry.rel, UNLISTABLE, why_unlistable(path), True)
            continue
        yield entry
        children = [(name, kind) for name, kind in kinds.items() if not (kind == DIR and name in skip)]
        stack.extend(Entry(f"{entry.rel}/{name}", kind) for name, kind in sorted(children, reverse=True))


def problem_text(entry: Entry, root: Path | str) -> tuple[str, str]:
    """(message, hint) for an entry that breaks a tree.* rule."""
    if entry.kind == LINK:
        return describe_link(os.path.join(root, entry.rel), root), LINK_HINT
    if entry.rule == UNPRINTABLE_NAME:
        return (
            "name holds a control character (a line break, an escape sequence) or bytes that are not UTF-8",
            "rename it: pack, verify and score refuse such a name, and it can forge lines in a terminal or a log",
        )
    if entry.kind == OTHER:
        return (
            "is neither a regular file nor a folder (FIFO, socket or device?)",
            "remove it: a submission holds plain files and folders",
        )
    return (
        f"{'folder' if entry.is_dir else 'file'} cannot be read ({entry.reason})",
        "make it readable (chmod a+rX) or remove it",
    )


def refusal(entry: Entry, root: Path | str, stage: str) -> SubtoolError:
    """The one-line refusal pack and publish raise for an entry check reports (same rule id as the finding)."""
    message, hint = problem_text(entry, root)
    return SubtoolError(
        f"{message}; {stage} refuses it",
        path=Path(root) / entry.rel,
        rule=entry.rule,
        hint=hint,
        exit_code=EXIT_USAGE,
    )


LINK_HINT = (
    "replace the link with a copy of what it points to: a submission holds plain files and folders "
    "(check, pack, publish and score all refuse links)"
)


def describe_link(path: Path | str, tree: Path | str) -> str:
    """What a symbolic link is, in words: where it points and whether that leaves the tree, dangles or loops."""
    path = str(path)
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    shown = target if len(target) <= 120 else target[:117] + "..."
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"is a symbolic link loop (to {shown!r})"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return f"is a symbolic link to {shown!r}, which does not exist (dangling)"
        return f"is a symbolic link to {shown!r}, which cannot be reached ({exc.strerror})"
    if not within(path, tree):
        return f"is a symbolic link to {shown!r}, outside the tree"
    return f"is a symbolic link to {shown!r} (inside the tree)"
