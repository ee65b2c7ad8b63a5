"""A real LoadGen run (bert-99 Offline on the instant SUT, generated once) for the reader tests, and the checker's
fuzzing strategies (tests/checker/fuzzing.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

CHECKER_TESTS = Path(__file__).resolve().parents[1] / "checker"
if str(CHECKER_TESTS) not in sys.path:
    sys.path.append(str(CHECKER_TESTS))


@pytest.fixture(scope="session")
def bert_offline_run(tmp_path_factory):
    pytest.importorskip("mlperf_loadgen")
    from treegen import _generate

    return _generate(tmp_path_factory.mktemp("mlperf-logs"), "bert-99-Offline", "bert-99", "Offline")
