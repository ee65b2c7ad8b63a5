"""`fetch()` of a Hugging Face repository against a Hub stand-in reached through HF_ENDPOINT: the listing
huggingface_hub asks for, resolve URLs pinned to the commit, LFS redirects, gated files and the token."""

from __future__ import annotations

import os

import pytest
from fetch_standins import HF_SECRET, Repo, sha256

from subtool.errors import SubtoolError
from subtool.fetch import api, store
from subtool.fetch.http import Settings
from subtool.mlperf.assets import Asset, HubFiles

FAST = Settings(retries=2, backoff=0.0, timeout=(5, 5))
WEIGHTS = os.urandom(200_000)
FILES = {
    "config.json": b'{"model_type": "llama"}',
    "model-00001-of-00001.safetensors": WEIGHTS,
    "original/consolidated.pth": b"not wanted",
    "README.md": b"# card",
}


def llama(hub, *, gated: bool = False, patterns=("*.json", "*.safetensors")) -> Asset:
    hub.repos.setdefault("meta-llama/Tiny-8B", Repo(dict(FILES), {"model-00001-of-00001.safetensors"}, gated=gated))
    files = HubFiles("meta-llama/Tiny-8B", "main", tuple(patterns), gated=gated)
    return Asset("llama3.1-8b", "model", "the Hugging Face checkpoint", ".", "https://example.org/doc", hub=files)


def fetch(asset: Asset, **kw):
    return api.fetch(asset.benchmark, kinds=(asset.kind,), assets=(asset,), settings=FAST, **kw)


def test_the_hub_files_matching_the_patterns_are_installed_pinned_to_the_commit(hub_server):
    fetch(llama(hub_server))
    found = store.installed("llama3.1-8b", "model")
    assert {f.name for f in found.files} == {"config.json", "model-00001-of-00001.safetensors"}
    assert {f.origin for f in found.files} == {"hub"} and found.revision == Repo({}, set()).commit
    assert (found.root / "model-00001-of-00001.safetensors").read_bytes() == WEIGHTS
    resolved = [p for m, p, _ in hub_server.requests if "/resolve/" in p]
    assert resolved and all(f"/resolve/{Repo({}, set()).commit}/" in p for p in resolved)


def test_a_gated_repo_without_hf_token_is_one_line_before_any_download(hub_server):
    with pytest.raises(SubtoolError) as err:
        fetch(llama(hub_server, gated=True))
    assert (err.value.rule, err.value.exit_code) == ("fetch.hub_token", 2)
    assert "HF_TOKEN" in err.value.message and "accept the license" in err.value.message
    assert "meta-llama/Tiny-8B" in err.value.message and hub_server.requests == []


def test_a_gated_file_answering_401_without_a_token_names_the_repo_and_hf_token(hub_server):
    hub_server.repos["meta-llama/Tiny-8B"] = Repo(dict(FILES), {"model-00001-of-00001.safetensors"}, gated=True)
    with pytest.raises(SubtoolError) as err:
        fetch(llama(hub_server, gated=False))  # the catalogue did not say gated: the Hub's 401 does
    assert (err.value.rule, err.value.exit_code) == ("fetch.hub_refused", 3)
    assert "meta-llama/Tiny-8B" in err.value.message and "HTTP 401" in err.value.message
    assert "HF_TOKEN" in err.value.message and store.installed("llama3.1-8b", "model") is None


def test_a_token_the_hub_refuses_is_exit_3_and_never_shown(hub_server, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_99")
    with pytest.raises(SubtoolError) as err:
        fetch(llama(hub_server, gated=True))
    assert (err.value.rule, err.value.exit_code) == ("fetch.hub_refused", 3) and "403" in err.value.message
    assert "hf_wrong_token_99" not in err.value.one_line() + (err.value.hint or "")


def test_the_token_goes_to_the_hub_only_and_is_written_nowhere(hub_server, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", HF_SECRET)
    lines = []
    result = fetch(llama(hub_server, gated=True), say=lines.append)
    assert store.installed("llama3.1-8b", "model") is not None
    cdn = [h for _, p, h in hub_server.requests if p.startswith("/cdn/")]
    assert cdn and not any("Authorization" in h for h in cdn)  # the CDN is another host: no token there
    assert HF_SECRET not in "\n".join(lines) + repr(result.to_dict())
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or HF_SECRET.encode() not in path.read_bytes(), path


def test_bytes_that_differ_from_the_hubs_sha256_are_refused(hub_server):
    asset = llama(hub_server)
    hub_server.lie["model-00001-of-00001.safetensors"] = bytes(len(WEIGHTS))
    with pytest.raises(SubtoolError) as err:
        fetch(asset)
    assert err.value.rule == "fetch.checksum" and sha256(WEIGHTS) in err.value.message
    assert err.value.path == "llama3.1-8b/model/model-00001-of-00001.safetensors"


def test_a_small_file_is_checked_against_the_hubs_git_blob_id(hub_server):
    asset = llama(hub_server)
    hub_server.lie["config.json"] = b'{"model_type": "gpt2!"}'  # same size, other bytes
    with pytest.raises(SubtoolError, match="git blob id") as err:
        fetch(asset)
    assert err.value.path == "llama3.1-8b/model/config.json"


def test_an_unreachable_hub_is_exit_3(hub_server, monkeypatch):
    asset = llama(hub_server)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(SubtoolError) as err:
        fetch(asset)
    assert (err.value.rule, err.value.exit_code) == ("fetch.hub_unreachable", 3)


def test_a_revision_the_hub_does_not_have_is_bad_input(hub_server):
    hub_server.repos["meta-llama/Tiny-8B"] = Repo(dict(FILES), set())
    asset = Asset("llama3.1-8b", "model", "ckpt", ".", "doc", hub=HubFiles("meta-llama/Tiny-8B", "v9"))
    with pytest.raises(SubtoolError) as err:
        fetch(asset)
    assert (err.value.rule, err.value.exit_code) == ("fetch.hub_revision", 2)
