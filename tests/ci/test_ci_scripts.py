"""The CI scripts themselves: `.ci/lint-workflows` passes this repository's workflows, catches a bad one and never
reads as a pass when it checked nothing, and `.ci/run` installs the workflow linters before the test suite runs (so
that the linter test here runs, not skips)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = ROOT / ".ci" / "lint-workflows"
RUN = ROOT / ".ci" / "run"


def _lint(env: dict, *args: str) -> subprocess.CompletedProcess:
    """`.ci/lint-workflows ARGS` run by bash, with exactly the environment `env`."""
    return subprocess.run(
        [shutil.which("bash"), str(LINT), *args], env=env, capture_output=True, text=True, timeout=120
    )


def _bare_path(tmp_path: Path) -> str:
    """A PATH holding only what the script itself needs: no actionlint, node, npm, zizmor or check-jsonschema."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname",):
        os.symlink(shutil.which(tool), bin_dir / tool)
    return str(bin_dir)


def test_lint_workflows_fails_when_no_linter_is_available(tmp_path):
    env = {
        "PATH": _bare_path(tmp_path),
        "HOME": str(tmp_path),
        "SUBTOOL_LINT_NO_INSTALL": "1",
        "SUBTOOL_LINT_CACHE": str(tmp_path / "empty-cache"),
    }
    res = _lint(env)
    assert res.returncode == 3, res.stderr
    assert "no linter available: nothing was checked" in res.stderr
    assert "neither actionlint nor node/npm found" in res.stderr
    assert res.stderr.count("not installed, SUBTOOL_LINT_NO_INSTALL is set") == 2


def test_lint_workflows_fails_when_installing_fails(tmp_path):
    # no node/npm on PATH and a python that cannot make a venv: every install fails, so nothing is checked
    env = {
        "PATH": _bare_path(tmp_path),
        "HOME": str(tmp_path),
        "PYTHON": str(tmp_path / "no-python"),
        "SUBTOOL_LINT_CACHE": str(tmp_path / "empty-cache"),
    }
    res = _lint(env)
    assert res.returncode == 3, res.stderr
    assert "pip install failed" in res.stderr and "nothing was checked" in res.stderr


def test_ci_run_installs_the_linters_before_the_tests():
    lines = [ln.strip() for ln in RUN.read_text().splitlines() if not ln.strip().startswith("#")]
    lint = next(i for i, ln in enumerate(lines) if re.fullmatch(r"\.ci/lint-workflows", ln))
    tests = next(i for i, ln in enumerate(lines) if ln == 'bash -c "$test_cmd"')
    assert lint < tests
    # and the cache it installs into is the one the test suite looks in
    assert any(ln.startswith("export SUBTOOL_LINT_CACHE=") for ln in lines[:lint])


def test_workflow_linters_pass_here_and_catch_a_bad_workflow(tmp_path):
    env = {**os.environ, "SUBTOOL_LINT_NO_INSTALL": "1"}
    good = _lint(env)
    if "no linter available" in good.stderr:
        pytest.skip("no workflow linter installed here (run .ci/lint-workflows once to install them)")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = tmp_path / "wf"
    bad.mkdir()
    (bad / "bad.yml").write_text(
        "name: bad\non: pull_request_target\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
        '      - uses: actions/checkout@v4\n      - run: echo "${{ github.event.pull_request.title }}"\n'
        "        timeout-minute: 3\n"
    )
    caught = _lint(env, str(bad))
    assert caught.returncode == 1 and "problems found by" in caught.stderr


def test_a_cached_linter_venv_without_pip_is_made_again(tmp_path):
    """A venv left in the linters' cache without pip (an interrupted run, a Python without ensurepip) was kept, so
    check-jsonschema and zizmor were skipped on every later run while CI passed on actionlint alone."""
    cache = tmp_path / "cache"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(cache / "venv")], check=True, timeout=120)
    made = tmp_path / "venv-made-again"
    python = tmp_path / "python"  # the Python the script makes venvs with: says it was asked, then fails
    python.write_text(f'#!/bin/sh\necho "$@" >> {made}\nexit 1\n')
    python.chmod(0o755)
    env = {"PATH": _bare_path(tmp_path), "HOME": str(tmp_path), "PYTHON": str(python), "SUBTOOL_LINT_CACHE": str(cache)}
    res = _lint(env)
    assert res.returncode == 3, res.stderr
    assert made.read_text().splitlines() == [f"-m venv {cache / 'venv'}"] * 2, res.stderr  # once for each linter
