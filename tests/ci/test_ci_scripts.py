"""The CI scripts themselves: `.ci/lint-workflows` never reads as a pass when it checked nothing, and `.ci/run`
installs the workflow linters before the test suite runs (so the linter test in tests/publish runs, not skips)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = ROOT / ".ci" / "lint-workflows"
RUN = ROOT / ".ci" / "run"


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
    res = subprocess.run([shutil.which("bash"), str(LINT)], env=env, capture_output=True, text=True, timeout=60)
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
    res = subprocess.run([shutil.which("bash"), str(LINT)], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 3, res.stderr
    assert "pip install failed" in res.stderr and "nothing was checked" in res.stderr


def test_ci_run_installs_the_linters_before_the_tests():
    lines = [ln.strip() for ln in RUN.read_text().splitlines() if not ln.strip().startswith("#")]
    lint = next(i for i, ln in enumerate(lines) if re.fullmatch(r"\.ci/lint-workflows", ln))
    tests = next(i for i, ln in enumerate(lines) if ln == 'bash -c "$test_cmd"')
    assert lint < tests
    # and the cache it installs into is the one the test suite looks in
    assert any(ln.startswith("export SUBTOOL_LINT_CACHE=") for ln in lines[:lint])
