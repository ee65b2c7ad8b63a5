"""More of what a hostile or unlucky source does to `fetch`, found by probing with real servers on 127.0.0.1 and
archives built here: a listed name that reads as terminal markup, a part left by an earlier run that does not
belong to the file, archive members that need a folder where another member is a file, and an install that fails
after the downloads verified."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import zipfile

import pytest
from fetch_standins import Repo, hub_listing_error, sha256

from subtool.errors import SubtoolError
from subtool.fetch import api, store
from subtool.fetch.http import Settings
from subtool.fetch.install import staging_dir
from subtool.fetch.unpack import unpack
from subtool.mlperf.assets import Asset, AssetFile, HubFiles

FAST = Settings(retries=1, backoff=0.0, timeout=(5, 5))
DATA = bytes(range(256)) * 400


def _fetch(asset: Asset, **kw):
    return api.fetch(asset.benchmark, kinds=(asset.kind,), assets=(asset,), settings=FAST, **kw)


def _plain(server, *, run_path: str = ".") -> Asset:
    server.files["/d/data.bin"] = DATA
    f = AssetFile("data.bin", server.url("/d/data.bin"), len(DATA), sha256=sha256(DATA))
    return Asset("bert-99", "dataset", "a data set", run_path, "https://example.org/doc", (f,))


def test_a_listed_name_that_reads_as_markup_is_shown_as_written_not_a_crash(hub_server, monkeypatch):
    """A Hub (or mirror) listing a name like 'tokenizer[/x].json' made the progress bar fail with rich's
    MarkupError mid-download: exit 'a bug in subtool', nothing installed."""
    from rich.console import Console

    shown = io.StringIO()
    monkeypatch.setattr("rich.console.Console", lambda **kw: Console(file=shown, force_terminal=True, width=120))
    name = "tokenizer[/x].json"
    hub_server.repos["meta-llama/Tiny-8B"] = Repo({"config.json": b"{}", name: b'{"a": 1}'}, set())
    listed = HubFiles("meta-llama/Tiny-8B", "main", ("*.json",))
    asset = Asset("llama3.1-8b", "model", "the checkpoint", ".", "https://example.org/doc", hub=listed)
    _fetch(asset, progress=True)
    found = store.installed("llama3.1-8b", "model")
    assert found is not None and (found.root / name).read_bytes() == b'{"a": 1}'
    assert name in shown.getvalue()


@pytest.mark.parametrize("kept", [b"EVIL" + DATA[4:50_000], b"EVIL" + DATA[4:]], ids=["part", "whole"])
def test_a_part_left_by_an_earlier_run_that_does_not_verify_is_downloaded_again_from_zero(file_server, own_cache, kept):
    """Bytes kept from an earlier run (another version of the file, a damaged disk, a tampered staging folder)
    were resumed and the result refused as the source's fault (exit 3); a whole one was refused without a
    request. The same command then worked, because the refusal had removed the part."""
    asset = _plain(file_server)
    part = staging_dir(own_cache, "bert-99", "dataset") / "parts" / "data.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(kept)
    said: list[str] = []
    _fetch(asset, say=said.append)
    found = store.installed("bert-99", "dataset")
    assert found is not None and (found.root / "data.bin").read_bytes() == DATA
    assert "Range" not in file_server.gets("/d/data.bin")[-1]  # the last download started at byte 0
    assert any("downloading it again from its first byte" in line for line in said)


def test_a_file_that_does_not_verify_from_byte_zero_is_refused_without_a_second_download(file_server):
    asset = _plain(file_server)
    file_server.files["/d/data.bin"] = b"EVIL" + DATA[4:]  # the server's bytes are not the catalogue's
    with pytest.raises(SubtoolError) as err:
        _fetch(asset)
    assert (err.value.rule, err.value.exit_code) == ("fetch.checksum", 3)
    assert len(file_server.gets("/d/data.bin")) == 1
    assert store.installed("bert-99", "dataset") is None


def _archive(tmp_path, kind: str, names: list[str]):
    path = tmp_path / f"x.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            for name in names:
                zf.writestr(name, name.encode())
        return path
    with tarfile.open(path, "w:gz") as tf:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = len(name)
            tf.addfile(info, io.BytesIO(name.encode()))
    return path


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
@pytest.mark.parametrize(
    "names", [["a", "a/b"], ["a/b/c", "A/b"], ["a/b", "x", "A"]], ids=["file-first", "dir-first", "case"]
)
def test_an_archive_member_that_is_a_file_where_another_needs_a_folder_is_refused_by_rule(tmp_path, kind, names):
    """It failed with the OS's words and the staging path ('cannot read the archive (NotADirectoryError: [Errno
    20] Not a directory: /…/staging/tree/…)'), naming neither member nor the rule it breaks."""
    with pytest.raises(SubtoolError) as err:
        unpack(_archive(tmp_path, kind, names), kind, tmp_path / "out")
    line = err.value.one_line()
    assert err.value.rule == "fetch.unsafe_archive" and "folder" in line and "Errno" not in line
    assert repr(names[-1]) in line and str(tmp_path) not in line


