"""`subtool publish` against the forge on 127.0.0.1: real git over HTTP, pull requests through PyGithub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from subtool.errors import SubtoolError
from subtool.publish.api import publish_tree

from .conftest import UPSTREAM, github
from .helpers import BASE_FILES, TREE_FILES, git

BRANCH = "subtool/TeamX"


def fork_files(forge, ref: str) -> dict[str, str]:
    bare = forge.repo_path("alice", "results")
    names = git("--git-dir", str(bare), "ls-tree", "-r", "--name-only", ref).splitlines()
    return {n: git("--git-dir", str(bare), "show", f"{ref}:{n}") + "\n" for n in names}


def pushes(forge) -> int:
    return len(forge.requests("POST", r"/alice/results\.git/git-receive-pack$"))


def pull_creations(forge) -> int:
    return len(forge.requests("POST", r"^/api/v3/repos/comp/results/pulls$"))


def run_cli(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    """The real `subtool` process, so that what it prints and leaves on disk is exactly what a user gets."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_TOKEN", "GH_TOKEN", "GITHUB_API_URL")}
    full_env.update(env, SUBTOOL_CACHE=str(tmp_path / "xdg-cache"), HOME=str(tmp_path / "home"))
    code = "import sys; from subtool.cli import main; sys.argv[0] = 'subtool'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, "publish", *args], capture_output=True, text=True, env=full_env, timeout=120
    )


def test_cli_publish_opens_pr_and_rerun_reuses_it(tmp_path, forge, users, alice_fork, tree):
    args = [
        str(tree),
        "--fork",
        alice_fork,
        "--upstream",
        UPSTREAM,
        "--base",
        "scc25",
        "--api-url",
        forge.api_url,
        "--json",
    ]
    first = run_cli(args, {"GITHUB_TOKEN": users.alice}, tmp_path)
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["pushed"] and doc["pr_created"] and doc["pr_number"] == 1
    assert doc["pr_url"] == f"{forge.url}/{UPSTREAM}/pull/1"
    assert doc["pr_url"] in first.stderr

    # The branch and its content, read from the forge's copy of the fork.
    assert forge.branch_sha("alice/results", BRANCH) == doc["commit"]
    published = fork_files(forge, BRANCH)
    assert all(published[rel] == text for rel, text in TREE_FILES.items())
    assert "closed/OtherTeam/systems/sysA.json" in published and "README.md" in published
    bare = forge.repo_path("alice", "results")
    assert git("--git-dir", str(bare), "rev-parse", f"{BRANCH}^") == forge.branch_sha(UPSTREAM, "scc25")

    # The pull request, read back through PyGithub as the organizers see it.
    pr = github(forge, users.organizers).get_repo(UPSTREAM).get_pull(1)
    assert (pr.head.ref, pr.head.sha, pr.base.ref, pr.state) == (BRANCH, doc["commit"], "scc25", "open")
    assert pr.head.repo.full_name == "alice/results"
    assert pr.title == "TeamX: bert-99 results (open)"
    assert "| open | TeamX | sys1 | bert-99 | Offline |" in pr.body

    second = run_cli(args, {"GITHUB_TOKEN": users.alice}, tmp_path)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert (again["pushed"], again["pr_created"], again["pr_url"], again["commit"]) == (
        False,
        False,
        doc["pr_url"],
        doc["commit"],
    )
    assert "already open, reused" in second.stderr and doc["pr_url"] in second.stderr
    assert pushes(forge) == 1 and pull_creations(forge) == 1
    assert github(forge, users.organizers).get_repo(UPSTREAM).get_pulls(state="all").totalCount == 1
    assert git("--git-dir", str(bare), "rev-list", "--count", BRANCH) == "2"


