"""Running the official MLCommons submission checker (a scratch copy, found by the `official_checker` fixture) on
a copy of a tree, as tests that compare verdicts do."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path


def official_errors(checker: Path, tree: Path, version: str, tmp_path: Path) -> tuple[list[str], str]:
    """The official checker's ERROR lines (sorted), and its whole output, with the tree's path written TREE. It
    runs on a copy: it writes into the tree it checks."""
    copy = tmp_path / f"official_copy_{version}"
    shutil.copytree(tree, copy)
    proc = subprocess.run([sys.executable, "-m", "submission_checker.main", "--input", str(copy), "--version",
                           version, "--csv", str(tmp_path / f"summary_{version}.csv")],
                          cwd=checker, capture_output=True, text=True, timeout=300)
    out = (proc.stdout + proc.stderr).replace(str(copy), "TREE")
    return sorted(re.sub(r"^\[[^\]]*ERROR\] ", "", ln) for ln in out.splitlines() if " ERROR] " in ln), out
