"""Unpack a stranger's tarball into a scratch folder, or refuse it with one clear reason.

The one safe extraction of the project: `subtool score` (many teams' tarballs) and `subtool pack --verify` (one
tarball against its manifest) both unpack through `extract_tarball`, so a limit or a check added here holds for
both. Every member passes the project's own checks first (name, type, count, size, duplicates), then tarfile's `data`
extraction filter (defence in depth: it re-checks that the path and any link stay inside the folder and drops
owners, special bits and device files). The gzip stream is read forward once (`r|`), through a counter that
stops a gzip or tar bomb as soon as the unpacked bytes pass the size or compression-ratio limit, so memory stays
at tarfile's buffers and disk at the limits whatever the archive claims. Links of any kind are refused: a
submission tree holds plain files and folders (`subtool pack` refuses links too), so a link is either a mistake
or an attempt to read or write outside the tree. Member names must be UTF-8 without control characters: a name
that cannot be written back as text would otherwise reach a leaderboard or a report. The archive is read to the
end of the gzip stream, so gzip's CRC32 and length trailer are verified: a damaged, cut or padded-with-garbage
archive is refused, never scored from the part that happened to unpack.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_GZIP_MAGIC = b"\x1f\x8b"
_OTHER_FORMATS = ((b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"PK\x03\x04", "zip"), (b"\x28\xb5\x2f\xfd", "zstd"))
# Member types whose body tarfile reads into memory (PAX / GNU long-name headers): bounded separately.
_META_TYPES = {
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
}
_MAX_META_BYTES = 1 << 20
_CHUNK = 1 << 20
_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}


@dataclass(frozen=True)
class ExtractLimits:
    max_members: int = 10_000
    max_member_bytes: int = 256 << 20
    max_total_bytes: int = 1 << 30
    max_ratio: float = 200.0  # unpacked bytes / compressed bytes
    ratio_grace_bytes: int = 1 << 20  # a tarball may always unpack to this much, whatever its ratio
    max_name_length: int = 1024
    max_depth: int = 32


@dataclass
class ExtractStats:
    members: int = 0
    files: int = 0
    unpacked_bytes: int = 0  # sum of the regular files' sizes
    stream_bytes: int = 0  # the whole decompressed tar stream (headers and padding too)
    compressed_bytes: int = 0


class Refused(Exception):
    """The archive is refused; `rule` is a stable id (extract.*), the message says which member and why."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


def filters_available() -> bool:
    return hasattr(tarfile, "data_filter")


class _BoundedReader:
    """The decompressed stream, counted: refuses a bomb while it is still being read, before it is written."""

    def __init__(self, raw, limits: ExtractLimits, compressed: int, stats: ExtractStats) -> None:
        self._raw = raw
        self._stats = stats
        ratio_cap = max(int(limits.max_ratio * compressed), limits.ratio_grace_bytes)
        self._ratio_cap, self._size_cap = ratio_cap, self.size_cap(limits)
        self._limits, self._compressed = limits, compressed

    @staticmethod
    def size_cap(limits: ExtractLimits) -> int:
        # headers and padding come on top of the files' bytes: one 512-byte header (+ padding) per member
        return limits.max_total_bytes + (limits.max_members + 2) * 1536 + (1 << 20)

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._stats.stream_bytes += len(data)
        if self._stats.stream_bytes > self._size_cap:
            raise Refused(
                "extract.too_large",
                f"unpacks to more than {_mib(self._limits.max_total_bytes)} (limit max_total_bytes)",
            )
        if self._stats.stream_bytes > self._ratio_cap:
            raise Refused(
                "extract.ratio",
                f"compression ratio above {self._limits.max_ratio:g} ({_mib(self._compressed)} "
                f"unpacks to more than {_mib(self._ratio_cap)}): a gzip or tar bomb",
            )
        return data


