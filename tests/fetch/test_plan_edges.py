"""Edges of the plan reader and the mirror (subtool/fetch/plan.py, names.py): an entry whose size or checksum is
not what fetch writes makes the whole plan unread; a mirror keeps the original's query; a base URL with a space
is refused before it is used."""

from __future__ import annotations

import json

import pytest

from subtool.errors import SubtoolError
from subtool.fetch import api
from subtool.fetch.plan import read_plan
from subtool.mlperf.assets import Asset, AssetFile

SHA = "ab" * 32
BLOB = "cd" * 20


def _plan(**entry) -> bytes:
    base = {"name": "w.safetensors", "url": "http://hub.example/w", "size": 7, "sha256": SHA, "origin": "hub"}
    files = [{k: v for k, v in {**base, **entry}.items() if v is not ...}]
    hub = {"repo_id": "org/tiny", "revision": "main", "commit": "0" * 40}
    asset = {"benchmark": "bert-99", "kind": "model", "hub": hub, "files": files}
    return json.dumps({"format": 1, "kind": "subtool-fetch-plan", "assets": [asset]}).encode()


def test_the_plan_entry_as_fetch_writes_it_reads():
    found = read_plan(_plan())
    assert found is not None and found[("bert-99", "model")].sources[0].sha256 == SHA
    assert read_plan(_plan(sha256=None, blob_id=BLOB))[("bert-99", "model")].sources[0].blob_id == BLOB


@pytest.mark.parametrize(
    "entry",
    [
        {"size": -1},
        {"size": True},
        {"size": "7"},
        {"sha256": "XY" * 32},  # not lowercase hex
        {"sha256": SHA + "00"},  # too long
        {"sha256": 12345},
        {"sha256": None, "blob_id": "zz" * 20},
        {"sha256": None},  # no checksum at all
        {"sha256": ...},
    ],
    ids=["negative-size", "bool-size", "text-size", "not-hex", "too-long", "number", "bad-blob", "none", "missing"],
)
def test_a_plan_entry_with_a_bad_size_or_checksum_makes_the_plan_unread(entry):
    assert read_plan(_plan(**entry)) is None


def test_a_file_that_is_not_a_plan_is_not_read_as_one():
    doc = json.loads(_plan())
    doc["kind"] = "subtool-something-else"
    assert read_plan(json.dumps(doc).encode()) is None


def test_a_mirror_keeps_the_query_of_the_original_url():
    f = AssetFile("dev.json", "https://data.example.org/squad/dev.json?download=true", 10, sha256=SHA)
    asset = Asset("bert-99", "dataset", "SQuAD", ".", "https://example.org/doc", (f,))
    plan = api.plan("bert-99", kinds=("dataset",), mirror="http://mirror.internal/m/", assets=(asset,))
    url = plan["assets"][0]["files"][0]["url"]
    assert url == "http://mirror.internal/m/data.example.org/squad/dev.json?download=true"


@pytest.mark.parametrize("mirror", ["http://mirror.internal/a b", "http://mirror.internal/a\x7fb"])
def test_a_mirror_with_a_space_or_a_control_character_is_refused(mirror):
    f = AssetFile("dev.json", "https://data.example.org/squad/dev.json", 10, sha256=SHA)
    asset = Asset("bert-99", "dataset", "SQuAD", ".", "https://example.org/doc", (f,))
    with pytest.raises(SubtoolError) as err:
        api.plan("bert-99", kinds=("dataset",), mirror=mirror, assets=(asset,))
    assert (err.value.rule, err.value.exit_code) == ("fetch.mirror", 2) and "space or a control" in err.value.message
