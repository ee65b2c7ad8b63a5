"""Hostile tarballs, as a stranger could hand them in: a real team's members plus one bad member (or a broken
file), so that the bad member is the only reason to refuse it. Also a snapshot of a folder, to prove that
nothing outside the scratch folder was touched.
"""

from __future__ import annotations

import bz2
import copy
import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path


def _members(good: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(good, "r:gz") as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]


def _write(dest: Path, members, *, compress=True, fmt=tarfile.PAX_FORMAT) -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    dest.write_bytes(gzip.compress(raw.getvalue(), mtime=0) if compress else raw.getvalue())
    return dest


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    return info, data


def _special(name: str, kind: bytes, linkname: str = "", **attrs) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, None


def _renamed(base, old: str, new: str):
    out = []
    for info, data in base:
        info = copy.copy(info)
        info.name = info.name.replace(old, new)
        out.append((info, data))
    return out


def damaged_gzip(good: Path, dest: Path) -> Path:
    """One digit of the team's result changed inside the compressed stream, gzip's CRC32 trailer left as it was:
    what a flipped bit on disk or an edit with a hex editor gives (`gzip -t` says "crc error")."""
    packed = good.read_bytes()
    tar_bytes = gzip.decompress(packed)
    marker = b'"result_samples_per_second", "value": '
    at = tar_bytes.index(marker) + len(marker)
    digit = tar_bytes[at : at + 1]
    changed = tar_bytes[:at] + (b"9" if digit != b"9" else b"8") + tar_bytes[at + 1 :]
    body = gzip.compress(changed, mtime=0)
    dest.write_bytes(body[:-8] + packed[-8:])  # the new stream, the old CRC32 and length
    return dest


def sparse_member(name: str, real_size: int) -> tuple[tarfile.TarInfo, bytes]:
    """A GNU sparse (PAX 1.0) member of one data byte whose header declares `real_size` bytes: tarfile would
    write all of them (holes as zeros) when it extracts it."""
    body = b"1\n0\n1\n".ljust(512, b"\0") + b"x"
    info = tarfile.TarInfo(name + ".sparse")
    info.size = len(body)
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": name,
        "GNU.sparse.realsize": str(real_size),
    }
    return info, body