def test_an_install_that_fails_after_the_download_verified_keeps_the_file_for_the_next_run(file_server, own_cache):
    """The verified files were moved into the unfinished asset folder, which the failure removed with them: the
    next run downloaded every file again (a 140 GB checkpoint, for a Ctrl-C or a full disk at the last step)."""
    with pytest.raises(SubtoolError):
        _fetch(_plain(file_server, run_path="no-such-file"))  # fails after the download, as Ctrl-C or ENOSPC would
    assert store.installed("bert-99", "dataset") is None
    kept = staging_dir(own_cache, "bert-99", "dataset") / "files" / "data.bin"
    assert kept.read_bytes() == DATA
    before = len(file_server.gets("/d/data.bin"))
    _fetch(_plain(file_server))
    assert len(file_server.gets("/d/data.bin")) == before  # nothing downloaded again
    found = store.installed("bert-99", "dataset")
    assert found is not None and (found.root / "data.bin").read_bytes() == DATA
    assert not staging_dir(own_cache, "bert-99", "dataset").exists()


def test_a_retry_after_of_hours_is_waited_only_up_to_the_cap(file_server, monkeypatch):
    """A 503 saying `Retry-After: 86400` made urllib3 sleep (up to six hours) before its retry, printing nothing."""
    import threading

    monkeypatch.setattr("subtool.fetch.http.RETRY_AFTER_MAX", 0.2, raising=False)
    asset = _plain(file_server)
    file_server.fail["/d/data.bin"] = 1
    file_server.retry_after["/d/data.bin"] = "86400"
    done = threading.Event()
    threading.Thread(target=lambda: (_fetch(asset), done.set()), daemon=True).start()
    assert done.wait(20), "still waiting on the server's Retry-After"
    assert len(file_server.gets("/d/data.bin")) == 2
    assert store.installed("bert-99", "dataset") is not None


def test_a_hub_that_accepts_and_never_answers_is_one_line_not_a_hang(monkeypatch):
    """huggingface_hub waits without limit unless given a timeout: `fetch` and `--plan` against a Hub mirror that
    took the connection and said nothing hung, printing nothing."""
    import socket

    with socket.socket() as quiet:
        quiet.bind(("127.0.0.1", 0))
        quiet.listen(4)  # the kernel accepts; nobody ever answers
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{quiet.getsockname()[1]}")
        monkeypatch.setattr("subtool.fetch.hub.LIST_TIMEOUT", 0.5, raising=False)
        err = hub_listing_error(30)
    assert err is not None, "still waiting on the Hub"
    assert isinstance(err, SubtoolError) and (err.rule, err.exit_code) == ("fetch.hub_unreachable", 3)


@pytest.mark.parametrize(
    "odd",
    [
        {"size": "2"},
        {"size": -1},
        {"size": 1e30},
        {"lfs": {"size": 2, "sha256": ["a"], "pointerSize": 1}},
        {"blobId": None},
    ],
    ids=["size-text", "size-negative", "size-float", "sha256-list", "no-checksum"],
)
def test_a_listed_size_or_checksum_that_is_none_is_refused_before_any_download(hub_server, tmp_path, odd):
    """A size given as text or a sha256 as a list ended fetch with a TypeError or AttributeError ('a bug in
    subtool'); a negative or float size, or a file with no checksum, was downloaded and then refused."""
    hub_server.repos["meta-llama/Tiny-8B"] = Repo({"config.json": b"{}"}, set())
    hub_server.odd["config.json"] = odd
    listed = HubFiles("meta-llama/Tiny-8B", "main", ("*.json",))
    asset = Asset("llama3.1-8b", "model", "the checkpoint", ".", "https://example.org/doc", hub=listed)
    with pytest.raises(SubtoolError) as err:
        _fetch(asset, to=tmp_path / "cache")
    assert (err.value.rule, err.value.exit_code) == ("fetch.hub_listing", 3)
    assert "config.json" in err.value.one_line()
    assert not any("/resolve/" in p for _, p, _ in hub_server.requests)


