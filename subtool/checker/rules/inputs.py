"""What any input may be instead of what a rule expects: a link, something unreadable, a special file, a
non-finite number. One rule each, shared by check, pack and publish (pack and publish refuse; check reports).

A submission tree holds plain files and folders. A symbolic link is refused wherever it points: to a file
outside the tree it would publish (or score) that file, to a folder above the tree it would publish the
filesystem, inside the tree it makes the tarball differ from what was checked, and a loop hides what is beside
it. So there is no "safe" link, and one rule is simpler to keep than several.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from subtool.checker.registry import define
from subtool.errors import EXIT_USAGE, SubtoolError

SYMLINK = define(
    "tree.symlink",
    "error",
    "A symbolic link in a division folder (closed/, open/, network/), wherever it points: outside the tree, "
    "inside it, nowhere (dangling) or to itself (a loop). A submission holds plain files and folders; `subtool "
    "pack` and `subtool publish` refuse a tree with a link by this same rule, before anything is written or "
    "pushed.",
    "accepted: a link is read through where the checker opens a file and otherwise ignored (a loop beside a "
    "result passes)",
)
UNREADABLE = define(
    "tree.unreadable",
    "error",
    "A file or folder in a division folder cannot be read (permissions, I/O error). Everything beside it is "
    "still checked.",
    "crashes with a traceback, or skips the folder silently",
)
SPECIAL_FILE = define(
    "tree.special_file",
    "error",
    "An entry that is neither a regular file nor a folder (FIFO, socket, device): reading it could block or never end.",
    "hangs on a FIFO",
)
NOT_FINITE = define(
    "value.not_finite",
    "error",
    "A number the checker reads is NaN or ±Infinity (or too large for a float, e.g. 1e999): a LoadGen detail "
    "log value (result, latency, settings), an accuracy.txt metric, a summary log value, or any number in a "
    "JSON file (system description, measurements.json, model_mapping.json). No such number is a result; JSON "
    "has none.",
    "accepts them: a NaN or Infinity result passes and is written to summary.csv",
)

LINK_HINT = (
    "replace the link with a copy of what it points to: a submission holds plain files and folders "
    "(check, pack, publish and score all refuse links)"
)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


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
    real = os.path.realpath(path)
    if not _inside(real, os.path.realpath(str(tree))):
        return f"is a symbolic link to {shown!r}, outside the tree"
    return f"is a symbolic link to {shown!r} (inside the tree)"


def refuse_link(path: Path | str, tree: Path | str, stage: str) -> SubtoolError:
    """The one-line refusal pack and publish raise for a link (same rule id as check's finding)."""
    return SubtoolError(
        f"{describe_link(path, tree)}; {stage} refuses symbolic links",
        path=path,
        rule=SYMLINK,
        hint=LINK_HINT,
        exit_code=EXIT_USAGE,
    )
