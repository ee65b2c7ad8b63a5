"""A set of output files that replace their previous versions together (pack's seven artifacts, score's
leaderboards): every destination is checked before any is replaced, so that something in the way of one (a
folder, a link, a FIFO) leaves the whole previous set as it was, and the error names that destination, never
the temporary file the new version was written to."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from subtool.errors import FileSystemError, os_error


def check_replaceable(paths: Iterable[str | Path]) -> None:
    """Refuse, with one error naming it, the first destination that exists and is not a regular file; a
    destination that does not exist yet is fine (its folder is the writer's to make)."""
    for path in map(Path, paths):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise os_error(exc, action="cannot replace", path=path) from None
        if stat.S_ISREG(st.st_mode):
            continue
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a link" if stat.S_ISLNK(st.st_mode) else "a special file"
        raise FileSystemError(
            f"cannot replace: {kind} is in the place of this output, not a regular file (nothing was replaced)",
            errno=errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EEXIST,
            path=path,
            rule="io.eisdir" if stat.S_ISDIR(st.st_mode) else "io.not_a_file",
            hint="move it out of the way (or choose another output folder) and run again",
        )


def replace_all(moves: Iterable[tuple[Path, Path]]) -> None:
    """os.replace each (new file, destination) in order, after checking every destination; an error names the
    destination."""
    moves = list(moves)
    check_replaceable(dest for _, dest in moves)
    for new, dest in moves:
        try:
            os.replace(new, dest)
        except OSError as exc:
            raise os_error(exc, path=dest) from None
