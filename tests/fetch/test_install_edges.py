"""Edges of staging and verification (subtool/fetch/install.py): what an earlier, interrupted fetch left in the
staging folder is checked again, never trusted; a staging folder reached through a link, or not the user's, is
refused."""

from __future__ import annotations

import os

import pytest
from fetch_standins import sha256

from subtool.errors import SubtoolError
from subtool.fetch import api, store
from subtool.fetch.http import Settings
from subtool.fetch.install import staging_dir
from subtool.mlperf.assets import Asset, AssetFile

FAST = Settings(retries=1, backoff=0.0, timeout=(5, 5))
DATA = os.urandom(4000)


def _asset(server, **checksums) -> Asset:
    server.files["/d/dev.json"] = DATA
    f = AssetFile("dev.json", server.url("/d/dev.json"), len(DATA), **checksums)
    return Asset("bert-99", "dataset", "data", ".", "https://example.org/doc", (f,))


def _fetch(asset: Asset, **kw):
    return api.fetch(asset.benchmark, kinds=(asset.kind,), assets=(asset,), settings=FAST, **kw)


@pytest.mark.parametrize(
    ("checksums", "left"),
    [
        ({"sha256": sha256(DATA)}, b"x" * len(DATA)),  # the right size, other bytes
        ({"checksum_origin": "first-download"}, DATA[:100]),  # nothing to hash against: the size still counts
    ],
    ids=["official", "first-download"],
)
def test_a_file_left_verified_in_staging_is_checked_again_before_it_is_installed(
    file_server, own_cache, checksums, left
):
    asset = _asset(file_server, **checksums)
    files = staging_dir(own_cache, "bert-99", "dataset") / "files"
    files.mkdir(parents=True)
    (files / "dev.json").write_bytes(left)  # what an interrupted run (or someone) left there
    _fetch(asset)
    found = store.installed("bert-99", "dataset")
    assert (found.root / "dev.json").read_bytes() == DATA
    assert len(file_server.gets("/d/dev.json")) == 1  # downloaded again


def test_a_file_left_verified_in_staging_that_still_verifies_is_not_downloaded_again(file_server, own_cache):
    asset = _asset(file_server, sha256=sha256(DATA))
    files = staging_dir(own_cache, "bert-99", "dataset") / "files"
    files.mkdir(parents=True)
    (files / "dev.json").write_bytes(DATA)
    _fetch(asset)
    assert (store.installed("bert-99", "dataset").root / "dev.json").read_bytes() == DATA
    assert file_server.gets("/d/dev.json") == []


@pytest.mark.parametrize("where", [".staging", ".staging/bert-99"])
def test_a_staging_folder_reached_through_a_link_is_refused(file_server, tmp_path, where):
    victim = tmp_path / "victim"
    victim.mkdir()
    root = tmp_path / "shared"
    link = root / "assets" / where
    link.parent.mkdir(parents=True)
    link.symlink_to(victim)
    with pytest.raises(SubtoolError) as err:
        _fetch(_asset(file_server, sha256=sha256(DATA)), to=root)
    assert err.value.rule == "fetch.staging" and "symbolic link" in err.value.message
    assert list(victim.rglob("*")) == [] and file_server.requests == []


def test_a_staging_folder_of_another_user_is_refused(file_server, own_cache, monkeypatch):
    staging = staging_dir(own_cache, "bert-99", "dataset")
    staging.mkdir(parents=True)
    me = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: me + 1)  # the folders now belong to someone else
    with pytest.raises(SubtoolError) as err:
        _fetch(_asset(file_server, sha256=sha256(DATA)))
    assert err.value.rule == "fetch.staging" and f"uid {me}" in err.value.message
    assert file_server.requests == []


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def _with_archive(server, members: dict[str, bytes], plain: dict[str, bytes] | None = None) -> Asset:
    files = []
    for name, body in (plain or {}).items():
        server.files[f"/m/{name}"] = body
        files.append(AssetFile(name, server.url(f"/m/{name}"), len(body), sha256=sha256(body)))
    data = _tar_bytes(members)
    server.files["/m/bundle.tar.gz"] = data
    files.append(
        AssetFile("bundle.tar.gz", server.url("/m/bundle.tar.gz"), len(data), sha256=sha256(data), unpack="tar.gz")
    )
    return Asset("bert-99", "model", "ckpt", ".", "https://example.org/doc", tuple(files))


@pytest.mark.parametrize(
    ("members", "plain"),
    [
        ({"MANIFEST.json": b'{"format": 1}', "w.bin": b"w"}, None),  # would stand for the manifest fetch writes
        ({"config.json": b'{"b": 2}'}, {"config.json": b'{"a": 1}'}),  # an archive member and a plain file
    ],
    ids=["manifest", "two-files"],
)
def test_two_files_of_one_name_or_a_file_named_like_the_manifest_are_refused(file_server, members, plain):
    with pytest.raises(SubtoolError) as err:
        api.fetch("bert-99", kinds=("model",), assets=(_with_archive(file_server, members, plain),), settings=FAST)
    assert err.value.rule == "fetch.layout"
    assert store.installed("bert-99", "model") is None


def test_files_without_the_catalogues_run_path_are_not_installed(file_server):
    asset = _with_archive(file_server, {"weights/w.bin": b"w"})
    asset = Asset(asset.benchmark, asset.kind, asset.form, "model", asset.document, asset.files)  # no model/ in it
    with pytest.raises(SubtoolError) as err:
        api.fetch("bert-99", kinds=("model",), assets=(asset,), settings=FAST)
    assert err.value.rule == "fetch.run_path" and "'model'" in err.value.message
    assert store.installed("bert-99", "model") is None
    assert not store.asset_dir("bert-99", "model").exists()


def test_an_installed_archive_leaves_nothing_in_staging(file_server, own_cache):
    asset = _with_archive(file_server, {"model/w.bin": b"w" * 100})
    asset = Asset(asset.benchmark, asset.kind, asset.form, "model", asset.document, asset.files)
    api.fetch("bert-99", kinds=("model",), assets=(asset,), settings=FAST)
    assert (store.installed("bert-99", "model").run_path / "w.bin").read_bytes() == b"w" * 100
    assert not staging_dir(own_cache, "bert-99", "model").exists()  # nor the archive, which stays verified there
