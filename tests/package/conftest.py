"""Fixtures of the system-detection tests (tests/package/test_system_detect*.py): a PATH that holds only the tools a
test puts there, and the host probe's cache cleared around a test."""

from __future__ import annotations

import pytest


@pytest.fixture
def fresh_probe():
    from subtool.hostinfo.fields import probe_host

    probe_host.cache_clear()
    yield
    probe_host.cache_clear()


@pytest.fixture
def bare_path(tmp_path, monkeypatch):
    """PATH holding only a folder the test fills: no nvidia-smi, dmidecode or lscpu unless the test puts one."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))
    return bindir
