"""`subtool fetch MODEL --to DIR` installs outside the cache; `subtool run --assets DIR` reads the files from there
(the real fetch through --from, the real run), and --assets naming a folder without them is one error, never the
demo."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from typer.testing import CliRunner

from subtool.cli import app
from subtool.mlperf import assets as catalogue
from subtool.mlperf.assets import Asset, AssetFile


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def copied_in(tmp_path, monkeypatch, tiny_checkpoint, small_squad):
    """The tiny checkpoint and SQuAD file as the catalogue's bert-99 files, copied by hand for `--from`."""
    src = tmp_path / "copied"
    shutil.copytree(tiny_checkpoint, src / "bert-99" / "model")
    (src / "bert-99" / "dataset").mkdir(parents=True)
    shutil.copyfile(small_squad, src / "bert-99" / "dataset" / "dev-v1.1.json")
    model_files = tuple(
        AssetFile(p.name, f"https://example.org/m/{p.name}", p.stat().st_size, sha256=_sha256(p))
        for p in sorted((src / "bert-99" / "model").iterdir())
    )
    data = src / "bert-99" / "dataset" / "dev-v1.1.json"
    made = (
        Asset("bert-99", "model", "ckpt", ".", "https://example.org/doc", model_files),
        Asset(
            "bert-99",
            "dataset",
            "SQuAD",
            "dev-v1.1.json",
            "https://example.org/doc",
            (AssetFile("dev-v1.1.json", "https://example.org/d", data.stat().st_size, sha256=_sha256(data)),),
        ),
    )
    monkeypatch.setattr(catalogue, "ASSETS", made)
    monkeypatch.setenv("SUBTOOL_CACHE", str(tmp_path / "cache"))  # empty: nothing to find there
    return src


def test_fetch_to_then_run_with_assets_reads_the_files_from_there(copied_in, tmp_path):
    to = tmp_path / "scratch"
    res = CliRunner().invoke(app, ["fetch", "bert-99", "--from", str(copied_in), "--to", str(to)])
    assert res.exit_code == 0, res.output
    assert f"--assets {to}" in res.output  # fetch says how run finds it
    runs = tmp_path / "runs"
    res = CliRunner().invoke(app, ["run", "--mode", "accuracy", "--assets", str(to), "--out", str(runs)])
    assert res.exit_code == 0, res.output
    record = json.loads((runs / "bert-99/Offline/run.json").read_text())
    assert record["demo"] is False and record["dataset_path"] == str(to / "assets/bert-99/dataset/dev-v1.1.json")
    assert record["model_path"] == str(to / "assets/bert-99/model")
    assert {e["origin"] for e in record["assets"]} == {"official"}


def test_assets_without_the_files_is_one_error_never_the_demo(copied_in, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder, words in ((empty, "nothing fetched there for bert-99"), (tmp_path / "nope", "--assets does not exist")):
        res = CliRunner().invoke(app, ["run", "--mode", "accuracy", "--assets", str(folder), "--out", str(tmp_path)])
        assert res.exit_code == 2 and words in res.output and str(folder) in res.output, res.output
        assert not (tmp_path / "bert-99").exists()
    res = CliRunner().invoke(app, ["run", "--demo", "--assets", str(empty), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "drop --assets" in res.output, res.output
