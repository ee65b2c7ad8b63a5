"""Small real inputs for the runner: a tiny random-weight BERT checkpoint and generated SQuAD files."""

from __future__ import annotations

import json
import random

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("mlperf_loadgen")


@pytest.fixture(scope="session")
def tiny_words():
    from subtool.runner.demo import generate_vocabulary

    return generate_vocabulary(random.Random(7), n=400)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_words):
    from subtool.runner.demo import write_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "model"
    write_checkpoint(path, tiny_words)
    return path


@pytest.fixture(scope="session")
def small_squad(tmp_path_factory, tiny_words):
    """40 questions, 5 of them on two-window contexts: 45 features."""
    from subtool.runner.demo import generate_squad

    path = tmp_path_factory.mktemp("data") / "small-squad.json"
    path.write_text(json.dumps(generate_squad(tiny_words, random.Random(3), n_questions=40, n_two_window=5)))
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # one cache for the whole session (the demo assets are expensive), never the user's ~/.cache
    monkeypatch.setenv("SUBTOOL_CACHE", str(tmp_path_factory.getbasetemp() / "subtool-cache"))
