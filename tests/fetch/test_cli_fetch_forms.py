"""The catalogue's less common forms through the real `subtool fetch` on the stand-in server: a single-file gzip
(the processed OpenOrca .pkl.gz, installed decompressed) and a file whose checksum is that of a blob at a pinned
git commit (checksum_origin "git-commit"); downloaded, then by --plan/--from, then in a run's README."""

from __future__ import annotations

import gzip
import json
import os

import pytest
from fetch_standins import md5, sha256
from typer.testing import CliRunner

from subtool.cli import app
from subtool.fetch import store
from subtool.mlperf import assets as catalogue
from subtool.mlperf.assets import Asset, AssetFile

PKL = os.urandom(20_000)
PKL_GZ = gzip.compress(PKL)
CONFIG = b'{"hidden_size": 64}\n'
runner = CliRunner()


@pytest.fixture
def forms(file_server, monkeypatch):
    file_server.files["/zenodo.example.org/orca/set.pkl.gz"] = PKL_GZ
    file_server.files["/raw.example.org/inference/abc123/config.json"] = CONFIG
    made = (
        Asset(
            "llama2-70b-99",
            "model",
            "config",
            ".",
            "https://doc.example.org/m",
            (
                AssetFile(
                    "config.json",
                    "https://raw.example.org/inference/abc123/config.json",
                    len(CONFIG),
                    sha256=sha256(CONFIG),
                    checksum_origin="git-commit",
                ),
            ),
        ),
        Asset(
            "llama2-70b-99",
            "dataset",
            "OpenOrca",
            "set.pkl",
            "https://doc.example.org/d",
            (
                AssetFile(
                    "set.pkl.gz",
                    "https://zenodo.example.org/orca/set.pkl.gz",
                    len(PKL_GZ),
                    md5=md5(PKL_GZ),
                    unpack="gz",
                ),
            ),
        ),
    )
    monkeypatch.setattr(catalogue, "ASSETS", made)
    monkeypatch.setenv("SUBTOOL_FETCH_MIRROR", file_server.url(""))
    return made


def _check_installed(cache=None) -> None:
    data = store.installed("llama2-70b-99", "dataset", cache=cache)
    assert data is not None and data.run_path.read_bytes() == PKL
    assert [(f.name, f.sha256, f.origin) for f in data.files] == [("set.pkl", sha256(PKL), "official")]
    model = store.installed("llama2-70b-99", "model", cache=cache)
    assert [(f.name, f.origin) for f in model.files] == [("config.json", "git-commit")]
    assert (model.root / "config.json").read_bytes() == CONFIG


def test_gz_and_git_commit_files_download_and_install(forms, tmp_path):
    res = runner.invoke(app, ["fetch", "llama2-70b-99", "--json", str(tmp_path / "out.json")])
    assert res.exit_code == 0, res.output
    _check_installed()
    record = json.loads((tmp_path / "out.json").read_text())
    assert [a["status"] for a in record["assets"]] == ["installed", "installed"]
    again = runner.invoke(app, ["fetch", "llama2-70b-99", "--verify"])
    assert again.exit_code == 0 and again.output.count("already installed and intact") == 2, again.output


def test_gz_and_git_commit_files_round_trip_through_plan_and_from(forms, file_server, tmp_path):
    import urllib.request

    plan_file = tmp_path / "carry" / "llama2-70b-99" / "plan.json"
    res = runner.invoke(app, ["fetch", "llama2-70b-99", "--plan", "--json", str(plan_file)])
    assert res.exit_code == 0, res.output
    assert "git-commit " + sha256(CONFIG) in res.output and "official " + md5(PKL_GZ) in res.output
    for a in json.loads(plan_file.read_text())["assets"]:
        for f in a["files"]:
            (tmp_path / "carry" / f["path"]).parent.mkdir(parents=True, exist_ok=True)
            with urllib.request.urlopen(f["url"]) as r:  # noqa: S310 - the test's own server
                (tmp_path / "carry" / f["path"]).write_bytes(r.read())
    gz = tmp_path / "carry" / "llama2-70b-99" / "dataset" / "set.pkl.gz"
    gz.write_bytes(gzip.compress(PKL + b"x"))  # another file: refused by name, before anything is unpacked
    refused = runner.invoke(app, ["fetch", "llama2-70b-99", "--from", str(tmp_path / "carry"), "--to", str(tmp_path)])
    assert refused.exit_code == 2 and str(gz) in refused.output, refused.output
    gz.write_bytes(PKL_GZ)
    done = runner.invoke(app, ["fetch", "llama2-70b-99", "--from", str(tmp_path / "carry"), "--to", str(tmp_path)])
    assert done.exit_code == 0, done.output
    _check_installed(tmp_path)


def test_a_git_commit_file_is_named_as_such_in_a_submission_readme():
    from subtool.package.documents import _asset_line

    line = _asset_line(
        {
            "kind": "model",
            "name": "config.json",
            "path": "/c/config.json",
            "sha256": "a" * 64,
            "origin": "git-commit",
            "document": "https://github.com/mlcommons/inference/blob/abc/x",
        }
    )
    assert "pinned git commit" in line, line