def test_changed_tree_updates_the_same_pull_request(forge, users, alice_fork, tree, fast, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    first = publish_tree(fast(tree, alice_fork))
    (tree / "open/TeamX/results/sys1/bert-99/SingleStream/accuracy").mkdir(parents=True)
    (tree / "open/TeamX/results/sys1/bert-99/SingleStream/accuracy/accuracy.txt").write_text("{}\n")
    second = publish_tree(fast(tree, alice_fork, title="TeamX: bert-99 Offline + SingleStream"))
    assert second.pushed and second.commit != first.commit
    assert (second.pr_number, second.pr_created) == (first.pr_number, False)
    pr = github(forge, users.organizers).get_repo(UPSTREAM).get_pull(first.pr_number)
    assert pr.head.sha == second.commit
    assert pr.title == "TeamX: bert-99 Offline + SingleStream"
    assert "| open | TeamX | sys1 | bert-99 | SingleStream |" in pr.body
    assert pull_creations(forge) == 1


def test_no_pr_pushes_and_prints_the_forge_compare_url(forge, users, alice_fork, tree, fast, monkeypatch):
    monkeypatch.setenv("GH_TOKEN", users.alice)
    seen = len(forge.log)
    result = publish_tree(fast(tree, alice_fork, no_pr=True))
    assert result.pushed and result.pr_url is None
    assert result.compare_url == f"{forge.url}/{UPSTREAM}/compare/main...alice:{BRANCH}?expand=1"
    assert [path for _m, path, _s in forge.log[seen:] if path.startswith("/api/")] == []


def test_dry_run_reports_the_existing_pull_and_pushes_nothing(forge, users, alice_fork, tree, fast, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    publish_tree(fast(tree, alice_fork))
    (tree / "open/TeamX/documentation/README.md").write_text("# TeamX, improved\n")
    before = forge.branch_sha("alice/results", BRANCH)
    messages = []

    class Console:
        def print(self, text, **_kw):
            messages.append(text)

    result = publish_tree(fast(tree, alice_fork, dry_run=True), Console())
    assert not result.pushed and result.changes
    assert forge.branch_sha("alice/results", BRANCH) == before
    assert any(m.startswith("would reuse pull request") for m in messages)
    assert pushes(forge) == 1


def test_fork_that_lacks_the_base_branch_starts_from_the_upstream(tmp_path, forge, users, tree, fast, monkeypatch):
    """GitHub forks copy only the default branch unless asked; the submission branch comes from the upstream."""
    fork = github(forge, users.bob).get_repo(UPSTREAM).create_fork(default_branch_only=True)
    assert forge.branch_sha("bob/results", "scc25") is None
    monkeypatch.setenv("GITHUB_TOKEN", users.bob)
    result = publish_tree(fast(tree, fork.clone_url, base="scc25"))
    assert result.pushed and result.pr_created
    bare = forge.repo_path("bob", "results")
    assert git("--git-dir", str(bare), "rev-parse", f"{BRANCH}^") == forge.branch_sha(UPSTREAM, "scc25")
    pr = github(forge, users.organizers).get_repo(UPSTREAM).get_pull(result.pr_number)
    assert (pr.base.ref, pr.head.label) == ("scc25", f"bob:{BRANCH}")


def test_blobless_cache_holds_no_other_submitters_files(forge, users, alice_fork, tree, fast, monkeypatch, tmp_path):
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    publish_tree(fast(tree, alice_fork))
    [cache] = [p for p in (tmp_path / "cache").iterdir() if p.suffix == ".git"]
    other = git(
        "--git-dir", str(forge.repo_path("comp", "results")), "rev-parse", "main:closed/OtherTeam/systems/sysA.json"
    )
    missing = git("--git-dir", str(cache), "rev-list", "--objects", "--missing=print", "refs/subtool/base")
    assert f"?{other}" in missing.splitlines()
    # and building the commit fetched nothing after the first fetch: one ls-remote, one fetch (2 POSTs), one push
    assert len(forge.requests("POST", r"/alice/results\.git/git-upload-pack$")) == 3


# ------------------------------------------------------------------------------------------------ errors
def _error(opts) -> SubtoolError:
    with pytest.raises(SubtoolError) as info:
        publish_tree(opts)
    return info.value


def test_no_token_fails_before_any_network(forge, alice_fork, tree, fast, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("GH_TOKEN", raising=False)
    err = _error(fast(tree, alice_fork))
    assert (err.rule, err.exit_code) == ("publish.no_token", 2)
    assert "--no-pr" in err.hint
    assert forge.log[-1][1].endswith("/forks")  # nothing after the fixture made the fork


def test_bad_token_is_a_clean_401(forge, users, alice_fork, tree, fast, monkeypatch):
    monkeypatch.setenv("PUBLISH_TOKEN", "ghp_" + "0" * 36)
    err = _error(fast(tree, alice_fork, token_env="PUBLISH_TOKEN"))
    assert (err.rule, err.exit_code) == ("publish.bad_token", 3)
    assert pushes(forge) == 0


def test_missing_fork_and_missing_base(forge, users, tree, fast, monkeypatch, alice_fork):
    monkeypatch.setenv("GITHUB_TOKEN", users.bob)
    err = _error(fast(tree, forge.git_url("bob", "results")))
    assert (err.rule, err.exit_code) == ("publish.fork_missing", 3)
    assert f"{forge.url}/{UPSTREAM}/fork" in err.hint
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    err = _error(fast(tree, alice_fork, base="no-such-round"))
    assert (err.rule, err.exit_code) == ("publish.base_missing", 3)
    assert pushes(forge) == 0


def test_no_push_rights_through_the_api_and_through_git(forge, users, alice_fork, tree, fast, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", users.mallory)
    err = _error(fast(tree, alice_fork))
    assert (err.rule, err.exit_code) == ("publish.no_push_rights", 3)
    err = _error(fast(tree, alice_fork, no_pr=True))  # no API checks: git itself gets the 403
    assert (err.rule, err.exit_code) == ("publish.no_push_rights", 3)
    assert forge.branch_sha("alice/results", BRANCH) is None


def test_push_without_token_over_http_says_to_set_one(forge, alice_fork, tree, fast, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("GH_TOKEN", raising=False)
    err = _error(fast(tree, alice_fork, no_pr=True))
    assert (err.rule, err.exit_code) == ("publish.no_token", 3)
    assert "GITHUB_TOKEN" in err.hint


def test_api_5xx_is_retried_with_backoff(forge, users, alice_fork, tree, fast, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    forge.inject(r"^GET /api/v3/repos/comp/results$", count=2, status=502)
    forge.inject(r"^POST /api/v3/repos/comp/results/pulls$", count=1, status=503)
    result = publish_tree(fast(tree, alice_fork, retries=3))
    assert result.pr_created and result.pushed
    assert [s for _m, p, s in forge.log if p == "/api/v3/repos/comp/results"][-3:] == [502, 502, 200]


def test_persistent_5xx_after_push_leaves_a_rerunnable_state(forge, users, alice_fork, tree, fast, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    forge.inject(r"^POST /api/v3/repos/comp/results/pulls$", count=100, status=502)
    err = _error(fast(tree, alice_fork, retries=2))
    assert err.exit_code == 3 and "opening the pull request" in err.message
    assert "re-run the same command" in err.hint and "/compare/main...alice:" in err.hint
    forge.faults.clear()
    result = publish_tree(fast(tree, alice_fork))
    assert (result.pushed, result.pr_created) == (False, True)
    assert pushes(forge) == 1


def test_primary_rate_limit_fails_fast_with_reset_time(forge, users, alice_fork, tree, fast, monkeypatch):
    import time

    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    forge.inject(
        r"^GET /api/v3/user$",
        count=10,
        status=403,
        body={"message": "API rate limit exceeded for user ID 1.", "documentation_url": "x"},
        headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time()) + 3000)},
    )
    err = _error(fast(tree, alice_fork))
    assert (err.rule, err.exit_code) == ("publish.rate_limit", 3)
    assert "resets in about" in err.message
    assert pushes(forge) == 0


def test_secondary_rate_limit_is_waited_out(forge, users, alice_fork, tree, fast, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    forge.inject(
        r"^GET /api/v3/repos/alice/results$",
        count=1,
        status=403,
        headers={"Retry-After": "0"},
        body={"message": "You have exceeded a secondary rate limit. Please wait a few minutes."},
    )
    result = publish_tree(fast(tree, alice_fork))
    assert result.pr_created


class Recorder:
    """A console that keeps what publishing says."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def print(self, text, **_kw) -> None:
        self.lines.append(str(text))


def test_network_drop_mid_push_is_retried(forge, users, alice_fork, tree, fast, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    # Two drops: curl silently retries a request once on a dead kept-alive connection, so the second drop is
    # the one git reports, and subtool's own retry does the rest.
    forge.inject(r"^POST /alice/results\.git/git-receive-pack$", count=2, drop=True)
    console = Recorder()
    result = publish_tree(fast(tree, alice_fork), console)
    assert result.pushed and forge.branch_sha("alice/results", BRANCH) == result.commit
    assert [s for _m, _p, s in forge.requests("POST", r"git-receive-pack$")] == [0, 0, 200]
    assert any("network trouble" in line and "retry 1/2" in line for line in console.lines)


def test_network_down_mid_push_fails_cleanly_with_nothing_pushed(forge, users, alice_fork, tree, fast, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    forge.inject(r"^POST /alice/results\.git/git-receive-pack$", count=100, drop=True)
    refs_before = git("--git-dir", str(forge.repo_path("alice", "results")), "for-each-ref")
    console = Recorder()
    with pytest.raises(SubtoolError) as info:
        publish_tree(fast(tree, alice_fork, retries=2), console)
    err = info.value
    assert (err.rule, err.exit_code) == ("publish.network", 3)
    assert "nothing was pushed" in err.hint
    assert forge.branch_sha("alice/results", BRANCH) is None and pull_creations(forge) == 0
    assert sum("network trouble" in line for line in console.lines) == 2
    assert git("--git-dir", str(forge.repo_path("alice", "results")), "for-each-ref") == refs_before


def test_api_unreachable_is_a_network_error(users, alice_fork, tree, fast, monkeypatch):
    import socket

    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/api/v3"
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    err = _error(fast(tree, alice_fork, api_url=dead, retries=1))
    assert (err.rule, err.exit_code) == ("publish.network", 3)


# ------------------------------------------------------------------------------- the forge itself
def test_forge_validates_like_github(forge, users, alice_fork):
    from github import BadCredentialsException, GithubException

    upstream = github(forge, users.alice).get_repo(UPSTREAM)
    with pytest.raises(GithubException) as info:
        upstream.create_pull(title="t", body="", base="main", head="alice:no-such-branch")
    assert info.value.status == 422 and info.value.data["message"] == "Validation Failed"
    with pytest.raises(GithubException) as info:
        upstream.create_pull(title="t", body="", base="no-such-base", head="alice:main")
    assert info.value.status == 422
    git("--git-dir", str(forge.repo_path("alice", "results")), "branch", "topic", "main")
    upstream.create_pull(title="t", body="", base="main", head="alice:topic")
    with pytest.raises(GithubException) as info:
        upstream.create_pull(title="t", body="", base="main", head="alice:topic")
    assert info.value.status == 422 and "already exists" in info.value.data["errors"][0]["message"]
    with pytest.raises(BadCredentialsException):
        _ = github(forge, "ghp_wrong").get_user().login
    assert [p.head.ref for p in upstream.get_pulls(head="alice:topic")] == ["topic"]
    assert list(upstream.get_pulls(head="alice:other")) == []


def test_base_files_are_untouched_upstream(forge, users, alice_fork, tree, fast, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    before = forge.branch_sha(UPSTREAM, "main")
    publish_tree(fast(tree, alice_fork))
    assert forge.branch_sha(UPSTREAM, "main") == before
    assert fork_files(forge, "main") == BASE_FILES


def test_no_api_at_the_address_says_so(forge, users, alice_fork, tree, fast, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    err = _error(fast(tree, alice_fork, api_url=f"{forge.url}/not-an-api/v3"))
    assert (err.rule, err.exit_code) == ("publish.no_api", 3)
    assert "--no-pr" in err.hint and pushes(forge) == 0
