"""Edges of the Hub rules (subtool/fetch/hub.py, api.py): the token is $HF_TOKEN and nothing else (no stored
login, no older variable), and it goes to the Hub only, never to a plain file's server or mirror."""

from __future__ import annotations

import os

import pytest
from fetch_standins import HF_SECRET, Repo, sha256

from subtool.errors import SubtoolError
from subtool.fetch import api, store
from subtool.fetch.http import Settings
from subtool.mlperf.assets import Asset, AssetFile, HubFiles

FAST = Settings(retries=1, backoff=0.0, timeout=(5, 5))
FILES = {"config.json": b'{"model_type": "llama"}', "model-00001-of-00001.safetensors": os.urandom(5000)}


def _asset(hub, plain: tuple[AssetFile, ...] = (), gated: bool = False) -> Asset:
    hub.repos["meta-llama/Tiny-8B"] = Repo(dict(FILES), {"model-00001-of-00001.safetensors"}, gated=gated)
    files = HubFiles("meta-llama/Tiny-8B", "main", ("*.json", "*.safetensors"), gated=gated)
    return Asset("llama3.1-8b", "model", "ckpt", ".", "https://example.org/doc", plain, hub=files)


def _authorizations(requests) -> list[str]:
    return [h[k] for _, _, h in requests for k in h if k.lower() == "authorization"]


def test_a_stored_login_or_an_older_token_variable_is_never_sent(hub_server, monkeypatch, tmp_path):
    stored = tmp_path / "hf" / "token"
    stored.parent.mkdir()
    stored.write_text("hf_stored_login_token_1")
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(stored))
    monkeypatch.setenv("HF_TOKEN_PATH", str(stored))
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "hf_older_variable_token_2")
    api.fetch("llama3.1-8b", kinds=("model",), assets=(_asset(hub_server),), settings=FAST)
    assert store.installed("llama3.1-8b", "model") is not None
    assert _authorizations(hub_server.requests) == []


def test_the_hub_token_is_not_sent_to_the_server_of_a_plain_file(hub_server, file_server, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", HF_SECRET)
    data = b"tokenizer data"
    file_server.files["/extra/tokenizer.model"] = data
    plain = (AssetFile("tokenizer.model", file_server.url("/extra/tokenizer.model"), len(data), sha256=sha256(data)),)
    api.fetch("llama3.1-8b", kinds=("model",), assets=(_asset(hub_server, plain, gated=True),), settings=FAST)
    assert store.installed("llama3.1-8b", "model") is not None
    assert file_server.gets("/extra/tokenizer.model") and _authorizations(file_server.requests) == []
    assert f"Bearer {HF_SECRET}" in _authorizations(hub_server.requests)  # the Hub itself does get it


def test_a_repository_with_no_file_matching_the_patterns_installs_nothing(hub_server):
    hub_server.repos["meta-llama/Tiny-8B"] = Repo({"README.md": b"# card", "original/x.pth": b"x"}, set())
    files = HubFiles("meta-llama/Tiny-8B", "main", ("*.json", "*.safetensors"))
    asset = Asset("llama3.1-8b", "model", "ckpt", ".", "https://example.org/doc", hub=files)
    with pytest.raises(SubtoolError) as err:
        api.fetch("llama3.1-8b", kinds=("model",), assets=(asset,), settings=FAST)
    assert (err.value.rule, err.value.exit_code) == ("fetch.hub_empty", 3)
    assert "*.json, *.safetensors" in err.value.message
    assert store.installed("llama3.1-8b", "model") is None


def test_a_listing_the_hub_refuses_is_named_as_refused_not_as_unreachable(monkeypatch):
    """A mirror (or the Hub) answering the listing with a bare 403: the token's problem, said as such."""
    from http.server import BaseHTTPRequestHandler

    from fetch_standins import _serve

    class Refuse(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            body = b'{"error": "forbidden"}'
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd, port = _serve(Refuse)
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("HF_TOKEN", "hf_some_token_77")
        files = HubFiles("meta-llama/Tiny-8B", "main", ("*.json",))
        asset = Asset("llama3.1-8b", "model", "ckpt", ".", "https://example.org/doc", hub=files)
        with pytest.raises(SubtoolError) as err:
            api.fetch("llama3.1-8b", kinds=("model",), assets=(asset,), settings=FAST)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (err.value.rule, err.value.exit_code) == ("fetch.hub_refused", 3)
    assert "HTTP 403" in err.value.message and "hf_some_token_77" not in err.value.one_line()


@pytest.mark.parametrize("name", ["tokenizer\\..\\..\\x.json", "./config.json", "tokenizer//x.json", "tokenizer/"])
def test_a_listed_name_with_a_backslash_or_an_empty_or_dot_part_is_refused(hub_server, name):
    hub_server.repos["meta-llama/Tiny-8B"] = Repo({name: b"{}", "config.json": b"{}"}, set())
    files = HubFiles("meta-llama/Tiny-8B", "main", ("*",))
    asset = Asset("llama3.1-8b", "model", "ckpt", ".", "https://example.org/doc", hub=files)
    with pytest.raises(SubtoolError) as err:
        api.fetch("llama3.1-8b", kinds=("model",), assets=(asset,), settings=FAST)
    assert (err.value.rule, err.value.exit_code) == ("fetch.hub_name", 3)
    assert not [p for _, p, _ in hub_server.requests if "/resolve/" in p]


def test_the_license_is_accepted_on_huggingface_co_also_behind_a_mirror(hub_server):
    with pytest.raises(SubtoolError) as err:
        api.fetch("llama3.1-8b", kinds=("model",), assets=(_asset(hub_server, gated=True),), settings=FAST)
    assert err.value.rule == "fetch.hub_token"
    assert "https://huggingface.co/meta-llama/Tiny-8B" in err.value.message
    assert hub_server.endpoint not in err.value.message
