"""A byte-for-byte reproducible, streamed gzip tarball of a submission tree (read back through safe_tar).

Reproducible means: the same tree gives the same bytes on the same machine, whatever the files' owners, mtimes,
umask or directory order. So members go in sorted order, with uid/gid 0, empty owner names, one fixed mtime,
mode 0755 (directories and executables) or 0644, PAX headers only where a name needs them, and a gzip header
without a file name or timestamp. Files are read once, in chunks: the hash of every member and of the whole
tarball is computed while it is written, never by holding a file in memory.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from subtool.errors import SubtoolError
from subtool.mlperf.layout import DIR, DIVISIONS, FILE, LINK, OTHER, Entry, listing, refusal, walk

CHUNK = 1 << 20
_UNREADABLE = ("extract.truncated", "extract.corrupt", "extract.trailing_data", "extract.io")


def fixed_mtime() -> int:
    """The one mtime every member carries: SOURCE_DATE_EPOCH when set (the reproducible-builds convention), else 0."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError as exc:
        raise SubtoolError(
            f"SOURCE_DATE_EPOCH={raw!r} is not a whole number of seconds",
            rule="pack.mtime",
            hint="unset it or give seconds since 1970, e.g. SOURCE_DATE_EPOCH=0",
        ) from exc
    if value < 0:
        raise SubtoolError(f"SOURCE_DATE_EPOCH={raw!r} is negative", rule="pack.mtime")
    return value


@dataclass
class TarballStats:
    sha256: str = ""
    size: int = 0
    members: dict[str, str] = field(default_factory=dict)  # archive path of each regular file → sha256
    directories: int = 0
    content_bytes: int = 0


class _HashingWriter:
    """A write-only file that hashes and counts what passes through it to the real file."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()


class _HashingReader:
    """Reads a file for tarfile while hashing it, so each member is read from disk once."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self.hash.update(data)
        return data


def _archive_name(rel: PurePosixPath, source: Path) -> str:
    name = rel.as_posix()
    if "\n" in name or "\r" in name:
        raise SubtoolError(
            "a file name contains a line break; it cannot be listed in the manifest",
            path=source,
            rule="pack.bad_name",
            hint="rename the file",
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SubtoolError(
            "a file name is not valid UTF-8", path=source, rule="pack.bad_name", hint="rename the file"
        ) from exc
    return name


def iter_tree(tree: Path, out_dir: Path | None = None) -> Iterator[tuple[str, Path, os.stat_result]]:
    """Yield (archive name, path, lstat) for the division folders of `tree`, parents before children, sorted.

    Only closed/, open/ and network/ go in, as in the tarballs the competitions and MLC hand in: anything else at
    the top of the tree (notes, the official checker's private-id file) is not part of the submission. The walk
    is the checker's (subtool.mlperf.layout.walk): a link, special file or unreadable entry is refused under the
    rule id `subtool check` reports it with, so the tarball holds what was checked.
    """
    tree = Path(tree)
    top = listing(tree) or {}
    for d in DIVISIONS:
        if top.get(d) in (LINK, OTHER):
            raise refusal(Entry(d, top[d]), tree, "pack")
    divisions = [d for d in DIVISIONS if top.get(d) == DIR]
    if not divisions:
        raise SubtoolError(
            "no closed/, open/ or network/ folder: this is not a submission tree",
            path=tree,
            rule="pack.empty_tree",
            hint="pass the tree root given to `subtool package --out`",
        )
    out_real = Path(os.path.realpath(out_dir)) if out_dir is not None else None
    for division in divisions:
        for entry in walk(tree, division):
            if entry.kind not in (DIR, FILE):
                raise refusal(entry, tree, "pack")
            path = tree / entry.rel
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode) or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                raise refusal(Entry(entry.rel, LINK if stat.S_ISLNK(st.st_mode) else OTHER), tree, "pack")
            if stat.S_ISDIR(st.st_mode) and out_real is not None and Path(os.path.realpath(path)) == out_real:
                raise SubtoolError(
                    "the artifact folder is inside the tree it packs",
                    path=path,
                    rule="pack.out_inside_tree",
                    hint="give --out a folder outside closed/ and open/",
                )
            yield _archive_name(PurePosixPath(entry.rel), path), path, st


def _normalised_info(name: str, st: os.stat_result, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        info.size = 0
    else:
        info.type = tarfile.REGTYPE
        info.mode = 0o755 if st.st_mode & 0o111 else 0o644
        info.size = st.st_size
    return info


def write_tarball(
    tree: Path, dest: BinaryIO, out_dir: Path | None = None, compresslevel: int = 6, gate=None
) -> TarballStats:
    """Stream the reproducible tarball of `tree` into the open binary file `dest`; return its hashes. `gate`
    (safe_tar.PackingGate) sees each member first and may refuse it.

    Level 6 is gzip's own default (what `tar czf` writes): on log text it is about twice as fast as 9 for a
    tarball about 1% larger (bench/pack_speed.py).
    """
    stats = TarballStats()
    mtime = fixed_mtime()
    sink = _HashingWriter(dest)
    # filename="" and mtime=0 keep the gzip header free of the temp file's name and of the clock.
    with gzip.GzipFile(filename="", mode="wb", fileobj=sink, compresslevel=compresslevel, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
            for name, path, st in iter_tree(tree, out_dir):
                info = _normalised_info(name, st, mtime)
                if gate is not None:
                    gate(info)
                if info.isdir():
                    tar.addfile(info)
                    stats.directories += 1
                    continue
                with open(path, "rb") as fh:
                    if os.fstat(fh.fileno()).st_size != info.size:
                        raise SubtoolError(
                            "the file changed size while it was being packed",
                            path=path,
                            rule="pack.tree_changed",
                            hint="let the writer finish, then pack again",
                        )
                    reader = _HashingReader(fh)
                    tar.addfile(info, reader)
                stats.members[name] = reader.hash.hexdigest()
                stats.content_bytes += info.size
    stats.sha256 = sink.hash.hexdigest()
    stats.size = sink.size
    return stats


def read_tarball(path: Path, extract_to: Path) -> tuple[dict[str, str], list[str]]:
    """Unpack `path` into the empty folder `extract_to` through the safe extraction (safe_tar) and hash every
    member: (archive path → sha256, problems). A refused archive gives no hashes and one problem naming the rule."""
    from subtool.pack.safe_tar import ExtractLimits, Refused, extract_tarball, file_hashes

    try:
        extract_tarball(Path(path), Path(extract_to), ExtractLimits())
    except Refused as exc:
        lead = "cannot be read to the end" if exc.rule in _UNREADABLE else "is refused"
        return {}, [f"the tarball {lead} ({exc.rule}): {exc.message}"]
    hashes = file_hashes(Path(extract_to))
    return hashes, [
        f"{m}: outside closed/, open/ and network/ (pack never writes it)"
        for m in sorted(hashes)
        if PurePosixPath(m).parts[0] not in DIVISIONS
    ]
