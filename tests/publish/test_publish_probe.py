"""`subtool all --fork` asks the fork for its base branch before the benchmark runs: a fork that does not exist or
refuses the token stops `all` at once (nothing written), one the network cannot reach now only warns (an
air-gapped node runs, and publish tries at the end). The child process cannot import the model stack, so a run
that goes on past the probe stops at the run stage's own check ([run.missing_extra]) before it starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli_child import BLOCK_HEAVY

from subtool.errors import SubtoolError
from subtool.publish.api import probe_fork

from .helpers import git


def _all(
    tmp_path: Path, fork: str, token: str | None = None, path: str | None = None, extra: tuple[str, ...] = ()
) -> tuple[subprocess.CompletedProcess, list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_TOKEN", "GH_TOKEN")}
    if token:
        env["GITHUB_TOKEN"] = token
    if path is not None:
        env["PATH"] = path
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_HEAVY, "all", "--submitter", "TeamX", "--out", "o", "--fork", fork, *extra],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    return proc, [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_remote_fork_that_does_not_exist_stops_all_before_the_run(tmp_path, forge):
    fork = forge.git_url("alice", "no-such-results")
    proc, errors = _all(tmp_path, fork)
    assert proc.returncode == 3 and len(errors) == 1 and "[publish.fork_missing]" in errors[0], proc.stderr
    assert fork in errors[0] and "nothing has run yet" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_private_fork_that_refuses_the_token_stops_all_before_the_run_and_the_token_is_never_printed(tmp_path, forge):
    seed = tmp_path / "private-seed"
    seed.mkdir()
    git("init", "-q", "-b", "main", cwd=seed)
    git("commit", "-q", "--allow-empty", "-m", "start", cwd=seed)
    forge.create_repo("alice", "private-results", seed, private=True)
    wrong = "ghp_" + "0" * 36  # no user's token
    proc, errors = _all(tmp_path, forge.git_url("alice", "private-results"), token=wrong)
    assert proc.returncode == 3 and len(errors) == 1 and "[publish.bad_token]" in errors[0], proc.stderr
    assert wrong not in proc.stderr + proc.stdout
    assert not (tmp_path / "o").exists()


def test_a_fork_that_is_a_git_option_runs_nothing_and_stops_all_before_the_run(tmp_path):
    """git ls-remote read '--upload-pack=…:x/y' (an scp-like address to the parser) as its option and ran it."""
    proc, errors = _all(tmp_path, "--upload-pack=touch${IFS}PWNED;:x/y")
    assert proc.returncode == 2 and len(errors) == 1 and "[publish.fork_url]" in errors[0], proc.stderr
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "o").exists()


def test_probe_fork_refuses_a_fork_that_is_a_git_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SubtoolError) as info:
        probe_fork("--upload-pack=touch${IFS}PWNED;:x/y", "main")
    assert info.value.rule == "publish.fork_url" and not (tmp_path / "PWNED").exists()


def test_a_local_folder_that_is_no_git_repository_stops_all_before_the_run(tmp_path):
    (tmp_path / "not-a-repo").mkdir()
    proc, errors = _all(tmp_path, "not-a-repo")
    assert proc.returncode == 3 and len(errors) == 1 and "[publish.fork_missing]" in errors[0], proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_fork_the_network_cannot_reach_now_only_warns_and_the_run_goes_on(tmp_path):
    fork = f"http://127.0.0.1:{_closed_port()}/alice/results.git"
    proc, errors = _all(tmp_path, fork, extra=("--allow-short",))  # the demo is published only with it
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "cannot reach the fork" in warnings[0] and "tries again" in warnings[0], proc.stderr
    # past the probe: the run stage's own check is what stops this child
    assert proc.returncode == 2 and len(errors) == 1 and "[run.missing_extra]" in errors[0], proc.stderr


def test_a_fork_that_answers_gives_no_warning_and_the_run_goes_on(tmp_path, alice_fork):
    proc, errors = _all(tmp_path, alice_fork, extra=("--allow-short",))
    assert not [line for line in proc.stderr.splitlines() if line.startswith("warning:")], proc.stderr
    assert len(errors) == 1 and "[run.missing_extra]" in errors[0], proc.stderr


def test_probe_fork_asks_for_the_base_branch_only_and_judges_no_branch(alice_fork):
    """A fork without the base branch answers all the same: publish decides (the upstream may hold the base)."""
    assert probe_fork(alice_fork, "main") is None
    assert probe_fork(alice_fork, "no-such-branch") is None


def test_probe_fork_gives_up_on_a_server_that_never_answers(tmp_path):
    """A server that accepts the connection and says nothing: the probe's timeout turns it into a warning."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/alice/results.git"
        warning = probe_fork(url, "main", timeout_s=2)
    assert warning is not None and "cannot reach the fork" in warning and "timed out" in warning


def test_probe_fork_error_is_a_subtool_error_with_the_fork(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SubtoolError) as info:
        probe_fork(str(tmp_path / "empty"), "main")
    assert info.value.rule == "publish.fork_missing" and str(tmp_path / "empty") in str(info.value.path)


def test_all_with_a_fork_and_no_git_on_path_stops_before_the_run(tmp_path):
    """A node without git could never publish: said at once, in one line, not as a traceback after the run."""
    (tmp_path / "fork.git").mkdir()
    # python is started by its full path; git is nowhere
    proc, errors = _all(tmp_path, "fork.git", path=str(tmp_path / "empty-bin"))
    assert proc.returncode == 2 and len(errors) == 1 and "[publish.no_git]" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()
