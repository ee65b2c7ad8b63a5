"""Fixtures of the fetch tests: the stand-in servers (fetch_standins.py) started per test, and a cache each."""

from __future__ import annotations

import contextlib
import socket

import pytest
from fetch_standins import FileServer, HubServer, RawServer, _hub_handler, _plain_handler, _serve


@pytest.fixture
def file_server():
    server = FileServer()
    httpd, server.port = _serve(_plain_handler(server))
    yield server
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def raw_server():
    """raw_server(answer, trickle=b"", gap=0.05): a started RawServer, closed after the test."""
    listeners = []

    def start(answer: bytes, trickle: bytes = b"", gap: float = 0.05) -> RawServer:
        server = RawServer(answer, trickle, gap)
        listeners.append(server.start())
        return server

    yield start
    for listener in listeners:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes its accept()
        listener.close()


@pytest.fixture
def hub_server(monkeypatch):
    hub = HubServer()
    httpd, hub.port = _serve(_hub_handler(hub))
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield hub
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each fetch test installs into its own cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SUBTOOL_CACHE", str(cache))
    monkeypatch.delenv("SUBTOOL_FETCH_MIRROR", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return cache
