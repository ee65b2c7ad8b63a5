"""`subtool fetch --verify` through the command line (subtool/cli_fetch.py): the option reaches both the download
form and the --from form, so a byte changed in place with its time set back is found and the file installed again."""

from __future__ import annotations

import os

import pytest
from fetch_standins import sha256
from typer.testing import CliRunner

from subtool.cli import app
from subtool.fetch import store
from subtool.mlperf import assets as catalogue
from subtool.mlperf.assets import Asset, AssetFile

DEV = os.urandom(20_000)


@pytest.fixture
def dataset(file_server, monkeypatch):
    file_server.files["/data.example.org/squad/dev.json"] = DEV
    f = AssetFile("dev.json", "https://data.example.org/squad/dev.json", len(DEV), sha256=sha256(DEV))
    monkeypatch.setattr(catalogue, "ASSETS", (Asset("bert-99", "dataset", "SQuAD", "dev.json", "https://d", (f,)),))
    monkeypatch.setenv("SUBTOOL_FETCH_MIRROR", file_server.url(""))


def _fetch(*args: str):
    result = CliRunner().invoke(app, ["fetch", "bert-99", "--dataset-only", *args])
    assert result.exit_code == 0, result.output
    return result


def _damage_in_place() -> None:
    path = store.installed("bert-99", "dataset").root / "dev.json"
    st = path.stat()
    with open(path, "r+b") as fh:
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 0xFF]))  # another byte whatever the random data held there
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.usefixtures("dataset")
def test_verify_reaches_the_download_form():
    _fetch()
    _damage_in_place()
    _fetch()  # sizes and times as installed: trusted
    assert store.installed("bert-99", "dataset").run_path.read_bytes() != DEV
    result = _fetch("--verify")
    assert "dev.json is not the file installed" in result.output
    assert store.installed("bert-99", "dataset").run_path.read_bytes() == DEV


@pytest.mark.usefixtures("dataset")
def test_verify_reaches_the_from_form(tmp_path):
    _fetch()
    _damage_in_place()
    carried = tmp_path / "carried" / "bert-99" / "dataset"
    carried.mkdir(parents=True)
    (carried / "dev.json").write_bytes(DEV)
    result = _fetch("--from", str(tmp_path / "carried"), "--verify")
    assert "dev.json is not the file installed" in result.output
    assert store.installed("bert-99", "dataset").run_path.read_bytes() == DEV