def build(case: str, good: Path, dest: Path, sandbox: Path) -> Path:
    """Write the hostile tarball `case` (see CASES) to `dest`; absolute targets point into `sandbox`."""
    base = _members(good)
    team = next(m.name.split("/")[1] for m, _ in base if m.name.count("/") >= 1)
    evil = f"open/{team}/results/evil"
    if case == "absolute_path":
        return _write(dest, base + [_file(str(sandbox / "abs-target.txt"), b"pwned\n")])
    if case == "traversal":
        return _write(dest, base + [_file(f"open/{team}/" + "../" * 7 + "escape-traversal.txt", b"pwned\n")])
    if case == "traversal_shallow":
        return _write(dest, base + [_file("../escape-shallow.txt", b"pwned\n")])
    if case == "symlink_outside":
        return _write(
            dest,
            base
            + [
                _special(f"{evil}", tarfile.SYMTYPE, str(sandbox / "outside-dir")),
                _file(f"{evil}/pwned.txt", b"pwned\n"),
            ],
        )
    if case == "symlink_relative_outside":
        return _write(
            dest, base + [_special(f"{evil}", tarfile.SYMTYPE, "../" * 8), _file(f"{evil}/pwned-rel.txt", b"pwned\n")]
        )
    if case == "symlink_inside":
        return _write(dest, base + [_special(f"{evil}", tarfile.SYMTYPE, "../systems")])
    if case == "hardlink_outside":
        return _write(dest, base + [_special(f"{evil}", tarfile.LNKTYPE, "/etc/passwd")])
    if case == "hardlink_traversal":
        return _write(dest, base + [_special(f"{evil}", tarfile.LNKTYPE, "../" * 6 + "outside.txt")])
    if case == "char_device":
        return _write(dest, base + [_special(f"{evil}", tarfile.CHRTYPE, devmajor=1, devminor=3)])
    if case == "fifo":
        return _write(dest, base + [_special(f"{evil}", tarfile.FIFOTYPE)])
    if case == "duplicate":
        first = [m for m, d in base if m.isfile()][0]
        return _write(dest, base + [_file(first.name, b"replaced after the first copy was checked\n")])
    if case == "too_many_members":
        return _write(dest, base + [_file(f"{evil}/f{i:04d}.txt", b"x") for i in range(400)])
    if case == "too_large":
        return _write(dest, base + [_file(f"{evil}/noise.bin", os.urandom(5 << 20))])
    if case == "ratio_bomb":
        return _write(dest, base + [_file(f"{evil}/zeros.bin", bytes(3 << 20))])
    if case == "huge_pax_header":
        info, data = _file(f"{evil}/x.txt", b"x")
        info.pax_headers = {"comment": "A" * (2 << 20)}
        return _write(dest, base + [(info, data)])
    if case == "plain_tar":
        return _write(dest, base, compress=False)
    if case == "bzip2":
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            for info, data in base:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        dest.write_bytes(bz2.compress(raw.getvalue()))
        return dest
    if case == "garbage":
        dest.write_bytes(hashlib.sha256(b"seed").digest() * 64)
        return dest
    if case == "truncated":
        data = good.read_bytes()
        dest.write_bytes(data[: len(data) * 3 // 5])
        return dest
    if case == "crc_flipped":
        return damaged_gzip(good, dest)
    if case == "cut_6_bytes":
        dest.write_bytes(good.read_bytes()[:-6])
        return dest
    if case == "trailing_garbage":
        dest.write_bytes(good.read_bytes() + b"this is not gzip")
        return dest
    if case == "data_after_tar_end":
        tar_bytes = gzip.decompress(good.read_bytes())
        dest.write_bytes(gzip.compress(tar_bytes + b"hidden from tar".ljust(512, b"\0"), mtime=0))
        return dest
    if case == "non_utf8_name":  # the system folder's name is not UTF-8 (bytes 0xff 0xfe)
        return _write(dest, _renamed(base, "/cluster", "/clu\udcff\udcfester"), fmt=tarfile.GNU_FORMAT)
    if case == "control_char_name":
        return _write(dest, _renamed(base, "/cluster", "/clu\x1b[31mster"))
    if case == "sparse_2gib":
        return _write(dest, base + [sparse_member(f"{evil}/big.bin", 2 << 30)])
    if case == "no_tree":
        return _write(dest, [_file("notes/readme.txt", b"hello\n")])
    if case == "empty_archive":
        return _write(dest, [])
    raise KeyError(case)


# case → the rule the scorer must refuse it with (limits: HOSTILE_LIMITS)
CASES = {
    "absolute_path": "extract.absolute_path",
    "traversal": "extract.path_traversal",
    "traversal_shallow": "extract.path_traversal",
    "symlink_outside": "extract.link_outside",
    "symlink_relative_outside": "extract.link_outside",
    "symlink_inside": "extract.link",
    "hardlink_outside": "extract.link_outside",
    "hardlink_traversal": "extract.link_outside",
    "char_device": "extract.special_member",
    "fifo": "extract.special_member",
    "duplicate": "extract.duplicate_member",
    "too_many_members": "extract.too_many_members",
    "too_large": "extract.too_large",
    "ratio_bomb": "extract.ratio",
    "huge_pax_header": "extract.header_too_large",
    "plain_tar": "extract.not_gzip",
    "bzip2": "extract.not_gzip",
    "garbage": "extract.not_gzip",
    "truncated": "extract.truncated",
    "crc_flipped": "extract.corrupt",
    "cut_6_bytes": "extract.truncated",
    "trailing_garbage": "extract.corrupt",
    "data_after_tar_end": "extract.trailing_data",
    "non_utf8_name": "extract.name_not_utf8",
    "control_char_name": "extract.bad_name",
    "sparse_2gib": "extract.too_large",
    "no_tree": "extract.no_tree",
    "empty_archive": "extract.empty",
}
# Tight enough for the cases above, loose enough for a real team's tarball (~40 members, ~0.5 MB, ratio ~3).
HOSTILE_LIMITS = {"max_members": 200, "max_total_bytes": 4 << 20, "max_ratio": 8, "ratio_grace_bytes": 1 << 20}
# Paths a successful attack would create (relative to the sandbox).
ESCAPE_TARGETS = (
    "abs-target.txt",
    "escape-traversal.txt",
    "escape-shallow.txt",
    "outside-dir/pwned.txt",
    "outside.txt",
    "pwned-rel.txt",
)


def snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple]:
    """Every path under `root` (links not followed) with its type, size and content hash; `skip` left out."""
    snap = {}
    for current, dirs, files in os.walk(root, followlinks=False):
        here = Path(current)
        dirs[:] = [d for d in dirs if skip is None or here / d != skip]
        for name in dirs + files:
            p = here / name
            st = os.lstat(p)
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else ""
            snap[p.relative_to(root).as_posix()] = (stat.S_IFMT(st.st_mode), st.st_size, digest)
    return snap
