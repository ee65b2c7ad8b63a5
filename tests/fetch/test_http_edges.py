"""Edges of the download loop (subtool/fetch/http.py): the too-slow rule judged per window, the proxy settings
of the environment, and what a Range answer at another offset or past the end does."""

from __future__ import annotations

import os
import types

import pytest
from fetch_standins import sha256

from subtool.errors import SubtoolError
from subtool.fetch import api, http, store
from subtool.fetch.http import Settings, fetch_to_part
from subtool.mlperf.assets import Asset, AssetFile

FAST = Settings(retries=2, backoff=0.0, timeout=(5, 5))


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> _Clock:
    """The download loop's clock, moved by the test (the too-slow rule is about seconds, not about this machine)."""
    c = _Clock()
    monkeypatch.setattr(http, "time", types.SimpleNamespace(monotonic=c.monotonic, sleep=lambda s: None))
    return c


def test_the_pace_is_judged_in_bytes_per_second_over_the_window(clock):
    pace = http._Pace(min_rate=100.0, window=10.0, start=0.0)
    clock.now = 5.0
    pace.add(10)  # inside the first window: not judged yet
    clock.now = 10.0
    with pytest.raises(http._TooSlow) as slow:
        pace.add(490)  # 500 bytes in 10 s: 50 bytes/s, under 100
    assert slow.value.args == (500, 10.0)
    fast = http._Pace(min_rate=100.0, window=10.0, start=0.0)
    clock.now = 10.0
    fast.add(1000)  # 100 bytes/s: kept


def test_each_window_is_judged_on_its_own_bytes(clock):
    """A fast first window buys nothing: a server that then drips is stopped after the next window."""
    pace = http._Pace(min_rate=100.0, window=10.0, start=0.0)
    clock.now = 10.0
    pace.add(2000)  # 200 bytes/s
    clock.now = 20.0
    with pytest.raises(http._TooSlow) as slow:
        pace.add(10)  # 10 bytes in the second window (the average since the start would be 100 bytes/s)
    assert slow.value.args == (10, 10.0)


def test_the_too_slow_rule_is_on_by_default():
    defaults = Settings()
    assert defaults.min_rate > 0 and 0 < defaults.stall_window <= 3600


def test_the_proxy_of_the_environment_is_used(file_server, monkeypatch, tmp_path):
    """Clusters reach the internet through the proxy in $HTTP_PROXY: fetch goes through it (the stand-in server
    plays the proxy here, for a host that does not resolve)."""
    data = os.urandom(5000)
    file_server.files["/squad/dev.json"] = data
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{file_server.port}")
    part = tmp_path / "dev.json.part"
    fetch_to_part("http://data.example.invalid/squad/dev.json", part, size=len(data), settings=FAST)
    assert part.read_bytes() == data
    assert file_server.gets("/squad/dev.json")


def test_a_range_answer_that_starts_elsewhere_restarts_the_file_from_zero(file_server, tmp_path, monkeypatch):
    """A 206 whose Content-Range starts at another byte than asked would splice the file: fetch starts again."""
    import fetch_standins

    data = os.urandom(20_000)
    file_server.files["/f.bin"] = data
    real = fetch_standins._send_body

    def off_by_100(handler, body, headers, ranged, cut, drip=0.0):
        rng = handler.headers.get("Range", "")
        if rng.startswith("bytes=") and rng != "bytes=0-":
            start = int(rng[6:-1]) - 100  # answers from 100 bytes earlier, and says so
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            handler.send_header("Content-Length", str(len(body) - start))
            handler.end_headers()
            handler.wfile.write(body[start:])
            return
        real(handler, body, headers, ranged, cut, drip)

    monkeypatch.setattr(fetch_standins, "_send_body", off_by_100)
    part = tmp_path / "f.bin.part"
    part.write_bytes(data[:5000])
    fetch_to_part(file_server.url("/f.bin"), part, size=None, settings=FAST)  # no size: nothing else would notice
    assert part.read_bytes() == data
    assert [g.get("Range") for g in file_server.gets("/f.bin")] == ["bytes=5000-", None]


def test_a_part_longer_than_a_file_of_unknown_size_is_downloaded_again(file_server, tmp_path):
    """The server answers 416 to a Range past its end: the part is stale, the whole file comes again."""
    data = os.urandom(3000)
    file_server.files["/f.bin"] = data
    part = tmp_path / "f.bin.part"
    part.write_bytes(os.urandom(4000))
    fetch_to_part(file_server.url("/f.bin"), part, size=None, settings=FAST)
    assert part.read_bytes() == data


def test_an_empty_file_is_downloaded_and_installed(file_server, own_cache):
    file_server.files["/empty.txt"] = b""
    f = AssetFile("empty.txt", file_server.url("/empty.txt"), 0, sha256=sha256(b""))
    asset = Asset("bert-99", "dataset", "an empty file", ".", "https://example.org/doc", (f,))
    api.fetch("bert-99", kinds=("dataset",), assets=(asset,), settings=FAST)
    found = store.installed("bert-99", "dataset")
    assert found is not None and (found.root / "empty.txt").read_bytes() == b""