def _small_disk() -> None:
    """In the child: files may grow to 40 kB, and writing past that fails (EFBIG) instead of killing it: what a
    full disk, a quota or a FAT-formatted stick does, without mounting one."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))


def _on_small_disk(code: str, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "SUBTOOL_CACHE": str(tmp_path / "cache")}
    return subprocess.run(  # noqa: PLW1510 - the exit code is the test's to read
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, preexec_fn=_small_disk
    )


def test_a_full_disk_during_a_download_names_the_part_and_the_url_and_keeps_the_bytes(file_server, tmp_path):
    """It said 'error: cannot read or write: File too large [io.efbig]' (or No space left on device), naming
    neither the file being written nor what was being downloaded."""
    mirror = file_server.url("/m")
    file_server.files["/m/raw.githubusercontent.com/rajpurkar/SQuAD-explorer/master/dataset/dev-v1.1.json"] = DATA
    argv = ["subtool", "fetch", "bert-99", "--dataset-only", "--mirror", mirror]
    code = f"import sys; from subtool.cli import main; sys.argv = {argv!r}; main()"
    done = _on_small_disk(code, tmp_path)
    assert done.returncode == 2, done.stderr + done.stdout
    line = next(x for x in (done.stdout + done.stderr).splitlines() if x.startswith("error:"))
    assert "dev-v1.1.json.part" in line and mirror in line and "[io.efbig]" in line
    part = staging_dir(tmp_path / "cache", "bert-99", "dataset") / "parts" / "dev-v1.1.json.part"
    assert 0 < part.stat().st_size <= 40_000  # kept: the same command resumes once there is room


def test_a_full_disk_while_unpacking_is_the_disks_error_not_an_unsafe_archive(tmp_path):
    """It was 'cannot read the archive (OSError: [Errno 28] No space left on device) [fetch.unsafe_archive]':
    a verified archive blamed (exit 2, rule of a hostile archive) for the disk it was unpacked on."""
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.bin", bytes(300_000))
    code = (
        "from pathlib import Path; from subtool.fetch.unpack import unpack; from subtool.errors import SubtoolError\n"
        f"try:\n    unpack(Path({str(archive)!r}), 'zip', Path({str(tmp_path / 'out')!r}))\n"
        "except SubtoolError as err:\n    print(err.rule, err.one_line())"
    )
    done = _on_small_disk(code, tmp_path)
    assert done.stdout.startswith("io.efbig ") and "cannot unpack x.zip" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("what", ["link", "dangling-link", "file"])
def test_an_asset_folder_that_is_a_link_or_a_file_is_refused_before_any_download(file_server, own_cache, what):
    """A link there (a checkpoint moved to another disk and linked back) was replaced by a folder on the cache's
    disk and left beside it as '.dataset.old-<pid>' for good; a dangling link failed the last rename ('Not a
    directory') after every file was downloaded."""
    elsewhere = own_cache.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mine.txt").write_text("kept")
    folder = store.asset_dir("bert-99", "dataset", own_cache)
    folder.parent.mkdir(parents=True)
    if what == "file":
        folder.write_text("not a folder")
    else:
        folder.symlink_to(elsewhere if what == "link" else own_cache / "gone")
    with pytest.raises(SubtoolError) as err:
        _fetch(_plain(file_server))
    assert (err.value.rule, err.value.exit_code) == ("fetch.store", 2) and str(folder) in err.value.one_line()
    assert file_server.gets("/d/data.bin") == []
    assert sorted(p.name for p in folder.parent.iterdir()) == ["dataset"]  # no '.dataset.old-<pid>' beside it
    assert (elsewhere / "mine.txt").read_text() == "kept"


def test_a_login_page_served_in_place_of_the_file_is_named_as_one(file_server):
    """A proxy's or captive portal's login page answered with 200 was refused as 'md5 … is not the official …'
    alone: nothing told the user the bytes were a web page and not a damaged download."""
    page = b"\n<!DOCTYPE html>\n<html><head><title>Sign in to the campus network</title></head></html>\n"
    file_server.files["/d/data.bin"] = page
    f = AssetFile("data.bin", file_server.url("/d/data.bin"), None, sha256=sha256(DATA))
    with pytest.raises(SubtoolError) as err:
        _fetch(Asset("bert-99", "dataset", "a data set", ".", "https://example.org/doc", (f,)))
    assert (err.value.rule, err.value.exit_code) == ("fetch.checksum", 3)
    assert "HTML page" in (err.value.hint or "")
    file_server.files["/d/data.bin"] = b"not a page, only the wrong bytes"
    with pytest.raises(SubtoolError) as err:
        _fetch(Asset("bert-99", "dataset", "a data set", ".", "https://example.org/doc", (f,)))
    assert err.value.hint is None
