"""What every family's embedded demo shares (runner/demo_assets.py): a demo folder is built once, a half-built one
is never trusted, and the made-up vocabulary is the same for the same seed."""

from __future__ import annotations

import random

import pytest

from subtool.runner.demo_assets import build_once, cache_root, generate_vocabulary


def test_a_demo_folder_is_built_once_and_then_reused(tmp_path):
    calls = []

    def build(tmp):
        calls.append(tmp)
        (tmp / "model").mkdir()
        (tmp / "data.json").write_text("{}")

    root = tmp_path / "demo-x-v1"
    build_once(root, build, "subtool x demo assets v1")
    build_once(root, build, "subtool x demo assets v1")
    assert len(calls) == 1 and calls[0] != root
    assert (root / "COMPLETE").read_text() == "subtool x demo assets v1\n" and (root / "data.json").exists()


def test_a_folder_without_its_complete_mark_is_rebuilt(tmp_path):
    root = tmp_path / "demo"
    (root / "model").mkdir(parents=True)
    (root / "stale.bin").write_bytes(b"half written")
    build_once(root, lambda tmp: (tmp / "fresh.txt").write_text("ok"), "v1")
    assert (root / "fresh.txt").exists() and not (root / "stale.bin").exists()


def test_a_build_that_fails_leaves_nothing_behind(tmp_path):
    def build(tmp):
        (tmp / "model").mkdir()
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        build_once(tmp_path / "demo", build, "v1")
    assert list(tmp_path.iterdir()) == []


def test_the_vocabulary_depends_on_the_seed_only():
    words = generate_vocabulary(random.Random(5), 300)
    assert words == generate_vocabulary(random.Random(5), 300) != generate_vocabulary(random.Random(6), 300)
    assert len(words) == len(set(words)) == 300 and words == sorted(words)
    assert all(w.isalpha() and w.islower() for w in words)


def test_the_cache_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SUBTOOL_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("SUBTOOL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "subtool"
