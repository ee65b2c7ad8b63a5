"""How fetch reads a server's answer, against real sockets on 127.0.0.1: a status line and headers, or a chunked
body's framing, sent a byte at a time (each byte reset the read timeout, so nothing ever stopped them); a body
compressed although fetch asked for it as is; headers no client can trust; redirects to other schemes."""

from __future__ import annotations

import gzip
import threading
import time

import pytest
from fetch_standins import hub_listing_error, md5, sha256

from subtool.errors import SubtoolError
from subtool.fetch import api, store
from subtool.fetch.http import Settings, fetch_to_part
from subtool.fetch.install import staging_dir
from subtool.mlperf.assets import Asset, AssetFile

TOKEN = "hf_SECRET_answers_token"
WINDOW = Settings(retries=2, backoff=0.0, timeout=(5, 5), stall_window=0.5, headers={"authorization": TOKEN})
FAST = Settings(retries=1, backoff=0.0, timeout=(5, 5))
DATA = b'{"data": ["the file as published"]}'


def _asset(url: str, name: str = "data.bin", data: bytes = DATA) -> Asset:
    f = AssetFile(name, url, len(data), sha256=sha256(data))
    return Asset("bert-99", "dataset", "a data set", ".", "https://example.org/doc", (f,))


def _fetch_within(asset: Asset, settings: Settings, seconds: float = 20.0) -> tuple[BaseException | None, float]:
    """api.fetch in a thread: (what it raised, seconds it took); a fetch that is still waiting fails the test."""
    got: list[BaseException | None] = []

    def work() -> None:
        try:
            api.fetch(asset.benchmark, kinds=(asset.kind,), assets=(asset,), settings=settings)
            got.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            got.append(exc)

    began = time.monotonic()
    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(seconds)
    assert got, f"fetch still waiting after {seconds} s"
    return got[0], time.monotonic() - began


def test_a_server_that_trickles_its_headers_is_stopped_after_one_stall_window(raw_server):
    """A byte of the status line and headers every 50 ms never let the 5 s read timeout fire: fetch waited for as
    long as the server kept sending (a byte a minute, for ever), printing nothing."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 36\r\nX-Pad: " + b"a" * 100_000
    server = raw_server(b"", trickle=head)
    err, took = _fetch_within(_asset(server.url()), WINDOW)
    assert isinstance(err, SubtoolError) and (err.rule, err.exit_code) == ("fetch.too_slow", 3)
    line = err.one_line()
    assert server.url() in line and "response header in 0.5 s" in line and "\n" not in line
    assert TOKEN not in line and (err.hint is None or TOKEN not in err.hint)
    assert took < 10 and server.connections == 1  # stopped once, not retried window after window


def test_a_chunked_body_whose_framing_trickles_is_stopped_and_its_bytes_kept(raw_server, own_cache):
    """A chunk-size line sent a byte at a time is read inside urllib3, which returns no block to the too-slow rule:
    it went on for as long as the server liked."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nDATA\r\n"
    server = raw_server(head, trickle=b"0" * 100_000)  # a chunk size that never ends
    err, took = _fetch_within(_asset(server.url()), WINDOW)
    assert isinstance(err, SubtoolError) and (err.rule, err.exit_code) == ("fetch.too_slow", 3), err
    assert server.url() in err.one_line() and "resumes" in err.hint and took < 10
    part = staging_dir(own_cache, "bert-99", "dataset") / "parts" / "data.bin.part"
    assert part.read_bytes() == b"DATA"  # what came is kept for the next run


