"""A real, checkable submitter directory for the `subtool ci` tests: bert-99 Offline logs from LoadGen.

LoadGen runs an instant SUT for a short run in a child process (LoadGen keeps per-process state); the logs
are laid out by hand as `<division>/<submitter>/…`, so these tests do not depend on `subtool package`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from support.loadgen_trees import MEASUREMENTS, ZERO_ANSWER, LoadGenJob, run_loadgen, system_json

from .helpers import git, write_files

SYSTEM = system_json(framework="PyTorch", operating_system="Debian 12")
MEASUREMENTS = {**MEASUREMENTS, "starting_weights_filename": "bert.pt"}
USER_CONF = "bert.Offline.min_duration = 50\nbert.Offline.target_qps = 100000\n"
# Seconds the SUT waits before answering: past min_duration, so that LoadGen calls the performance run VALID.
DELAYS = {"performance": 0.07, "accuracy": 0.0}


def loadgen_logs(root: Path) -> Path:
    jobs = []
    for mode, delay in DELAYS.items():
        out = root / mode
        out.mkdir(parents=True, exist_ok=True)
        (out / "user.conf").write_text(USER_CONF)
        jobs.append(
            LoadGenJob(
                conf_model="bert",
                scenario="Offline",
                user_conf=out / "user.conf",
                answer=ZERO_ANSWER,
                runs=((mode, out, delay),),
            )
        )
    run_loadgen(jobs, timeout=120)
    return root


def lay_out_submitter(repo: Path, logs: Path, division: str, submitter: str, system: str = "box") -> Path:
    """`<division>/<submitter>/` with one bert-99 Offline result from `logs` (a short run)."""
    sub = repo / division / submitter
    for folder in ("documentation", "src"):
        (sub / folder).mkdir(parents=True, exist_ok=True)
        (sub / folder / "README.md").write_text(f"# {submitter} {folder}\n")
    (sub / "systems").mkdir(exist_ok=True)
    (sub / "systems" / f"{system}.json").write_text(
        json.dumps({**SYSTEM, "division": division, "submitter": submitter}, indent=2) + "\n"
    )
    res = sub / "results" / system / "bert-99" / "Offline"
    (res / "performance" / "run_1").mkdir(parents=True, exist_ok=True)
    (res / "accuracy").mkdir(exist_ok=True)
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
        shutil.copyfile(logs / "performance" / name, res / "performance" / "run_1" / name)
        shutil.copyfile(logs / "accuracy" / name, res / "accuracy" / name)
    full = (logs / "accuracy" / "mlperf_log_accuracy.json").read_bytes()
    short = full[:4096] + b"\n\n...\n\n" + full[-4096:] if len(full) > 8192 else full
    (res / "accuracy" / "mlperf_log_accuracy.json").write_bytes(short)
    digest = hashlib.sha256(full).hexdigest()
    (res / "accuracy" / "accuracy.txt").write_text(f'{{"exact_match": 0.5, "f1": 1.5}}\n\nhash={digest}\n')
    (res / "measurements.json").write_text(json.dumps(MEASUREMENTS, indent=2) + "\n")
    shutil.copyfile(logs / "performance" / "user.conf", res / "user.conf")
    (res / "README.md").write_text("# bert-99 Offline\n")
    return sub


def pr_checkout(root: Path, base: dict[str, str], branch: str) -> Path:
    """A clone of a results repository whose main holds `base` (one commit), checked out on a new PR `branch`:
    origin/main is the base a `subtool ci --base-ref` compares with. The caller adds the PR's files and commits
    them with `commit_all`."""
    upstream = root / "upstream"
    upstream.mkdir()
    git("init", "-q", "-b", "main", cwd=upstream)
    write_files(upstream, base)
    commit_all(upstream, "base")
    clone = root / "checkout"
    git("clone", "-q", str(upstream), str(clone))
    git("checkout", "-q", "-b", branch, cwd=clone)
    return clone


def commit_all(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)


WAIVE = ("--waive", "perf.min_duration")  # what a short run's results need to pass


def pr_over_good(root: Path, logs: Path) -> Path:
    """A checkout whose origin/main holds open/Good (it passes with WAIVE) and whose HEAD is a pull-request branch
    `pr` on it, for the test to add to."""
    clone = pr_checkout(root, {"README.md": "# results\n"}, "pr")
    git("checkout", "-q", "main", cwd=clone)
    lay_out_submitter(clone, logs, "open", "Good")
    commit_all(clone, "Good")
    git("update-ref", "refs/remotes/origin/main", "HEAD", cwd=clone)  # as if the base had it
    git("checkout", "-q", "-B", "pr", "origin/main", cwd=clone)
    return clone
