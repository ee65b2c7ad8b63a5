"""Edges of fetch's entry points (subtool/fetch/api.py, plan.identity): an installed copy is "the same" only when
the catalogue still names the same bytes; a checksum changed in the catalogue means a new download."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from fetch_standins import Repo, sha256

from subtool.errors import SubtoolError
from subtool.fetch import api, store
from subtool.fetch.http import Settings
from subtool.fetch.plan import identity
from subtool.mlperf.assets import Asset, AssetFile, HubFiles

FAST = Settings(retries=1, backoff=0.0, timeout=(5, 5))


def _asset(server, data: bytes) -> Asset:
    f = AssetFile("dev.json", server.url("/d/dev.json"), len(data), sha256=sha256(data))
    return Asset("bert-99", "dataset", "data", ".", "https://example.org/doc", (f,))


def _fetch(asset: Asset):
    return api.fetch(asset.benchmark, kinds=(asset.kind,), assets=(asset,), settings=FAST)


def test_a_checksum_changed_in_the_catalogue_means_a_new_download(file_server):
    old, new = os.urandom(3000), os.urandom(3000)  # same URL, same size: only the checksum tells them apart
    file_server.files["/d/dev.json"] = old
    _fetch(_asset(file_server, old))
    file_server.files["/d/dev.json"] = new
    result = _fetch(_asset(file_server, new))
    assert result.outcomes[0].status == "installed"
    assert (store.installed("bert-99", "dataset").root / "dev.json").read_bytes() == new
    assert _fetch(_asset(file_server, new)).outcomes[0].status == "already installed"


def test_a_revision_changed_in_the_catalogue_means_a_new_install(hub_server):
    hub_server.repos["org/tiny"] = Repo({"config.json": b"{}"}, set())
    asset = Asset("bert-99", "model", "ckpt", ".", "https://example.org/m", hub=HubFiles("org/tiny", "main"))
    _fetch(asset)
    pinned = Asset(
        "bert-99", "model", "ckpt", ".", "https://example.org/m", hub=HubFiles("org/tiny", Repo({}, set()).commit)
    )
    assert _fetch(pinned).outcomes[0].status == "installed"  # another source, even where it resolves alike
    assert _fetch(pinned).outcomes[0].status == "already installed"


def test_a_plan_made_where_the_hub_did_not_answer_still_installs_the_plain_files(
    file_server, hub_server, tmp_path, monkeypatch
):
    import json
    import urllib.request

    data = os.urandom(2000)
    file_server.files["/d/dev.json"] = data
    hub_server.repos["org/tiny"] = Repo({"config.json": b"{}"}, set())
    assets = (
        Asset("bert-99", "model", "ckpt", ".", "https://example.org/m", hub=HubFiles("org/tiny", "main")),
        _asset(file_server, data),
    )
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the plan is made where the Hub does not answer
    plan = api.plan("bert-99", assets=assets)
    assert plan["assets"][0]["hub"]["listed"] is False
    carried = tmp_path / "carried"
    (carried / "bert-99" / "dataset").mkdir(parents=True)
    with urllib.request.urlopen(file_server.url("/d/dev.json")) as r:  # noqa: S310 - the test's own server
        (carried / "bert-99" / "dataset" / "dev.json").write_bytes(r.read())
    (carried / "bert-99" / "plan.json").write_text(json.dumps(plan))
    result = api.install_from("bert-99", carried, kinds=("dataset",), assets=assets)
    assert [o.status for o in result.outcomes] == ["installed"]
    with pytest.raises(SubtoolError) as err:  # the Hub's files: the plan has no checksums for them
        api.install_from("bert-99", carried, kinds=("model",), assets=assets)
    assert err.value.rule == "fetch.plan" and "--plan --json" in err.value.message


def test_a_plan_listing_a_hub_file_outside_the_catalogues_patterns_is_refused(file_server, hub_server, tmp_path):
    import json

    hub_server.repos["org/tiny"] = Repo({"config.json": b"{}", "original/consolidated.pth": b"pickle"}, set())
    asset = Asset(
        "bert-99", "model", "ckpt", ".", "https://example.org/m", hub=HubFiles("org/tiny", "main", ("*.json",))
    )
    wide = Asset("bert-99", "model", "ckpt", ".", "https://example.org/m", hub=HubFiles("org/tiny", "main", ("*",)))
    plan = api.plan("bert-99", assets=(wide,))  # made with other patterns: it lists the .pth as well
    carried = tmp_path / "carried"
    (carried / "bert-99" / "model" / "original").mkdir(parents=True)
    (carried / "bert-99" / "model" / "config.json").write_bytes(b"{}")
    (carried / "bert-99" / "model" / "original" / "consolidated.pth").write_bytes(b"pickle")
    (carried / "bert-99" / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(SubtoolError) as err:
        api.install_from("bert-99", carried, kinds=("model",), assets=(asset,))
    assert err.value.rule == "fetch.plan" and "original/consolidated.pth" in err.value.message
    assert store.installed("bert-99", "model") is None


def test_a_plan_json_that_is_not_a_plan_is_refused_even_for_plain_files(file_server, tmp_path):
    data = os.urandom(1000)
    file_server.files["/d/dev.json"] = data
    carried = tmp_path / "carried"
    (carried / "bert-99" / "dataset").mkdir(parents=True)
    (carried / "bert-99" / "dataset" / "dev.json").write_bytes(data)
    (carried / "bert-99" / "plan.json").write_text('{"not": "a plan"}')
    with pytest.raises(SubtoolError) as err:
        api.install_from("bert-99", carried, kinds=("dataset",), assets=(_asset(file_server, data),))
    assert err.value.rule == "fetch.plan" and "not a plan" in err.value.message
    assert store.installed("bert-99", "dataset") is None


def test_verify_hashes_a_twins_files_before_they_are_linked_in(file_server):
    data = os.urandom(3000)
    file_server.files["/d/dev.json"] = data
    first = _asset(file_server, data)
    twin = Asset("bert-99.9", first.kind, first.form, first.run_path, first.document, first.files)
    _fetch(first)
    installed = store.installed("bert-99", "dataset").root / "dev.json"
    st = installed.stat()
    with open(installed, "r+b") as fh:  # a byte changed in place, its time set back: only hashing finds it
        fh.write(bytes([data[0] ^ 0xFF]))  # another byte whatever the random data held there
    os.utime(installed, ns=(st.st_atime_ns, st.st_mtime_ns))
    gets = len(file_server.gets("/d/dev.json"))
    api.fetch("bert-99.9", kinds=("dataset",), assets=(first, twin), settings=FAST, verify=True)
    assert (store.installed("bert-99.9", "dataset").root / "dev.json").read_bytes() == data
    assert len(file_server.gets("/d/dev.json")) == gets + 1  # downloaded, not linked from the damaged copy


def _plant(root: Path, benchmark: str, asset: Asset, payload: bytes, owner: int | None = None) -> Path:
    """A folder beside the real installs holding `payload` under a forged manifest: the asset's source, and the
    size, time and inode of the planted file, so that nothing but its owner and its name gives it away."""
    folder = store.asset_dir(benchmark, asset.kind, root)
    folder.mkdir(parents=True)
    name = asset.files[0].name
    (folder / name).write_bytes(payload)
    st = (folder / name).stat()
    entry = {"name": name, "size": st.st_size, "sha256": hashlib.sha256(payload).hexdigest()}
    entry |= {"origin": "official", "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}
    record = {"format": 1, "benchmark": benchmark, "kind": asset.kind, "run_path": asset.run_path}
    record |= {"document": asset.document, "revision": None, "installed_at": "2026-01-01T00:00:00+00:00"}
    (folder / store.MANIFEST).write_text(json.dumps({**record, "files": [entry], "source": identity(asset)}))
    if owner is not None:
        for path in (folder, folder / name, folder / store.MANIFEST):
            os.chown(path, owner, owner)
    return folder


def test_a_planted_folder_that_is_no_catalogue_twin_is_never_linked_in(file_server):
    data = os.urandom(3000)
    file_server.files["/d/dev.json"] = data
    asset = _asset(file_server, data)
    root = store.cache_root()
    _plant(root, "zzz-planted", asset, b"EVIL PAYLOAD")
    _fetch(asset)
    assert (store.installed("bert-99", "dataset").root / "dev.json").read_bytes() == data
    assert len(file_server.gets("/d/dev.json")) == 1  # downloaded, not linked from the planted folder


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder another user owns needs root")
def test_a_twin_another_user_owns_is_downloaded_again_not_linked_in(file_server):
    """In a shared cache bert-99.9's folder may be someone else's: a hard link to their file would let them
    change bert-99's copy later."""
    data = os.urandom(3000)
    file_server.files["/d/dev.json"] = data
    first = _asset(file_server, data)
    twin = Asset("bert-99.9", first.kind, first.form, first.run_path, first.document, first.files)
    _plant(store.cache_root(), "bert-99.9", twin, b"EVIL PAYLOAD", owner=4242)
    api.fetch("bert-99", kinds=("dataset",), assets=(first, twin), settings=FAST)
    assert (store.installed("bert-99", "dataset").root / "dev.json").read_bytes() == data
    assert len(file_server.gets("/d/dev.json")) == 1