def test_a_body_cut_short_without_an_error_is_resumed_not_refused(file_server, tmp_path, monkeypatch):
    """A server that closes the body early (Content-Length says what it sent): the next request resumes."""
    import fetch_standins

    data = os.urandom(10_000)
    file_server.files["/f.bin"] = data
    real = fetch_standins._send_body
    calls = []

    def short_first(handler, body, headers, ranged, cut, drip=0.0):
        calls.append(handler.headers.get("Range"))
        if len(calls) == 1:
            handler.send_response(200)
            handler.send_header("Content-Length", "4000")
            handler.end_headers()
            handler.wfile.write(body[:4000])
            return
        real(handler, body, headers, ranged, cut, drip)

    monkeypatch.setattr(fetch_standins, "_send_body", short_first)
    part = tmp_path / "f.bin.part"
    fetch_to_part(file_server.url("/f.bin"), part, size=len(data), settings=FAST)
    assert part.read_bytes() == data and calls == [None, "bytes=4000-"]


def test_a_body_longer_than_the_file_leaves_no_part(file_server, tmp_path):
    """Also the bytes of an earlier run go: the server's file is not the one the part was of."""
    data = os.urandom(5000)
    file_server.files["/f.bin"] = data + b"more"
    part = tmp_path / "f.bin.part"
    part.write_bytes(data[:1000])
    with pytest.raises(SubtoolError) as err:
        fetch_to_part(file_server.url("/f.bin"), part, size=len(data), settings=FAST)
    assert (err.value.rule, err.value.exit_code) == ("fetch.size", 3)
    assert not part.exists()


@pytest.mark.parametrize("code", [401, 403])
def test_a_server_that_refuses_is_named_as_refusing(tmp_path, code):
    from http.server import BaseHTTPRequestHandler

    from fetch_standins import _serve

    class Refuse(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd, port = _serve(Refuse)
    try:
        with pytest.raises(SubtoolError) as err:
            fetch_to_part(f"http://127.0.0.1:{port}/f.bin", tmp_path / "f.part", size=10, settings=FAST)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (err.value.rule, err.value.exit_code, err.value.status) == ("fetch.refused", 3, code)


def test_a_part_that_is_a_link_is_replaced_never_written_through(file_server, tmp_path):
    data = os.urandom(3000)
    file_server.files["/f.bin"] = data
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"IMPORTANT" * 1000)  # longer than the file: the part is not resumed
    part = tmp_path / "f.bin.part"
    part.symlink_to(victim)
    fetch_to_part(file_server.url("/f.bin"), part, size=len(data), settings=FAST)
    assert victim.read_bytes() == b"IMPORTANT" * 1000
    assert not part.is_symlink() and part.read_bytes() == data


def test_a_body_without_a_length_is_cut_off_at_the_files_size(tmp_path):
    """No Content-Length (the body ends when the connection closes): the bytes are counted as they come, and the
    download stops soon after the file's size, not when the server stops sending."""
    from http.server import BaseHTTPRequestHandler

    from fetch_standins import _serve

    sent = []

    class Endless(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(1024):  # 64 MiB
                    self.wfile.write(b"A" * 65536)
                    sent.append(1)
            except OSError:
                pass

    httpd, port = _serve(Endless)
    part = tmp_path / "f.bin.part"
    try:
        with pytest.raises(SubtoolError) as err:
            fetch_to_part(f"http://127.0.0.1:{port}/f.bin", part, size=1000, settings=FAST)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (err.value.rule, err.value.exit_code) == ("fetch.size", 3)
    assert not part.exists()
    assert len(sent) < 1024  # the client hung up long before the end


def test_a_body_that_always_ends_early_is_given_up_after_the_retries(tmp_path, monkeypatch, file_server):
    """A server whose every answer is short (and says so in its Content-Length) is not asked forever."""
    import fetch_standins

    data = os.urandom(10_000)
    file_server.files["/f.bin"] = data
    real = fetch_standins._send_body
    calls = []

    def always_short(handler, body, headers, ranged, cut, drip=0.0):
        calls.append(handler.headers.get("Range"))
        if len(calls) > 20:  # a bound for the test itself: from here on, the whole file
            return real(handler, body, headers, False, cut, drip)
        handler.send_response(200)
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        handler.wfile.write(body[:100])

    monkeypatch.setattr(fetch_standins, "_send_body", always_short)
    with pytest.raises(SubtoolError) as err:
        fetch_to_part(file_server.url("/f.bin"), tmp_path / "f.part", size=len(data), settings=FAST)
    assert (err.value.rule, err.value.exit_code) == ("fetch.network", 3) and "ended after" in err.value.message
    assert len(calls) == FAST.retries + 1
