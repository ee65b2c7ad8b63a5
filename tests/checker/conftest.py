"""Session fixtures: real LoadGen runs (generated once), the conformance trees built from them, and the
official checker's recorded verdicts."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checker"


# Both made once per test session, by the first xdist worker that asks (support/once.py): the checker's files are
# spread over both workers, and each built them (~9 s). Read-only: tests change copies (tree_copy).
@pytest.fixture(scope="session")
def loadgen_runs(tmp_path_factory):
    pytest.importorskip("mlperf_loadgen")
    from support.once import once_per_session
    from treegen import Run, generate_runs

    def build(work: Path) -> dict:
        return {key: {k: str(v) for k, v in asdict(run).items()} for key, run in generate_runs(work).items()}

    made = once_per_session(tmp_path_factory, "checker_loadgen_runs", build)
    paths = ("perf", "acc", "user_conf")
    return {key: Run(**{k: Path(v) if k in paths else v for k, v in run.items()}) for key, run in made.items()}


@pytest.fixture(scope="session")
def case_trees(loadgen_runs, tmp_path_factory):
    from cases import CASES, build_case
    from support.once import once_per_session

    def build(work: Path) -> dict:
        return {case.name: str(build_case(case, work / case.name, loadgen_runs)) for case in CASES}

    return {name: Path(tree) for name, tree in once_per_session(tmp_path_factory, "checker_case_trees", build).items()}


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
