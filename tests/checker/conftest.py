"""Session fixtures: real LoadGen runs (generated once), the conformance trees built from them, and the
official checker's recorded verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checker"


@pytest.fixture(scope="session")
def loadgen_runs(tmp_path_factory):
    pytest.importorskip("mlperf_loadgen")
    from treegen import generate_runs

    return generate_runs(tmp_path_factory.mktemp("loadgen-runs"))


@pytest.fixture(scope="session")
def case_trees(loadgen_runs, tmp_path_factory):
    from cases import CASES, build_case

    root = tmp_path_factory.mktemp("cases")
    return {case.name: build_case(case, root / case.name, loadgen_runs) for case in CASES}


@pytest.fixture(scope="session")
def official_data():
    return json.loads((FIXTURES / "official_verdicts.json").read_text())


@pytest.fixture(scope="session")
def official_checkout(official_checker):
    """The inference checkout (or bare tools/submission copy) holding the official checker."""
    return official_checker.parent.parent if official_checker.name == "submission" else official_checker


@pytest.fixture()
def tree_copy(case_trees, tmp_path):
    """A private copy of a case tree, for tests that change or add files."""
    import shutil

    def copy(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(case_trees[name], dest)
        return dest

    return copy
