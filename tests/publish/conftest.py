"""Fixtures: a forge on 127.0.0.1 with an upstream results repository, users with tokens, and a fork."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from subtool.publish.api import PublishOptions

from .forge import TestForge
from .helpers import BASE_FILES, git, make_tree, write_files
from .results_tree import loadgen_logs

UPSTREAM = "comp/results"


class Users:
    """Tokens spelled like GitHub's, fresh for every test so that a leak is easy to grep for."""

    def __init__(self) -> None:
        self.organizers = "ghp_" + secrets.token_hex(18)
        self.alice = "ghp_" + secrets.token_hex(18)
        self.mallory = "ghp_" + secrets.token_hex(18)
        self.bob = "ghp_" + secrets.token_hex(18)


@pytest.fixture(scope="session")
def results_logs(tmp_path_factory) -> Path:
    """Real LoadGen logs of one short bert-99 Offline result, made once for the ci and publish tests that lay
    them out as a submitter (results_tree.lay_out_submitter copies them; nobody changes these)."""
    pytest.importorskip(
        "mlperf_loadgen", reason="the ci and publish tests check real LoadGen logs (pip install .[run])"
    )
    return loadgen_logs(tmp_path_factory.mktemp("loadgen"))


@pytest.fixture
def users() -> Users:
    return Users()


@pytest.fixture
def forge(tmp_path: Path, users: Users):
    forge = TestForge(tmp_path / "forge").start()
    for login in ("organizers", "alice", "mallory", "bob"):
        forge.add_user(login, getattr(users, login))
    seed = tmp_path / "seed"
    seed.mkdir()
    git("init", "-q", "-b", "main", cwd=seed)
    write_files(seed, BASE_FILES)
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "Start the results repository", cwd=seed)
    # A second branch that collects this round's submissions, as competitions do.
    git("branch", "scc25", cwd=seed)
    forge.create_repo("comp", "results", seed)
    yield forge
    forge.stop()


def github(forge: TestForge, token: str):
    from github import Auth, Github

    return Github(
        base_url=forge.api_url, auth=Auth.Token(token), seconds_between_writes=0, seconds_between_requests=0, retry=None
    )


@pytest.fixture
def alice_fork(forge: TestForge, users: Users) -> str:
    """Alice forks the upstream through the API, as she would on GitHub; returns the fork's git URL."""
    fork = github(forge, users.alice).get_repo(UPSTREAM).create_fork()
    assert fork.full_name == "alice/results"
    return fork.clone_url


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "tree")


@pytest.fixture
def fast(tmp_path: Path):
    """PublishOptions with no pacing and no back-off, for the in-process tests."""

    def make(tree: Path, fork: str, **kwargs) -> PublishOptions:
        kwargs.setdefault("cache", tmp_path / "cache")
        kwargs.setdefault("upstream", UPSTREAM)
        return PublishOptions(
            tree=tree,
            fork=fork,
            retries=kwargs.pop("retries", 2),
            backoff_s=0.0,
            seconds_between_writes=0.0,
            seconds_between_requests=0.0,
            timeout_s=10,
            **kwargs,
        )

    return make
