"""Edges of the cache reader (subtool/fetch/store.py): a manifest is trusted only when it is fetch's own, for this
benchmark and kind, and names files that are inside the asset folder and there; anything else is "not installed"
(never a path outside the cache handed to `run`)."""

from __future__ import annotations

import hashlib
import json

import pytest

from subtool.fetch import store

DATA = b"weights" * 10


def _install(cache, **changes) -> dict:
    """bert-99's model folder with one file and a manifest of format 1, changed by `changes` (None: key dropped)."""
    root = store.asset_dir("bert-99", "model", cache)
    (root / "model").mkdir(parents=True)
    (root / "model" / "w.bin").write_bytes(DATA)
    entry = {"name": "model/w.bin", "size": len(DATA), "sha256": hashlib.sha256(DATA).hexdigest(), "origin": "official"}
    record = {
        "format": 1,
        "benchmark": "bert-99",
        "kind": "model",
        "run_path": "model",
        "document": "https://example.org/doc",
        "revision": None,
        "installed_at": "2026-01-01T00:00:00+00:00",
        "files": [entry],
    }
    record.update(changes)
    (root / store.MANIFEST).write_text(json.dumps({k: v for k, v in record.items() if v is not None}))
    return record


def test_the_manifest_as_fetch_writes_it_is_installed(tmp_path):
    _install(tmp_path)
    found = store.installed("bert-99", "model", cache=tmp_path)
    assert found is not None and found.run_path == found.root / "model"


@pytest.mark.parametrize(
    "changes",
    [
        {"format": 2},
        {"benchmark": "bert-99.9"},
        {"kind": "dataset"},
        {"files": []},
        {"run_path": "../../.."},
    ],
    ids=["other-format", "other-benchmark", "other-kind", "no-files", "run-path-outside"],
)
def test_a_manifest_that_is_not_this_assets_is_not_installed(tmp_path, changes):
    _install(tmp_path, **changes)
    assert store.installed("bert-99", "model", cache=tmp_path) is None


def test_a_manifest_naming_a_file_outside_the_folder_is_not_installed(tmp_path):
    record = _install(tmp_path)
    outside = tmp_path / "assets" / "bert-99" / "elsewhere.bin"
    outside.write_bytes(DATA)
    entry = {**record["files"][0], "name": "../elsewhere.bin"}
    (store.asset_dir("bert-99", "model", tmp_path) / store.MANIFEST).write_text(
        json.dumps({**record, "files": [entry]})
    )
    assert store.installed("bert-99", "model", cache=tmp_path) is None


def test_a_manifest_larger_than_any_fetch_writes_is_not_read(tmp_path):
    record = _install(tmp_path)
    padded = {**record, "padding": "x" * (4 << 20)}
    (store.asset_dir("bert-99", "model", tmp_path) / store.MANIFEST).write_text(json.dumps(padded))
    assert store.read_manifest(store.asset_dir("bert-99", "model", tmp_path)) is None
    assert store.installed("bert-99", "model", cache=tmp_path) is None


def test_a_file_of_another_size_than_recorded_is_not_installed(tmp_path):
    _install(tmp_path)
    (store.asset_dir("bert-99", "model", tmp_path) / "model" / "w.bin").write_bytes(DATA + b"!")
    assert store.installed("bert-99", "model", cache=tmp_path) is None
