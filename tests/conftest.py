"""Fixtures shared across the suite: a tiny random-weight BERT checkpoint and small generated SQuAD files.

They are made by the project's own demo generator (real Hugging Face checkpoint files, real SQuAD JSON), once
per session. Tests that use them need torch and transformers; they are requested only by such tests.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest


REPO_ROOT = Path(__file__).resolve().parents[1]
# The copy of the official checker beside the project (shared/official/, as CI lays it out: a fresh clone with
# shared/ next to it). A git worktree sits a level or two deeper than the main checkout, so its parents are looked
# at too; the device machine's copy of the work tree carries shared/ inside it.
OFFICIAL_COPY = Path("shared") / "official" / "inference-b66003e"


def official_checker_dir() -> Path | None:
    """`tools/submission` of the official checker: $SUBTOOL_OFFICIAL when set (a checkout of mlcommons/inference
    or a bare tools/submission), else the shared copy beside the repository; None when neither is there."""
    explicit = os.environ.get("SUBTOOL_OFFICIAL")
    roots = [Path(explicit)] if explicit else [base / OFFICIAL_COPY for base in (REPO_ROOT, *REPO_ROOT.parents[:3])]
    for root in roots:
        for candidate in (root / "tools" / "submission", root):
            if (candidate / "submission_checker" / "main.py").is_file():
                return candidate
    return None


def official_skip_reason() -> str:
    explicit = os.environ.get("SUBTOOL_OFFICIAL")
    if explicit:
        return f"SUBTOOL_OFFICIAL={explicit} holds no official checker (tools/submission/submission_checker/main.py)"
    return (f"official MLCommons checker not found: no ../{OFFICIAL_COPY.as_posix()} beside the repository; set "
            "SUBTOOL_OFFICIAL to a checkout of mlcommons/inference")


OFFICIAL_SKIP = official_skip_reason()


@pytest.fixture(scope="session")
def official_checker():
    checker = official_checker_dir()
    if checker is None:
        pytest.skip(official_skip_reason())
    for module in ("yaml", "numpy"):        # the official checker imports both
        pytest.importorskip(module, reason=f"the official checker needs {module} (pip install -e '.[test]')")
    return checker


@pytest.fixture(scope="session")
def subtool_cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "subtool-cache"


@pytest.fixture(autouse=True)
def _isolated_cache(subtool_cache, monkeypatch):
    # one cache for the session (demo assets are costly to make), never the user's ~/.cache
    monkeypatch.setenv("SUBTOOL_CACHE", str(subtool_cache))


@pytest.fixture(scope="session")
def tiny_words():
    from subtool.runner.demo import generate_vocabulary

    return generate_vocabulary(random.Random(7), n=400)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_words):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
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
