"""Fixtures shared across the suite: a tiny random-weight BERT checkpoint and small generated SQuAD files.

They are made by the project's own demo generator (real Hugging Face checkpoint files, real SQuAD JSON), once
per session. Tests that use them need torch and transformers; they are requested only by such tests.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from support.official import official_checker_dir, official_skip_reason
from support.once import once_per_session

OFFICIAL_SKIP = official_skip_reason()

# One OpenMP thread per process unless the caller chose otherwise, set before any test imports torch (none of the
# imports above does; the `subtool run` children and the suite's Ray workers inherit it). The README runs three
# xdist workers on two cores: with torch's default of a thread per core their threads outnumber the cores, and an
# OpenMP thread spin-waits for a descheduled sibling (README.md gives the suite's times with and without it).
# Tests of --threads set theirs explicitly.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Fuzzing depth, one switch for the whole suite: HYPOTHESIS_PROFILE=ci (the default: a bounded number of examples)
# or HYPOTHESIS_PROFILE=long (the long run README.md gives). tests/checker/fuzzing.py reads the same variable.
_FIXTURE_OK = [HealthCheck.function_scoped_fixture]
settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=_FIXTURE_OK)
settings.register_profile("long", max_examples=5000, deadline=None, suppress_health_check=_FIXTURE_OK)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    if "SUBTOOL_FUZZ" in os.environ:  # the checker's old spelling, which would now be ignored without a word
        raise pytest.UsageError("SUBTOOL_FUZZ is gone: the long fuzzing run is HYPOTHESIS_PROFILE=long")


# The package and pack tests' LoadGen runs, trees and the two-demo hand-in (session fixtures, made once).
pytest_plugins = ["support.submission_fixtures"]


@pytest.fixture(scope="session")
def official_checker():
    checker = official_checker_dir()
    if checker is None:
        pytest.skip(official_skip_reason())
    for module in ("yaml", "numpy"):  # the official checker imports both
        pytest.importorskip(module, reason=f"the official checker needs {module} (pip install -e '.[test]')")
    return checker


@pytest.fixture(scope="session")
def subtool_cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "subtool-cache"


@pytest.fixture(scope="session", autouse=True)
def _isolated_session_cache(subtool_cache):
    """The same for session fixtures, which are made before the per-test fixture below runs: never the user's
    cache, where `subtool fetch` may have installed real checkpoints that a run without paths would use."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUBTOOL_CACHE", str(subtool_cache))
        yield


@pytest.fixture(autouse=True)
def _isolated_cache(subtool_cache, monkeypatch):
    # one cache for the session (demo assets are costly to make), never the user's ~/.cache
    monkeypatch.setenv("SUBTOOL_CACHE", str(subtool_cache))
    yield
    # fetched files in the shared cache would turn every later demo run into a run on them: a test that installs
    # assets uses a cache of its own (tests/runner/test_fetched_inputs.py's `cache`)
    leaked = (subtool_cache / "assets").exists()
    shutil.rmtree(subtool_cache / "assets", ignore_errors=True)  # the error stays with the test that leaked them
    assert not leaked, "a test installed fetched assets into the session's cache"


@pytest.fixture(autouse=True)
def _grad_mode_restored():
    """A test (or the code it runs) that leaves torch's grad mode off in this process breaks the next test that
    trains (bench/bert_proxy's tests: "element 0 of tensors does not require grad"), in whichever worker and order:
    the test that left it off fails instead, and the mode is put back."""
    yield
    torch = sys.modules.get("torch")
    if torch is not None and not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail("the test left torch's grad mode off in this process (set_grad_enabled / an unclosed no_grad)")


@pytest.fixture(scope="session")
def tiny_words():
    from subtool.runner.bert.demo import generate_vocabulary

    return generate_vocabulary(random.Random(7), n=400)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_words):
    """The tiny random-weight BERT (seeded): written once per session, whichever worker asks first, and read by
    all (no test writes into it), so that runs of it made once (tiny_offline_run) name the same files in every
    worker."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from subtool.runner.bert.demo import write_checkpoint

    def build(work):
        write_checkpoint(work / "model", tiny_words)
        return {"path": str(work / "model")}

    return Path(once_per_session(tmp_path_factory, "tiny_checkpoint", build)["path"])


@pytest.fixture(scope="session")
def small_squad(tmp_path_factory, tiny_words):
    """40 questions, 5 of them on two-window contexts: 45 features (written once per session, read by all)."""
    from subtool.runner.bert.demo import generate_squad

    def build(work):
        data = generate_squad(tiny_words, random.Random(3), n_questions=40, n_two_window=5)
        (work / "small-squad.json").write_text(json.dumps(data))
        return {"path": str(work / "small-squad.json")}

    return Path(once_per_session(tmp_path_factory, "small_squad", build)["path"])


@pytest.fixture(autouse=True)
def _sigint_restored():
    """Each test ends with the SIGINT disposition it started with. The CLI's SIGTERM handler (cli_signals) sets
    SIGINT to ignored, as a process about to end should; run in-process by a test, it would leave the pytest worker
    ignoring Ctrl-C for every later test, and every `subtool` started from that worker would inherit it (an
    ignored disposition survives exec). The Ctrl-C tests also install Python's handler themselves
    (test_llm_tp_interrupt.py): this alone did not stop them failing in the full suite."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    yield
    if signal.getsignal(signal.SIGINT) is not before:
        signal.signal(signal.SIGINT, before)