def _mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= (1 << 20) else f"{int(n)} bytes"


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a PAX or GNU long-name header's body into memory at once: refuse oversized ones first."""

    def _proc_member(self, tarfile_):  # noqa: D401 - tarfile's hook
        if self.type in _META_TYPES and self.size > _MAX_META_BYTES:
            raise Refused(
                "extract.header_too_large",
                f"a tar extension header of {_mib(self.size)} (more than {_mib(_MAX_META_BYTES)})",
            )
        return super()._proc_member(tarfile_)


def _check_text(text: str, shown: str, what: str) -> None:
    """A name must be UTF-8 text without control characters (tarfile hands undecodable bytes over as surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused(
            "extract.name_not_utf8", f"{what} {shown} is not valid UTF-8; name the files in UTF-8 and pack again"
        ) from None
    bad = sorted(_CONTROL.intersection(text))
    if bad:
        raise Refused("extract.bad_name", f"{what} {shown} holds a control character ({bad[0]!r})")


def _sniff(path: Path) -> None:
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head[:2] == _GZIP_MAGIC:
        return
    if not head:
        raise Refused("extract.not_gzip", "the file is empty, not a .tar.gz")
    for magic, kind in _OTHER_FORMATS:
        if head.startswith(magic):
            raise Refused("extract.not_gzip", f"a {kind} archive, not gzip: hand in a .tar.gz (tar czf)")
    if len(head) == 512 and head[257:262] == b"ustar":
        raise Refused("extract.not_gzip", "an uncompressed tar, not gzip: hand in a .tar.gz (tar czf)")
    raise Refused("extract.not_gzip", "not a gzip file: hand in the .tar.gz that `subtool pack` or MLC wrote")


class _MemberGate:
    """The project's own per-member checks; called by tarfile for each member before it is extracted."""

    def __init__(self, limits: ExtractLimits, stats: ExtractStats) -> None:
        self.limits = limits
        self.stats = stats
        self.seen: set[str] = set()

    def __call__(self, member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        self.stats.members += 1
        if self.stats.members > self.limits.max_members:
            raise Refused(
                "extract.too_many_members", f"more than {self.limits.max_members} members (limit max_members)"
            )
        shown = ascii(member.name[:120])
        parts = _path_parts(member, self.limits, shown)
        _refuse_links_and_specials(member, parts, shown)
        key = "/".join(parts)
        if key in self.seen:
            raise Refused("extract.duplicate_member", f"member {shown} appears twice in the archive")
        self.seen.add(key)
        if member.isreg():
            self._count(member, shown)
        try:
            return tarfile.data_filter(member, dest)
        except tarfile.FilterError as exc:
            raise Refused("extract.unsafe_member", f"member {shown} refused by tarfile's data filter: {exc}") from exc

    def _count(self, member: tarfile.TarInfo, shown: str) -> None:
        limits, stats = self.limits, self.stats
        if member.size > limits.max_member_bytes:
            raise Refused(
                "extract.too_large",
                f"member {shown} is {_mib(member.size)} (limit max_member_bytes {_mib(limits.max_member_bytes)})",
            )
        stats.unpacked_bytes += member.size
        stats.files += 1
        if stats.unpacked_bytes > limits.max_total_bytes:
            raise Refused(
                "extract.too_large", f"unpacks to more than {_mib(limits.max_total_bytes)} (limit max_total_bytes)"
            )


class PackingGate:
    """What `subtool pack` writes, held to the limits extraction applies (verify and score refuse a tarball that
    breaks them): each member through the same gate as it is added, then the compression ratio once the tarball
    is written. Raises Refused, with extraction's rule ids."""

    def __init__(self, limits: ExtractLimits | None = None) -> None:
        self.limits = limits or ExtractLimits()
        self.stats = ExtractStats()
        self._gate = _MemberGate(self.limits, self.stats)

    def __call__(self, member: tarfile.TarInfo) -> None:
        self._gate(member, "/nonexistent-subtool-dest")  # the data filter resolves names only: nothing is written

    def finished(self, compressed_bytes: int) -> None:
        limits, unpacked = self.limits, self.stats.unpacked_bytes
        if unpacked > limits.ratio_grace_bytes and unpacked > limits.max_ratio * max(compressed_bytes, 1):
            raise Refused(
                "extract.ratio",
                f"compression ratio above {limits.max_ratio:g} ({_mib(compressed_bytes)} unpacking to "
                f"{_mib(unpacked)}): what a compression bomb looks like",
            )


def _path_parts(member: tarfile.TarInfo, limits: ExtractLimits, shown: str) -> list[str]:
    """The member's path as folder names, once it is known to be UTF-8 text that stays inside the archive."""
    name = member.name
    if not name or "\x00" in name:
        raise Refused("extract.bad_name", f"a member has an empty or NUL-containing name: {shown}")
    _check_text(name, shown, "member")
    if member.issym() or member.islnk():
        _check_text(member.linkname, ascii(member.linkname[:120]), f"the link target of member {shown}")
    if len(name) > limits.max_name_length:
        raise Refused("extract.bad_name", f"member name longer than {limits.max_name_length} characters: {shown}")
    if name.startswith(("/", "\\")) or PurePosixPath(name).is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise Refused("extract.absolute_path", f"member {shown} has an absolute path")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Refused("extract.path_traversal", f"member {shown} climbs out of the archive with '..'")
    if not parts:
        raise Refused("extract.bad_name", f"member {shown} names no path")
    if len(parts) > limits.max_depth:
        raise Refused("extract.bad_name", f"member {shown} is nested deeper than {limits.max_depth} folders")
    return parts


def _refuse_links_and_specials(member: tarfile.TarInfo, parts: list[str], shown: str) -> None:
    if member.issym() or member.islnk():
        kind = "symbolic link" if member.issym() else "hard link"
        target = member.linkname
        if member.issym():
            resolved = os.path.normpath(os.path.join(os.path.dirname("/".join(parts)), target))
        else:
            resolved = os.path.normpath(target)
        outside = os.path.isabs(target) or resolved == ".." or resolved.startswith("../")
        where = "pointing outside the archive" if outside else "inside the archive"
        raise Refused(
            "extract.link_outside" if outside else "extract.link",
            f"member {shown} is a {kind} {where} (to {ascii(target[:120])}); a submission holds plain files only",
        )
    if member.ischr() or member.isblk() or member.isfifo():
        kind = "character device" if member.ischr() else "block device" if member.isblk() else "FIFO"
        raise Refused("extract.special_member", f"member {shown} is a {kind}")
    if not (member.isreg() or member.isdir()):
        raise Refused(
            "extract.special_member", f"member {shown} is not a regular file or folder (tar type {member.type!r})"
        )


def _read_to_the_end(reader: _BoundedReader) -> None:
    """tar stops at its end-of-archive block; gzip checks its CRC32 and length only at the end of the stream.

    Reading on to the end makes gzip verify the trailer (a wrong CRC raises BadGzipFile, a cut stream EOFError,
    bytes after the last gzip member that are not another member BadGzipFile). What is left of the tar stream
    may only be the zero blocks tar pads with: anything else is data no check ever looked at.
    """
    while True:
        block = reader.read(_CHUNK)
        if not block:
            return
        if block.count(0) != len(block):
            raise Refused(
                "extract.trailing_data",
                "the archive holds data after tar's end-of-archive marker (hidden from tar, never checked)",
            )


def extract_tarball(path: Path, dest: Path, limits: ExtractLimits) -> ExtractStats:
    """Unpack `path` into the empty folder `dest`; raise Refused (nothing outside `dest` is ever touched)."""
    if not filters_available():
        raise Refused(
            "extract.python_too_old", "this Python has no tarfile extraction filters (needs 3.10.12+, 3.11.4+ or 3.12+)"
        )
    path, dest = Path(path), Path(dest)
    stats = ExtractStats(compressed_bytes=path.stat().st_size)
    _sniff(path)
    # gzip never shrinks data much below its size: a tarball this big cannot unpack within the limit.
    if stats.compressed_bytes > 1.02 * _BoundedReader.size_cap(limits) + (1 << 20):
        raise Refused(
            "extract.too_large",
            f"the tarball alone is {_mib(stats.compressed_bytes)}, more than it may "
            f"unpack to ({_mib(limits.max_total_bytes)}, limit max_total_bytes)",
        )
    gate = _MemberGate(limits, stats)
    try:
        with open(path, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            reader = _BoundedReader(gz, limits, stats.compressed_bytes, stats)
            with tarfile.open(
                fileobj=reader,
                mode="r|",
                tarinfo=_BoundedTarInfo,
                errorlevel=2,
                encoding="utf-8",
                errors="surrogateescape",
            ) as tar:
                tar.extractall(dest, filter=gate)
            _read_to_the_end(reader)
    except Refused:
        raise
    except EOFError as exc:
        raise Refused("extract.truncated", f"the archive is cut short ({exc})") from exc
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise Refused("extract.corrupt", f"the gzip stream is damaged ({exc}); `gzip -t` says the same") from exc
    except tarfile.ReadError as exc:
        text = str(exc)
        if "unexpected end" in text or "truncated" in text.lower() or "end of data" in text:
            raise Refused("extract.truncated", f"the archive is cut short ({text})") from exc
        raise Refused("extract.corrupt", f"not a readable tar archive ({text})") from exc
    except tarfile.TarError as exc:
        raise Refused("extract.corrupt", f"the tar archive is damaged ({exc})") from exc
    except OSError as exc:
        raise Refused("extract.io", f"cannot unpack ({exc.strerror or exc})") from exc
    except (ValueError, OverflowError, LookupError, TypeError) as exc:
        # tarfile parses header fields with int() and friends: a malformed field surfaces as one of these
        raise Refused("extract.corrupt", f"a tar header is malformed ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if stats.members == 0:
        raise Refused("extract.empty", "the archive holds no files")
    return stats


def check_tree_files(root: Path, limits: ExtractLimits) -> ExtractStats:
    """An already-extracted tree gets the same policy as a tarball: plain files and folders only, within the
    limits. A link could make the checker read (and the leaderboard show) files from outside the tree."""
    stats = ExtractStats()
    root = Path(root)
    for current, dirs, files in os.walk(root, followlinks=False):
        for name in sorted(dirs) + sorted(files):
            path = Path(current) / name
            rel = path.relative_to(root).as_posix()
            _check_text(rel, ascii(rel[:120]), "the tree's file")
            st = os.lstat(path)
            stats.members += 1
            if stats.members > limits.max_members:
                raise Refused(
                    "extract.too_many_members",
                    f"the tree holds more than {limits.max_members} files and folders (limit max_members)",
                )
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(path)
                resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target))
                outside = os.path.isabs(target) or resolved == ".." or resolved.startswith("../")
                where = "pointing outside the tree" if outside else "inside the tree"
                raise Refused(
                    "extract.link_outside" if outside else "extract.link",
                    f"{ascii(rel)} is a symbolic link {where} (to {target[:120]!r}); a submission holds "
                    "plain files only",
                )
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                raise Refused("extract.special_member", f"{ascii(rel)} is not a regular file or folder")
            stats.files += 1
            stats.unpacked_bytes += st.st_size
            if stats.unpacked_bytes > limits.max_total_bytes:
                raise Refused(
                    "extract.too_large",
                    f"the tree holds more than {_mib(limits.max_total_bytes)} (limit max_total_bytes)",
                )
    return stats


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every regular file under `root` (an extracted tarball), keyed by its path inside the archive."""
    out = {}
    root = Path(root)
    for current, _dirs, files in os.walk(root):
        for name in files:
            p = Path(current) / name
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(_CHUNK), b""):
                    h.update(block)
            out[p.relative_to(root).as_posix()] = h.hexdigest()
    return out
