"""More of what a hostile or unlucky source does to `fetch`, found by probing with real servers on 127.0.0.1 and
archives built here: a listed name that reads as terminal markup, a part left by an earlier run that does not
belong to the file, archive members that need a folder where another member is a file, and an install that fails
after the downloads verified."""

from __future__ import annotations

import io

from fetch_standins import Repo, sha256

from subtool.fetch import api, store
from subtool.fetch.http import Settings
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
