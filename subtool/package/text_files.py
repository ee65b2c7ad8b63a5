"""The small text files package copies into the tree (user.conf, mlperf.conf, accuracy.txt, verify_*.txt):
read once, bounded, and only when they are what their names say.

They come from folders a harness wrote, where a link can stand for any file on the machine: a user.conf that
is a link to ~/.ssh/id_ed25519 was copied into a tree bound for a public repository. So each is a regular file
(a link is followed, to a regular file only) of at most TEXT_LIMIT bytes of UTF-8 without NUL bytes, and a conf
file holds only LoadGen's `<model>.<Scenario>.<key> = number` lines, comments and blank lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from subtool.errors import SubtoolError
from subtool.mlperf.logs import describe_os_error, read_bounded
from subtool.mlperf.user_conf import Setting, read_settings

__all__ = ["TEXT_LIMIT", "ConfFile", "read_conf", "read_text", "small_file_bytes"]

TEXT_LIMIT = 4 << 20  # LoadGen's confs and the checker's verdict files are a few kB


class ConfFile(NamedTuple):
    text: str
    settings: list[Setting]


def read_text(path: Path, what: str, rule: str, *, lenient: bool = False) -> str:
    """`path`'s text; one SubtoolError (`rule`) when it is not a regular file, larger than TEXT_LIMIT or not
    text. `lenient` decodes bytes that are not UTF-8 as U+FFFD instead of refusing them (accuracy.txt, whose
    lines the checker matches by pattern)."""
    return _decode(_read_bounded(path, what, rule), path, what, rule, lenient=lenient)


def _read_bounded(path: Path, what: str, rule: str) -> bytes:
    try:
        return read_bounded(path, TEXT_LIMIT, follow_links=True)
    except OSError as exc:
        raise SubtoolError(f"{what} {describe_os_error(exc)}", path=path, rule=rule) from None


def _decode(data: bytes, path: Path, what: str, rule: str, *, lenient: bool) -> str:
    try:
        text = data.decode("utf-8", errors="replace" if lenient else "strict")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise SubtoolError(f"{what} is not text (bytes that are not UTF-8, or NUL bytes)", path=path, rule=rule)
    return text


def read_conf(path: Path, what: str) -> ConfFile:
    """A LoadGen conf file: every line that is not blank or a comment is, as LoadGen tokenizes it,
    `<model>.<Scenario>.<key> = number` (mlperf.user_conf.read_settings). A line LoadGen refuses or skips is no
    conf line, so a key file, a token or a .env file given as user.conf is refused, naming the line."""
    text = read_text(path, what, "import.user_conf_unreadable")
    settings, problems = read_settings(text)
    if problems:
        raise SubtoolError(
            f"{what} line {problems[0].line} is not `<model>.<Scenario>.<key> = number` ({problems[0].message}): "
            "not a LoadGen conf file",
            path=path,
            rule="import.user_conf_unreadable",
            hint="give the conf file the run used; LoadGen reads only such lines, comments and blank lines",
        )
    return ConfFile(text, settings)


def small_file_bytes(src: Path, what: str) -> bytes:
    """A small text file's bytes, bounded and checked as read_text(lenient) reads it, to copy byte for byte."""
    data = _read_bounded(src, what, "import.unreadable_file")
    _decode(data, src, what, "import.unreadable_file", lenient=True)
    return data
