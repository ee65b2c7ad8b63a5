"""Edges of archive unpacking (subtool/fetch/unpack.py) that the download tests leave open: a drive-letter name,
a link that stays inside the folder, a hard link, a zip member recorded as a link, member counts and byte caps
summed over members (not per member, not per block)."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from subtool.errors import SubtoolError
from subtool.fetch import unpack as unpack_mod
from subtool.fetch.unpack import unpack

MIB = 1 << 20


def _tar(path, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for info in members:
            body = (data or {}).get(info.name)
            if body is not None:
                info.size = len(body)
            tar.addfile(info, io.BytesIO(body) if body is not None else None)


def _file(name: str, body: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(body)
    return info, body


def _tar_files(path, files: dict[str, bytes]) -> None:
    infos = [tarfile.TarInfo(name) for name in files]
    _tar(path, infos, files)


def _zip_files(path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, body in files.items():
            zf.writestr(name, body)


def _refused(archive, kind, out, match: str) -> SubtoolError:
    with pytest.raises(SubtoolError, match=match) as err:
        unpack(archive, kind, out)
    assert err.value.rule == "fetch.unsafe_archive" and err.value.path == archive.name
    return err.value


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_a_member_named_with_a_drive_letter_is_refused(tmp_path, kind):
    archive = tmp_path / f"a.{kind}"
    (_tar_files if kind == "tar.gz" else _zip_files)(archive, {"C:evil.txt": b"x"})
    _refused(archive, kind, tmp_path / "out", "outside the asset folder")


@pytest.mark.parametrize("linktype", [tarfile.SYMTYPE, tarfile.LNKTYPE], ids=["symlink", "hardlink"])
def test_a_tar_link_that_stays_inside_the_folder_is_still_refused(tmp_path, linktype):
    """tarfile's data filter lets a relative link inside the folder through: subtool refuses every link itself."""
    archive = tmp_path / "a.tar.gz"
    link = tarfile.TarInfo("model/alias.bin")
    link.type, link.linkname = linktype, ("weights.bin" if linktype == tarfile.SYMTYPE else "model/weights.bin")
    weights = tarfile.TarInfo("model/weights.bin")
    _tar(archive, [weights, link], {"model/weights.bin": b"w" * 10})
    _refused(archive, "tar.gz", tmp_path / "out", "is a link or a device")
    assert not (tmp_path / "out" / "model" / "alias.bin").exists()
    assert not (tmp_path / "out" / "model" / "alias.bin").is_symlink()


def test_a_tar_fifo_is_refused(tmp_path):
    archive = tmp_path / "a.tar.gz"
    fifo = tarfile.TarInfo("model/pipe")
    fifo.type = tarfile.FIFOTYPE
    _tar(archive, [fifo])
    _refused(archive, "tar.gz", tmp_path / "out", "is a link or a device")


def test_a_zip_member_recorded_as_a_symbolic_link_is_refused(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("model/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    _refused(archive, "zip", tmp_path / "out", "is a link or a device")
    assert not (tmp_path / "out" / "model" / "link").exists()


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_more_members_than_the_limit_are_refused(tmp_path, kind, monkeypatch):
    monkeypatch.setattr(unpack_mod, "MAX_MEMBERS", 3)
    archive = tmp_path / f"a.{kind}"
    files = {f"m/{i}.txt": b"x" for i in range(4)}
    (_tar_files if kind == "tar.gz" else _zip_files)(archive, files)
    _refused(archive, kind, tmp_path / "out", "more than 3 members")
    ok = tmp_path / f"ok.{kind}"
    (_tar_files if kind == "tar.gz" else _zip_files)(ok, dict(list(files.items())[:3]))
    assert len(unpack(ok, kind, tmp_path / "ok")) == 3


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_the_byte_cap_counts_every_member_together(tmp_path, kind):
    """Three members each under the cap, together over it: refused (one member at a time would let any total in)."""
    archive = tmp_path / f"a.{kind}"
    (_tar_files if kind == "tar.gz" else _zip_files)(archive, {f"m/{i}.bin": bytes(400) for i in range(3)})
    with pytest.raises(SubtoolError, match="more than 1000 bytes") as err:
        unpack(archive, kind, tmp_path / "out", cap=1000)
    assert err.value.rule == "fetch.unsafe_archive"
    assert unpack(archive, kind, tmp_path / "out2", cap=1200) == [Path(f"m/{i}.bin") for i in range(3)]


@pytest.mark.parametrize("kind", ["zip", "gz"])
def test_the_byte_cap_counts_every_block_of_one_member(tmp_path, kind):
    """A member of several 1 MiB blocks, each under the cap, is counted whole."""
    import gzip

    archive = tmp_path / f"a.{kind}"
    if kind == "zip":
        _zip_files(archive, {"zeros.bin": bytes(3 * MIB)})
    else:
        archive.write_bytes(gzip.compress(bytes(3 * MIB)))
    with pytest.raises(SubtoolError, match="unpacks to more than") as err:
        unpack(archive, kind, tmp_path / "out", cap=2 * MIB)
    assert err.value.rule == "fetch.unsafe_archive"


def test_an_unknown_archive_kind_is_refused_not_installed_empty(tmp_path):
    archive = tmp_path / "a.rar"
    archive.write_bytes(b"Rar!")
    with pytest.raises(SubtoolError, match="unknown archive kind") as err:
        unpack(archive, "rar", tmp_path / "out")
    assert err.value.rule == "fetch.unsafe_archive"


def test_a_tar_member_loses_its_setuid_bit_and_the_write_bit_of_others(tmp_path):
    archive = tmp_path / "a.tar.gz"
    info = tarfile.TarInfo("bin/tool")
    info.mode = 0o6777
    _tar(archive, [info], {"bin/tool": b"#!/bin/sh\n"})
    unpack(archive, "tar.gz", tmp_path / "out")
    mode = (tmp_path / "out" / "bin" / "tool").stat().st_mode
    assert mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH | stat.S_IWGRP) == 0


def test_every_file_a_tar_unpack_names_is_there(tmp_path):
    """A member named with a backslash is extracted under the name that was checked (the one returned): the install
    hashes what unpack names, and a FileNotFoundError used to escape."""
    archive = tmp_path / "a.tar.gz"
    _tar_files(archive, {"model\\weights.bin": b"w" * 10})
    made = unpack(archive, "tar.gz", tmp_path / "out")
    assert made and all((tmp_path / "out" / p).is_file() for p in made)
