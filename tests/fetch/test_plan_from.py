"""Air-gapped: `plan()` lists every URL, size and checksum; the files fetched elsewhere by that plan, copied into
<DIR>/<benchmark>/<kind>/<name>, install with `install_from()`; a corrupt or missing one is refused by name. The
plan and manifest readers never raise on bad bytes."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest
from fetch_standins import Repo, sha256
from hypothesis import given, settings
from hypothesis import strategies as st

from subtool.errors import SubtoolError
from subtool.fetch import api, store
from subtool.fetch.plan import read_plan
from subtool.mlperf.assets import Asset, AssetFile, HubFiles

DEV = os.urandom(50_000)
WEIGHTS = os.urandom(80_000)


def catalogue(file_server, hub_server) -> tuple[Asset, ...]:
    file_server.files["/squad/dev-v1.1.json"] = DEV
    hub_server.repos["org/tiny"] = Repo({"config.json": b"{}", "w.safetensors": WEIGHTS}, {"w.safetensors"})
    dev = AssetFile("dev-v1.1.json", file_server.url("/squad/dev-v1.1.json"), len(DEV), sha256=sha256(DEV))
    return (
        Asset("bert-99", "model", "ckpt", ".", "https://example.org/m", hub=HubFiles("org/tiny", "main")),
        Asset("bert-99", "dataset", "SQuAD", ".", "https://example.org/d", (dev,)),
    )


def fetch_by_plan(plan: dict, into) -> None:
    """What a laptop does with the plan: download each URL to its `path` under DIR, and keep the plan there."""
    for a in plan["assets"]:
        for f in a["files"]:
            target = into / f["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            with urllib.request.urlopen(f["url"]) as r:  # noqa: S310 - the test's own server
                target.write_bytes(r.read())
    (into / plan["benchmark"] / "plan.json").write_text(json.dumps(plan))


def test_the_plan_lists_every_url_size_and_checksum(file_server, hub_server):
    plan = api.plan("bert-99", assets=catalogue(file_server, hub_server))
    files = {f["path"]: f for a in plan["assets"] for f in a["files"]}
    assert set(files) == {"bert-99/model/config.json", "bert-99/model/w.safetensors", "bert-99/dataset/dev-v1.1.json"}
    assert files["bert-99/model/w.safetensors"]["sha256"] == sha256(WEIGHTS)
    assert files["bert-99/model/w.safetensors"]["url"].startswith(hub_server.endpoint + "/org/tiny/resolve/")
    assert files["bert-99/dataset/dev-v1.1.json"]["size"] == len(DEV)
    assert file_server.requests == []  # planning downloads nothing


def test_without_the_hub_the_plan_names_repo_revision_patterns_and_token(file_server, hub_server, monkeypatch):
    assets = catalogue(file_server, hub_server)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    hub = api.plan("bert-99", assets=assets)["assets"][0]["hub"]
    assert (hub["repo_id"], hub["revision"], hub["patterns"], hub["listed"]) == ("org/tiny", "main", ["*"], False)
    assert "fetch.hub_unreachable" in hub["problem"] and hub["token"]


def test_plan_then_from_round_trips_without_the_network(file_server, hub_server, tmp_path, monkeypatch):
    assets = catalogue(file_server, hub_server)
    fetch_by_plan(api.plan("bert-99", assets=assets), tmp_path / "carried")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the cluster reaches nothing
    before = len(file_server.requests)
    result = api.install_from("bert-99", tmp_path / "carried", assets=assets)
    assert [o.status for o in result.outcomes] == ["installed", "installed"]
    model = store.installed("bert-99", "model")
    assert (model.root / "w.safetensors").read_bytes() == WEIGHTS and model.revision == Repo({}, set()).commit
    assert {f.origin for f in model.files} == {"hub"}
    assert store.installed("bert-99", "dataset") is not None and len(file_server.requests) == before
    assert (tmp_path / "carried" / "bert-99" / "dataset" / "dev-v1.1.json").exists()  # copied, not taken


def test_a_corrupt_file_copied_in_is_refused_by_name_and_nothing_is_installed(file_server, hub_server, tmp_path):
    assets = catalogue(file_server, hub_server)
    fetch_by_plan(api.plan("bert-99", assets=assets), tmp_path / "carried")
    bad = tmp_path / "carried" / "bert-99" / "model" / "w.safetensors"
    bad.write_bytes(bytes(len(WEIGHTS)))
    with pytest.raises(SubtoolError) as err:
        api.install_from("bert-99", tmp_path / "carried", assets=assets)
    assert (err.value.rule, err.value.exit_code, err.value.path) == ("fetch.checksum", 2, str(bad))
    assert store.installed("bert-99", "model") is None


def test_a_missing_file_is_refused_by_name(file_server, hub_server, tmp_path):
    assets = catalogue(file_server, hub_server)
    fetch_by_plan(api.plan("bert-99", assets=assets), tmp_path / "carried")
    gone = tmp_path / "carried" / "bert-99" / "dataset" / "dev-v1.1.json"
    gone.unlink()
    with pytest.raises(SubtoolError) as err:
        api.install_from("bert-99", tmp_path / "carried", kinds=("dataset",), assets=assets)
    assert (err.value.rule, err.value.path) == ("fetch.from_missing", str(gone))


def test_hub_files_without_a_plan_are_refused_with_the_command_that_makes_one(file_server, hub_server, tmp_path):
    assets = catalogue(file_server, hub_server)
    fetch_by_plan(api.plan("bert-99", assets=assets), tmp_path / "carried")
    (tmp_path / "carried" / "bert-99" / "plan.json").unlink()
    with pytest.raises(SubtoolError) as err:
        api.install_from("bert-99", tmp_path / "carried", kinds=("model",), assets=assets)
    assert err.value.rule == "fetch.plan" and "--plan --json" in err.value.message


def test_a_plan_that_lies_about_a_name_is_not_read(file_server, hub_server):
    plan = api.plan("bert-99", assets=catalogue(file_server, hub_server))
    plan["assets"][0]["files"][0]["name"] = "../../outside"
    assert read_plan(json.dumps(plan).encode()) is None
    good = api.plan("bert-99", assets=catalogue(file_server, hub_server))
    assert len(read_plan(json.dumps(good).encode())[("bert-99", "model")].sources) == 2


def test_a_plan_of_another_repository_or_revision_is_refused(file_server, hub_server, tmp_path):
    assets = catalogue(file_server, hub_server)
    plan = api.plan("bert-99", assets=assets)
    fetch_by_plan(plan, tmp_path / "carried")
    plan["assets"][0]["hub"]["revision"] = "v0-older"
    (tmp_path / "carried" / "bert-99" / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(SubtoolError, match="org/tiny@v0-older") as err:
        api.install_from("bert-99", tmp_path / "carried", kinds=("model",), assets=assets)
    assert err.value.rule == "fetch.plan" and store.installed("bert-99", "model") is None


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)


def _near_plan(files, hub) -> bytes:
    asset = {"benchmark": "b", "kind": "model", "hub": hub, "files": files}
    return json.dumps({"format": 1, "kind": "subtool-fetch-plan", "assets": [asset]}).encode()


_file = st.fixed_dictionaries(
    {"name": st.text(max_size=8), "url": st.text(max_size=8), "origin": st.just("hub")},
    optional={"size": _json, "sha256": st.just("a" * 64) | _json, "blob_id": _json},
)
_hub = st.just({"repo_id": "o/r", "revision": "main", "commit": "c"}) | st.dictionaries(st.text(max_size=8), _json)
_plans = st.builds(_near_plan, st.lists(_file | _json, max_size=3), _hub)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=300) | _json.map(lambda v: json.dumps(v).encode()) | _plans)
def test_the_plan_reader_never_raises(data):
    result = read_plan(data)
    assert result is None or isinstance(result, dict)


@settings(max_examples=150, deadline=None)
@given(value=_json, raw=st.binary(max_size=200))
def test_the_manifest_reader_never_raises(tmp_path_factory, value, raw):
    root = tmp_path_factory.mktemp("m") / "assets" / "b" / "model"
    root.mkdir(parents=True)
    near = {"format": 1, "benchmark": "b", "kind": "model", "run_path": ".", "files": value}
    for data in (raw, json.dumps(value).encode(), json.dumps(near).encode()):
        (root / "MANIFEST.json").write_bytes(data)
        found = store.installed("b", "model", cache=root.parent.parent.parent)
        assert found is None or isinstance(found, store.Installed)
        assert store.read_manifest(root) is None or isinstance(store.read_manifest(root), dict)
