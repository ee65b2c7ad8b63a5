"""Fixtures of the fetch tests: the stand-in servers (fetch_standins.py) started per test, and a cache each."""

from __future__ import annotations

import pytest
from fetch_standins import FileServer, HubServer, _hub_handler, _plain_handler, _serve


@pytest.fixture
def file_server():
    server = FileServer()
    httpd, server.port = _serve(_plain_handler(server))
    yield server
    httpd.shutdown()
    httpd.server_close()


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
