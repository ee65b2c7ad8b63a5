"""Running the official MLCommons submission checker (a scratch copy, found by the `official_checker` fixture) on
a copy of a tree, as tests that compare verdicts do."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
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
    return (
        f"official MLCommons checker not found: no ../{OFFICIAL_COPY.as_posix()} beside the repository; set "
        "SUBTOOL_OFFICIAL to a checkout of mlcommons/inference"
    )


def official_errors(checker: Path, tree: Path, version: str, tmp_path: Path) -> tuple[list[str], str]:
    """The official checker's ERROR lines (sorted), and its whole output, with the tree's path written TREE. It
    runs on a copy: it writes into the tree it checks."""
    copy = tmp_path / f"official_copy_{version}"
    shutil.copytree(tree, copy)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "submission_checker.main",
            "--input",
            str(copy),
            "--version",
            version,
            "--csv",
            str(tmp_path / f"summary_{version}.csv"),
        ],
        cwd=checker,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = (proc.stdout + proc.stderr).replace(str(copy), "TREE")
    return sorted(re.sub(r"^\[[^\]]*ERROR\] ", "", ln) for ln in out.splitlines() if " ERROR] " in ln), out
