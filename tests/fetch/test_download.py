"""`fetch()` over plain HTTP against a server on 127.0.0.1: resume, restart, retries, verification, install."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import zipfile

import pytest
from fetch_standins import md5, sha256
from hypothesis import given, settings
from hypothesis import strategies as st

from subtool.errors import SubtoolError
from subtool.fetch import api, store
from subtool.fetch.http import Settings
from subtool.fetch.install import staging_dir
from subtool.mlperf.assets import Asset, AssetFile

FAST = Settings(retries=3, backoff=0.0, timeout=(5, 5))
DEV = os.urandom(300_000)
VOCAB = b"[PAD]\n[UNK]\nthe\nof\n" * 100


def squad(server, *, dev: AssetFile | None = None, vocab: AssetFile | None = None) -> Asset:
    server.files.setdefault("/squad/dev-v1.1.json", DEV)
    server.files.setdefault("/squad/vocab.txt", VOCAB)
    dev = dev or AssetFile("dev-v1.1.json", server.url("/squad/dev-v1.1.json"), len(DEV), sha256=sha256(DEV))
    vocab = vocab or AssetFile("vocab.txt", server.url("/squad/vocab.txt"), len(VOCAB), md5=md5(VOCAB))
    return Asset("bert-99", "dataset", "SQuAD v1.1 dev + vocab", ".", "https://example.org/doc", (dev, vocab))


def fetch(asset: Asset, **kw):
    return api.fetch(asset.benchmark, kinds=(asset.kind,), assets=(asset,), settings=FAST, **kw)


def test_a_fetch_installs_verified_files_where_run_finds_them(file_server, own_cache):
    result = fetch(squad(file_server))
    found = store.installed("bert-99", "dataset")
    assert found is not None and found.root == own_cache / "assets" / "bert-99" / "dataset"
    assert (found.root / "dev-v1.1.json").read_bytes() == DEV
    origins = {f.name: (f.origin, f.sha256) for f in found.files}
    assert origins == {"dev-v1.1.json": ("official", sha256(DEV)), "vocab.txt": ("official", sha256(VOCAB))}
    assert result.outcomes[0].status == "installed"
    assert not staging_dir(own_cache, "bert-99", "dataset").exists()  # nothing left where a later fetch looks


def test_a_connection_dropped_mid_file_resumes_with_a_range_request(file_server):
    file_server.drop["/squad/dev-v1.1.json"] = [100_000, 1]
    fetch(squad(file_server))
    gets = file_server.gets("/squad/dev-v1.1.json")
    assert len(gets) == 2 and "Range" not in gets[0]
    assert gets[1]["Range"] == "bytes=100000-"
    assert (store.installed("bert-99", "dataset").root / "dev-v1.1.json").read_bytes() == DEV


def test_a_server_that_ignores_range_restarts_the_file_from_zero(file_server):
    file_server.drop["/squad/dev-v1.1.json"] = [100_000, 1]
    file_server.ignore_range.add("/squad/dev-v1.1.json")  # answers 200 with the whole body to a Range request
    fetch(squad(file_server))
    assert file_server.gets("/squad/dev-v1.1.json")[1]["Range"] == "bytes=100000-"
    assert (store.installed("bert-99", "dataset").root / "dev-v1.1.json").read_bytes() == DEV


def test_a_part_left_by_an_interrupted_run_is_resumed(file_server, own_cache):
    part = staging_dir(own_cache, "bert-99", "dataset") / "parts" / "dev-v1.1.json.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(DEV[:123_456])
    fetch(squad(file_server))
    assert file_server.gets("/squad/dev-v1.1.json")[0]["Range"] == "bytes=123456-"
    assert (store.installed("bert-99", "dataset").root / "dev-v1.1.json").read_bytes() == DEV


def test_a_connection_that_keeps_dropping_is_exit_3_and_keeps_the_bytes_for_the_next_run(file_server, own_cache):
    file_server.drop["/squad/dev-v1.1.json"] = [50_000, 99]
    with pytest.raises(SubtoolError) as err:
        fetch(squad(file_server))
    assert (err.value.rule, err.value.exit_code) == ("fetch.network", 3)
    part = staging_dir(own_cache, "bert-99", "dataset") / "parts" / "dev-v1.1.json.part"
    assert part.stat().st_size == 4 * 50_000  # each try resumed where the last one stopped
    assert store.installed("bert-99", "dataset") is None


def test_a_wrong_checksum_is_one_error_naming_the_file_and_the_bad_bytes_are_removed(file_server, own_cache):
    bad = AssetFile("dev-v1.1.json", file_server.url("/squad/dev-v1.1.json"), len(DEV), sha256="0" * 64)
    with pytest.raises(SubtoolError) as err:
        fetch(squad(file_server, dev=bad))
    assert (err.value.rule, err.value.exit_code) == ("fetch.checksum", 3)
    assert err.value.path == "bert-99/dataset/dev-v1.1.json" and sha256(DEV) in err.value.message
    staging = staging_dir(own_cache, "bert-99", "dataset")
    assert not any(p.name.startswith("dev-v1.1.json") for p in staging.rglob("*"))
    assert not store.asset_dir("bert-99", "dataset").exists()


def test_a_wrong_md5_is_refused_too(file_server):
    bad = AssetFile("vocab.txt", file_server.url("/squad/vocab.txt"), len(VOCAB), md5="f" * 32)
    with pytest.raises(SubtoolError, match="md5") as err:
        fetch(squad(file_server, vocab=bad))
    assert err.value.rule == "fetch.checksum"


def test_a_missing_file_is_exit_3_with_its_url(file_server):
    gone = AssetFile("dev-v1.1.json", file_server.url("/squad/gone.json"), 10, sha256="0" * 64)
    with pytest.raises(SubtoolError) as err:
        fetch(squad(file_server, dev=gone))
    assert (err.value.rule, err.value.exit_code, err.value.path) == ("fetch.not_found", 3, gone.url)


def test_server_errors_are_retried_with_back_off_then_reported(file_server, tmp_path):
    file_server.fail["/squad/dev-v1.1.json"] = 2
    fetch(squad(file_server))
    assert len(file_server.gets("/squad/dev-v1.1.json")) == 3
    file_server.fail["/squad/vocab.txt"] = 99
    with pytest.raises(SubtoolError) as err:
        api.fetch("bert-99", kinds=("dataset",), assets=(squad(file_server),), settings=FAST, to=tmp_path / "x")
    assert (err.value.rule, err.value.exit_code) == ("fetch.http_status", 3)
    assert "503" in err.value.message


def test_a_source_without_an_official_checksum_records_the_first_download_and_says_so(file_server):
    first = AssetFile("dev-v1.1.json", file_server.url("/squad/dev-v1.1.json"), None, checksum_origin="first-download")
    lines = []
    result = fetch(squad(file_server, dev=first), say=lines.append)
    entry = next(f for f in store.installed("bert-99", "dataset").files if f.name == "dev-v1.1.json")
    assert (entry.origin, entry.sha256) == ("first-download", sha256(DEV))
    assert any("no official checksum" in line and sha256(DEV) in line for line in lines)
    assert result.outcomes[0].notes


def test_an_official_source_without_a_checksum_is_refused_never_passed(file_server):
    naked = AssetFile("dev-v1.1.json", file_server.url("/squad/dev-v1.1.json"), len(DEV))
    with pytest.raises(SubtoolError) as err:
        fetch(squad(file_server, dev=naked))
    assert err.value.rule == "fetch.no_checksum"


def test_an_intact_install_downloads_nothing_and_a_damaged_one_is_fetched_again(file_server):
    asset = squad(file_server)
    fetch(asset)
    before = len(file_server.requests)
    lines = []
    again = fetch(asset, say=lines.append)
    assert again.outcomes[0].status == "already installed" and len(file_server.requests) == before
    assert any("already installed and intact" in line for line in lines)
    installed = store.installed("bert-99", "dataset").root / "dev-v1.1.json"
    installed.write_bytes(bytes(len(DEV)))  # same size, other bytes: only the sha256 tells
    assert fetch(asset).outcomes[0].status == "installed"
    assert installed.read_bytes() == DEV


def test_the_old_copy_stays_until_the_new_one_is_complete_and_verified(file_server):
    fetch(squad(file_server))
    newer = AssetFile("dev-v1.1.json", file_server.url("/squad/dev-v2.json"), 5, sha256="1" * 64)
    with pytest.raises(SubtoolError):
        fetch(squad(file_server, dev=newer))
    found = store.installed("bert-99", "dataset")
    assert found is not None and (found.root / "dev-v1.1.json").read_bytes() == DEV


def test_to_installs_outside_the_cache(file_server, tmp_path, own_cache):
    result = fetch(squad(file_server), to=tmp_path / "elsewhere")
    assert not result.in_cache
    assert store.installed("bert-99", "dataset", cache=tmp_path / "elsewhere") is not None
    assert store.installed("bert-99", "dataset") is None


def test_a_mirror_serves_every_plain_file_under_host_and_path(file_server, monkeypatch):
    file_server.files["/data.example.org/squad/dev-v1.1.json"] = DEV
    file_server.files["/data.example.org/squad/vocab.txt"] = VOCAB
    dev = AssetFile("dev-v1.1.json", "https://data.example.org/squad/dev-v1.1.json", len(DEV), sha256=sha256(DEV))
    vocab = AssetFile("vocab.txt", "https://data.example.org/squad/vocab.txt", len(VOCAB), md5=md5(VOCAB))
    monkeypatch.setenv("SUBTOOL_FETCH_MIRROR", file_server.url(""))
    fetch(squad(file_server, dev=dev, vocab=vocab))
    assert len(file_server.gets("/data.example.org/squad/dev-v1.1.json")) == 1
    record = json.loads((store.asset_dir("bert-99", "dataset") / "MANIFEST.json").read_text())
    assert record["source"]["files"][0]["url"] == dev.url  # the mirror does not change what was installed


def _tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def _archive_asset(server, data: bytes, kind: str = "tar.gz") -> Asset:
    server.files["/ckpt/model.archive"] = data
    f = AssetFile("model.archive", server.url("/ckpt/model.archive"), len(data), sha256=sha256(data), unpack=kind)
    return Asset("bert-99", "model", "reference checkpoint", "model", "https://example.org/doc", (f,))


def test_an_archive_is_unpacked_into_the_asset(file_server):
    data = _tar({"model/config.json": b"{}", "model/weights.bin": b"w" * 1000})
    fetch(_archive_asset(file_server, data))
    found = store.installed("bert-99", "model")
    assert {f.name for f in found.files} == {"model/config.json", "model/weights.bin"}
    assert found.run_path == found.root / "model" and (found.run_path / "weights.bin").stat().st_size == 1000


@pytest.mark.parametrize(
    "data",
    [
        _tar({"../evil.txt": b"x"}),
        _tar({"/etc/evil.txt": b"x"}),
        _tar({"model/ok": b"x"}, links={"model/link": "/etc/passwd"}),
    ],
    ids=["dotdot", "absolute", "symlink"],
)
def test_an_archive_reaching_outside_the_asset_is_refused(file_server, tmp_path, data):
    with pytest.raises(SubtoolError) as err:
        fetch(_archive_asset(file_server, data))
    assert (err.value.rule, err.value.path) == ("fetch.unsafe_archive", "model.archive")
    assert not (tmp_path / "evil.txt").exists() and store.installed("bert-99", "model") is None


def test_a_zip_with_a_dotdot_member_or_too_many_bytes_is_refused(file_server, tmp_path):
    from subtool.fetch.unpack import unpack

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../escape.txt", b"x")
    with pytest.raises(SubtoolError, match="outside"):
        fetch(_archive_asset(file_server, buf.getvalue(), "zip"))
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", bytes(2_000_000))
    with pytest.raises(SubtoolError, match="more than 1000000 bytes"):
        unpack(bomb, "zip", tmp_path / "out", cap=1_000_000)


def test_a_second_fetch_of_the_same_benchmark_at_once_stops_with_one_line(file_server, own_cache):
    import subprocess
    import sys

    holder = staging_dir(own_cache, "bert-99", "dataset").parent
    hold = (
        "import sys, time\nfrom subtool.fsutil import exclusive\n"
        "with exclusive(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", hold, str(holder)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(SubtoolError) as err:
            fetch(squad(file_server))
        assert err.value.rule == "fetch.locked" and file_server.requests == []
    finally:
        child.kill()
        child.wait()


def test_the_progress_bar_path_runs_through_a_resume(file_server, monkeypatch):
    from rich.console import Console

    shown = io.StringIO()
    monkeypatch.setattr("rich.console.Console", lambda **kw: Console(file=shown, force_terminal=True, width=100))
    file_server.drop["/squad/dev-v1.1.json"] = [100_000, 1]
    fetch(squad(file_server), progress=True)  # two files, one resumed: the bar starts, restarts and stops
    assert "dev-v1.1.json" in shown.getvalue() and "vocab.txt" in shown.getvalue()
    assert store.installed("bert-99", "dataset") is not None


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=400), kind=st.sampled_from(["tar.gz", "zip", "gz"]), cut=st.integers(0, 400))
def test_an_archive_of_bad_bytes_is_one_refusal_never_a_crash(tmp_path_factory, data, kind, cut):
    from subtool.fetch.unpack import unpack

    folder = tmp_path_factory.mktemp("a")
    members = {"a/b.txt": b"hello" * 50}
    good = {"tar.gz": _tar, "zip": _zip_bytes, "gz": lambda m: gzip.compress(m["a/b.txt"])}[kind](members)
    for blob in (data, good[:cut] + data[:8], good[:cut]):
        archive = folder / "x.archive"
        archive.write_bytes(blob)
        try:
            unpack(archive, kind, folder / "out")
        except SubtoolError as err:
            assert err.rule == "fetch.unsafe_archive"


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_a_gzip_compressed_file_is_installed_decompressed_and_a_gzip_bomb_is_refused(file_server, tmp_path):
    from subtool.fetch.unpack import unpack

    pkl = os.urandom(30_000)
    data = gzip.compress(pkl)
    file_server.files["/orca/set.pkl.gz"] = data
    f = AssetFile("set.pkl.gz", file_server.url("/orca/set.pkl.gz"), len(data), md5=md5(data), unpack="gz")
    fetch(Asset("llama2-70b-99", "dataset", "OpenOrca", "set.pkl", "https://example.org/doc", (f,)))
    found = store.installed("llama2-70b-99", "dataset")
    assert [x.name for x in found.files] == ["set.pkl"] and found.run_path.read_bytes() == pkl
    assert found.files[0].sha256 == sha256(pkl)
    bomb = tmp_path / "zeros.gz"
    bomb.write_bytes(gzip.compress(bytes(3_000_000)))
    with pytest.raises(SubtoolError, match="more than 1000000 bytes"):
        unpack(bomb, "gz", tmp_path / "out", cap=1_000_000)


def test_a_twin_benchmark_with_the_same_source_is_linked_in_not_downloaded_again(file_server, own_cache):
    from dataclasses import replace

    asset = squad(file_server)
    fetch(asset)
    before = len(file_server.requests)
    twin = replace(asset, benchmark="bert-99.9")
    result = fetch(twin)
    assert len(file_server.requests) == before and result.outcomes[0].status == "installed"
    one, other = store.installed("bert-99", "dataset"), store.installed("bert-99.9", "dataset")
    assert other is not None and (other.root / "dev-v1.1.json").read_bytes() == DEV
    assert [f.sha256 for f in one.files] == [f.sha256 for f in other.files]
    assert fetch(twin).outcomes[0].status == "already installed"
    changed = replace(twin, benchmark="bert-99.99", files=(twin.files[0],))  # another source: downloaded
    fetch(changed)
    assert len(file_server.requests) == before + 1


def test_a_part_with_bytes_keeps_its_staging_folder_and_an_empty_one_goes(file_server, own_cache):
    file_server.drop["/squad/dev-v1.1.json"] = [50_000, 99]
    with pytest.raises(SubtoolError):
        fetch(squad(file_server))
    holder = staging_dir(own_cache, "bert-99", "dataset").parent
    assert (holder / "dataset" / "parts" / "dev-v1.1.json.part").stat().st_size > 0  # kept for the next run
    file_server.drop.clear()
    fetch(squad(file_server))
    assert not holder.exists()  # installed: the staging folder and its lock are gone


def test_a_server_that_drips_bytes_is_stopped_after_one_window_and_the_bytes_are_kept(file_server, own_cache):
    file_server.drip["/squad/dev-v1.1.json"] = 0.05  # never silent for the read timeout, never done either
    slow = Settings(retries=1, backoff=0.0, timeout=(5, 5), min_rate=1000.0, stall_window=0.5)
    with pytest.raises(SubtoolError) as err:
        api.fetch("bert-99", kinds=("dataset",), assets=(squad(file_server),), settings=slow)
    assert (err.value.rule, err.value.exit_code) == ("fetch.too_slow", 3)
    assert "bytes/s" in err.value.message and "resumes" in err.value.hint
    part = staging_dir(own_cache, "bert-99", "dataset") / "parts" / "dev-v1.1.json.part"
    assert 0 < part.stat().st_size < 100  # what came is kept for the next run
