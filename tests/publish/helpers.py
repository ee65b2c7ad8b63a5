"""Small builders shared by the publish and ci tests: results repositories, submission trees, git queries."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Maintainer",
    "GIT_AUTHOR_EMAIL": "maintainer@example.invalid",
    "GIT_COMMITTER_NAME": "Test Maintainer",
    "GIT_COMMITTER_EMAIL": "maintainer@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
}


def git(*args: str, cwd: Path | None = None, check: bool = True) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_ENV)
    env["HOME"] = os.environ.get("HOME", "/nonexistent")
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


BASE_FILES = {
    "README.md": "# Results of the competition\n",
    "closed/OtherTeam/results/sysA/bert-99/Offline/performance/run_1/mlperf_log_summary.txt": "other team\n",
    "closed/OtherTeam/systems/sysA.json": '{"system_name": "sysA"}\n',
    # TeamX published before: one earlier document stays, one stale log inside a result directory goes.
    "open/TeamX/documentation/earlier.md": "from an earlier round\n",
    "open/TeamX/results/sys1/bert-99/Offline/stale_from_old_run.txt": "stale\n",
}

TREE_FILES = {
    "open/TeamX/systems/sys1.json": '{"system_name": "sys1", "division": "open"}\n',
    "open/TeamX/results/sys1/bert-99/Offline/performance/run_1/mlperf_log_summary.txt": "Result is : VALID\n",
    "open/TeamX/results/sys1/bert-99/Offline/accuracy/accuracy.txt": '{"exact_match": 1.0, "f1": 2.0}\n',
    "open/TeamX/results/sys1/bert-99/Offline/measurements.json": '{"input_data_types": "int32"}\n',
    "open/TeamX/documentation/README.md": "# TeamX\n",
}


def make_results_repo(root: Path, files: dict[str, str] | None = None, branch: str = "main") -> Path:
    """A bare repository holding one commit of `files` on `branch`."""
    seed = root / "seed"
    seed.mkdir(parents=True)
    git("init", "-q", "-b", branch, cwd=seed)
    write_files(seed, BASE_FILES if files is None else files)
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "Start the results repository", cwd=seed)
    bare = root / "upstream.git"
    git("clone", "-q", "--bare", str(seed), str(bare))
    return bare


def make_tree(root: Path, files: dict[str, str] | None = None) -> Path:
    write_files(root, TREE_FILES if files is None else files)
    return root


def branch_files(bare: Path, ref: str) -> dict[str, str]:
    names = git("--git-dir", str(bare), "ls-tree", "-r", "--name-only", ref).splitlines()
    return {n: git("--git-dir", str(bare), "show", f"{ref}:{n}") + "\n" for n in names}


def rev(bare: Path, ref: str) -> str | None:
    out = git("--git-dir", str(bare), "rev-parse", "--verify", "-q", ref, check=False)
    return out or None


def run_ci(*args: str):
    """`subtool ci` through the CLI, with no GitHub step summary to write to."""
    from typer.testing import CliRunner

    from subtool.cli import app

    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    return CliRunner().invoke(app, ["ci", *args], env=env)
