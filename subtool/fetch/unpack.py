"""Archives (AssetFile.unpack) extracted safely into a staging folder.

"gz" is one gzip-compressed file (its checksum is the compressed file's), installed decompressed. Refused, by the
archive's name and rule `fetch.unsafe_archive`: absolute paths, `..`, links of any kind, devices and fifos, two
members whose names differ only in case (or not at all), a member that is a file where another needs a folder
('a' and 'a/b'), more than MAX_MEMBERS members, or more bytes than the cap (a zip's declared sizes are not
trusted: each member is copied with a byte limit). tar goes through tarfile's `data` filter as a second line.
"""

from __future__ import annotations

import errno
import gzip
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from subtool.errors import SubtoolError, os_error

MAX_MEMBERS = 200_000
MIN_CAP = 1 << 30  # bytes: an archive may always unpack to 1 GiB …
RATIO_CAP = 50  # … or to 50 times its own size, whichever is more
_DISK = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}  # not the archive


class UnsafeArchive(SubtoolError):
    def __init__(self, archive: Path, message: str):
        super().__init__(message, path=archive.name, rule="fetch.unsafe_archive")


def _safe_name(archive: Path, name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    parts = [p for p in path.parts if p != "."]
    if not parts or path.is_absolute() or ".." in parts or ":" in parts[0]:
        raise UnsafeArchive(archive, f"member {name!r} would land outside the asset folder")
    if not name.isprintable():  # control and format characters (a right-to-left mark), half a surrogate pair
        raise UnsafeArchive(archive, f"member {ascii(name)} has a name that is not printable UTF-8")
    return PurePosixPath(*parts)


@dataclass
class _Names:
    """The members met so far, by casefolded name: files, and the folders their paths need."""

    files: dict[str, str] = field(default_factory=dict)
    folders: dict[str, str] = field(default_factory=dict)  # folder -> the member that needs it


def _once(archive: Path, name: PurePosixPath, seen: _Names) -> None:
    """A member named twice, or twice but for case, would overwrite the other (on a case-blind file system too);
    a member that is a file where another needs a folder ('a' and 'a/b') cannot sit beside it."""
    key = str(name).casefold()
    if key in seen.files:
        raise UnsafeArchive(archive, f"member {str(name)!r} has the same name as {seen.files[key]!r} (case aside)")
    if key in seen.folders:
        raise UnsafeArchive(archive, f"member {str(name)!r} is a file where {seen.folders[key]!r} needs a folder")
    folders = [PurePosixPath(*name.parts[:i]).as_posix() for i in range(1, len(name.parts))]
    clash = next((f for f in folders if f.casefold() in seen.files), None)
    if clash is not None:
        raise UnsafeArchive(
            archive, f"member {str(name)!r} needs a folder where {seen.files[clash.casefold()]!r} is a file"
        )
    seen.files[key] = str(name)
    for folder in folders:
        seen.folders.setdefault(folder.casefold(), str(name))


def cap_for(archive: Path) -> int:
    return max(MIN_CAP, RATIO_CAP * archive.stat().st_size)


def unpack(archive: Path, kind: str, dest: Path, *, name: str | None = None, cap: int | None = None) -> list[Path]:
    """Extract `archive` into `dest`; returns the files made, relative to `dest`. Kinds: "tar.gz" and "zip"
    (the members become the asset's files), "gz" (one compressed file, installed as `name` less ".gz")."""
    cap = cap_for(archive) if cap is None else cap
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "gz":
            return [_gunzip(archive, dest, (name or archive.name).removesuffix(".gz"), cap)]
        if kind == "zip":
            return _unzip(archive, dest, cap)
        if kind in ("tar.gz", "tgz", "tar"):
            return _untar(archive, dest, cap)
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError) as exc:
        # RuntimeError: an encrypted zip member; NotImplementedError (a RuntimeError): an unknown compression
        if isinstance(exc, SubtoolError):
            raise
        if isinstance(exc, OSError) and exc.errno in _DISK:  # the disk's fault, not the archive's
            raise os_error(exc, action=f"cannot unpack {archive.name}", path=exc.filename or dest) from None
        raise UnsafeArchive(archive, f"cannot read the archive ({type(exc).__name__}: {exc})") from None
    raise SubtoolError(f"unknown archive kind {kind!r}", path=archive.name, rule="fetch.unsafe_archive")


def _untar(archive: Path, dest: Path, cap: int) -> list[Path]:
    made: list[Path] = []
    total = 0
    seen = _Names()
    with tarfile.open(archive, "r:*") as tar:
        for count, member in enumerate(tar, 1):
            if count > MAX_MEMBERS:
                raise UnsafeArchive(archive, f"more than {MAX_MEMBERS} members")
            if member.isdir():
                continue
            name = _safe_name(archive, member.name)
            _once(archive, name, seen)
            if not member.isreg():
                raise UnsafeArchive(archive, f"member {member.name!r} is a link or a device, not a file")
            total += member.size
            if total > cap:
                raise UnsafeArchive(archive, f"unpacks to more than {cap} bytes")
            tar.extract(member.replace(name=name.as_posix(), deep=False), dest, filter="data")  # the name checked
            made.append(Path(*name.parts))
    return made


def _unzip(archive: Path, dest: Path, cap: int) -> list[Path]:
    made: list[Path] = []
    total = 0
    seen = _Names()
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise UnsafeArchive(archive, f"more than {MAX_MEMBERS} members")
        for info in infos:
            if info.is_dir():
                continue
            name = _safe_name(archive, info.filename)
            _once(archive, name, seen)
            mode = info.external_attr >> 16
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: no type recorded (a plain file)
                raise UnsafeArchive(archive, f"member {info.filename!r} is a link or a device, not a file")
            target = dest.joinpath(*name.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                total = _copy_capped(src, out, total, cap, archive)
            made.append(Path(*name.parts))
    return made


def _gunzip(archive: Path, dest: Path, name: str, cap: int) -> Path:
    rel = _safe_name(archive, name)
    target = dest.joinpath(*rel.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(archive, "rb") as src, open(target, "wb") as out:
        _copy_capped(src, out, 0, cap, archive)
    return Path(*rel.parts)


def _copy_capped(src, out, total: int, cap: int, archive: Path) -> int:
    while block := src.read(1 << 20):
        total += len(block)
        if total > cap:
            raise UnsafeArchive(archive, f"unpacks to more than {cap} bytes")
        out.write(block)
    return total


def clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