def test_a_body_whose_framing_trickles_after_a_fast_start_is_said_as_no_bytes_for_the_window(raw_server):
    """The line counted the bytes of the fast start against the time since it began: 'the server sent 65,536
    bytes in 1 s, under 1,024 bytes/s', a rate it had not been under; no byte of the file came for the window."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n" + b"x" * 0x10000 + b"\r\n"
    server = raw_server(head, trickle=b"0" * 100_000)
    err, took = _fetch_within(_asset(server.url(), data=b"x" * 0x20000), WINDOW)
    assert isinstance(err, SubtoolError) and (err.rule, err.exit_code) == ("fetch.too_slow", 3), err
    assert "the server sent 0 bytes in" in err.message and took < 10, err.message


def test_a_body_compressed_although_fetch_asked_for_it_as_is_is_refused_as_such(file_server, own_cache):
    """It was refused as a size or checksum mismatch: users went looking for a corrupt download."""
    file_server.files["/d/dev.json"] = gzip.compress(DATA)
    file_server.headers["/d/dev.json"] = {"Content-Encoding": "gzip"}
    with pytest.raises(SubtoolError) as err:
        api.fetch("bert-99", kinds=("dataset",), assets=(_asset(file_server.url("/d/dev.json"), "dev.json"),))
    assert (err.value.rule, err.value.exit_code) == ("fetch.encoding", 3)
    assert "Content-Encoding: gzip" in err.value.message and "not the file" in err.value.message
    assert file_server.gets("/d/dev.json")[0]["Accept-Encoding"] == "identity"
    assert not list(own_cache.rglob("*.part")) and store.installed("bert-99", "dataset") is None


def test_a_compressed_file_labelled_with_its_own_coding_is_installed_as_published(file_server):
    """Apache's `AddEncoding x-gzip .gz` (or an object store's metadata) labels a .gz file itself gzip-coded: the
    body is then the file, and its checksum passes."""
    gz = gzip.compress(DATA)
    file_server.files["/d/set.pkl.gz"] = gz
    file_server.headers["/d/set.pkl.gz"] = {"Content-Encoding": "x-gzip"}
    f = AssetFile("set.pkl.gz", file_server.url("/d/set.pkl.gz"), len(gz), md5=md5(gz))
    asset = Asset("bert-99", "dataset", "a data set", "set.pkl.gz", "https://example.org/doc", (f,))
    api.fetch("bert-99", kinds=("dataset",), assets=(asset,), settings=FAST)
    assert store.installed("bert-99", "dataset").run_path.read_bytes() == gz


_OK = b"HTTP/1.1 200 OK\r\n"
_LENGTH = b"Content-Length: %d\r\n" % len(DATA)


@pytest.mark.parametrize("coding", ["gzip, chunked", "identity, chunked"])
def test_a_transfer_coding_fetch_does_not_read_is_refused_as_such(raw_server, tmp_path, coding):
    """http.client unframes `chunked` alone: `gzip, chunked` left the chunk framing in the file (a size mismatch),
    and so did `identity, chunked`, which the check took for `chunked` (identity dropped as no coding)."""
    body = b"%x\r\n" % len(DATA) + DATA + b"\r\n0\r\n\r\n"
    server = raw_server(_OK + b"Transfer-Encoding: " + coding.encode() + b"\r\n\r\n" + body)
    with pytest.raises(SubtoolError) as err:
        fetch_to_part(server.url(), tmp_path / "data.bin.part", size=len(DATA), settings=FAST)
    assert (err.value.rule, err.value.exit_code) == ("fetch.encoding", 3), err.value.one_line()
    assert f"Transfer-Encoding: {coding}" in err.value.message and not (tmp_path / "data.bin.part").exists()


def test_a_chunked_body_sent_with_its_header_twice_is_still_read(raw_server, tmp_path):
    """requests joins the two headers into `chunked, chunked`; http.client reads the first: the file as sent."""
    body = b"%x\r\n" % len(DATA) + DATA + b"\r\n0\r\n\r\n"
    server = raw_server(_OK + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    fetch_to_part(server.url(), tmp_path / "data.bin.part", size=len(DATA), settings=FAST)
    assert (tmp_path / "data.bin.part").read_bytes() == DATA


@pytest.mark.parametrize(
    "answer, rule, says",
    [
        (_OK + b"X-Pad: " + b"a" * 70_000 + b"\r\n" + _LENGTH + b"\r\n" + DATA, "fetch.response", "line over 64 KiB"),
        (
            _OK + b"".join(b"X-%d: a\r\n" % i for i in range(150)) + _LENGTH + b"\r\n" + DATA,
            "fetch.response",
            "too many",
        ),
        (_OK + _LENGTH + b"Content-Length: 5\r\n\r\n" + DATA, "fetch.response", "Content-Length"),
        (
            b"HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\nContent-Length: 0\r\n\r\n",
            "fetch.redirect",
            "'file'",
        ),
        (b"HTTP/1.1 301 Moved\r\nLocation: ftp://127.0.0.1/x\r\nContent-Length: 0\r\n\r\n", "fetch.redirect", "'ftp'"),
        (b"HTTP/1.1 302 Found\r\nLocation: http://[::1\r\nContent-Length: 0\r\n\r\n", "fetch.redirect", "IPv6"),
        (
            b"HTTP/1.1 302 Found\r\nLocation: http://h\xe9.example/x\r\nContent-Length: 0\r\n\r\n",
            "fetch.redirect",
            "no client can read ('utf-8' codec",
        ),
        (
            b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 9-%d/%d\r\nContent-Length: %d\r\n\r\n"
            % (len(DATA) - 1, len(DATA), len(DATA) - 9)
            + DATA[9:],
            "fetch.response",
            "a part of the file (HTTP 206)",
        ),
    ],
    ids=[
        "long-header-line",
        "150-headers",
        "two-lengths",
        "redirect-file",
        "redirect-ftp",
        "redirect-bad-ipv6",
        "redirect-not-utf8",
        "206-unasked",
    ],
)
def test_an_answer_fetch_cannot_take_as_the_file_says_what_the_server_did(raw_server, tmp_path, answer, rule, says):
    """They were 'cannot connect (ConnectionError, after 1 retries)', 'cannot download (InvalidSchema)', a
    ProtocolError after retries, or a size mismatch: nothing said the server's answer was at fault. A Location that
    urlparse refuses, or that is not UTF-8, escaped as a bare ValueError: 'failed unexpectedly'."""
    server = raw_server(answer)
    with pytest.raises(SubtoolError) as err:
        fetch_to_part(server.url(), tmp_path / "data.bin.part", size=len(DATA), settings=FAST)
    assert (err.value.rule, err.value.exit_code) == (rule, 3), err.value.one_line()
    assert says in err.value.message and server.url() in err.value.one_line()
    assert not (tmp_path / "data.bin.part").exists() or (tmp_path / "data.bin.part").stat().st_size == 0


@pytest.mark.parametrize("length", [b"-5", b"abc"])
def test_a_length_that_is_no_byte_count_reads_the_body_to_its_end_and_the_checksum_judges(raw_server, tmp_path, length):
    """urllib3 takes no length from such a header: the body is read until the server closes, under the file's size
    cap, and the file's checksum (or size) decides."""
    server = raw_server(_OK + b"Content-Length: " + length + b"\r\nConnection: close\r\n\r\n" + DATA)
    fetch_to_part(server.url(), tmp_path / "data.bin.part", size=len(DATA), settings=FAST)
    assert (tmp_path / "data.bin.part").read_bytes() == DATA


def test_a_hub_that_trickles_its_answer_to_the_listing_is_stopped_after_the_deadline(raw_server, monkeypatch):
    """huggingface_hub's read timeout restarts with every byte: --plan and fetch waited on such a Hub for good."""
    from subtool.fetch import hub

    server = raw_server(b"", trickle=b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pad: " + b"a" * 2000)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.port}")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(hub, "LIST_DEADLINE", 0.5, raising=False)
    err = hub_listing_error(20)
    assert err is not None, "still waiting on the Hub"
    assert isinstance(err, SubtoolError) and (err.rule, err.exit_code) == ("fetch.too_slow", 3), err
    assert "meta-llama/Tiny-8B" in err.one_line() and "0.5 s" in err.message
