"""`subtool publish` against a forge that answers as GitHub may and a hostile one might: real git, the forge on
127.0.0.1 (tests/publish/forge.py) with one answer changed."""

from __future__ import annotations

import pytest

from subtool.errors import SubtoolError
from subtool.publish.api import publish_tree

from .conftest import UPSTREAM, github
from .helpers import git, make_results_repo


@pytest.mark.parametrize("kind", ["file", "path", "other-host", "ext"])
def test_an_upstream_clone_address_off_the_forge_is_never_fetched(
    tmp_path, forge, users, tree, fast, monkeypatch, kind
):
    """A fork without the base branch takes it from the upstream's clone_url, as the API gives it: a file:// URL
    had git read a private repository of this machine and push its history to the fork."""
    private = make_results_repo(tmp_path / "private", {"secret.txt": "private notes\n"}, branch="scc25")
    secret_commit = git("--git-dir", str(private), "rev-parse", "scc25")
    address = {
        "file": f"file://{private}",
        "path": str(private),
        "other-host": "https://git.example.invalid/comp/results.git",
        "ext": f"ext::git %s {private}",
    }[kind]
    fork = github(forge, users.bob).get_repo(UPSTREAM).create_fork(default_branch_only=True)
    plain = forge.repo_json

    def repo_json(repo, viewer, *, full=True):
        data = plain(repo, viewer, full=full)
        return {**data, "clone_url": address} if repo.full_name == UPSTREAM else data

    monkeypatch.setattr(forge, "repo_json", repo_json)
    monkeypatch.setenv("GITHUB_TOKEN", users.bob)
    with pytest.raises(SubtoolError) as err:
        publish_tree(fast(tree, fork.clone_url, base="scc25"))
    assert err.value.rule == "publish.api" and err.value.exit_code == 3, err.value
    bare = forge.repo_path("bob", "results")
    assert git("--git-dir", str(bare), "rev-parse", "--verify", "-q", f"{secret_commit}^{{commit}}", check=False) == ""
    assert forge.branch_sha("bob/results", "subtool/TeamX") is None


def test_a_long_default_title_is_cut_so_the_pull_request_opens(tmp_path, forge, users, alice_fork, fast, monkeypatch):
    """Two teams' names of 200 characters made a default title GitHub refuses (422) after the branch was pushed,
    on every re-run."""
    from .helpers import TREE_FILES, make_tree

    files = {}
    for name in ("A" * 200, "B" * 200):
        files.update({k.replace("/TeamX/", f"/{name}/"): v for k, v in TREE_FILES.items()})
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    result = publish_tree(fast(make_tree(tmp_path / "long", files), alice_fork))
    assert result.pr_created and len(result.title) <= 256
    pr = github(forge, users.organizers).get_repo(UPSTREAM).get_pull(result.pr_number)
    assert pr.title == result.title


@pytest.mark.parametrize("title", ["x" * 257, "one\ntwo"])
def test_a_title_github_would_refuse_is_refused_before_the_push(
    forge, users, alice_fork, tree, fast, monkeypatch, title
):
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    with pytest.raises(SubtoolError) as err:
        publish_tree(fast(tree, alice_fork, title=title))
    assert err.value.rule == "publish.title" and err.value.exit_code == 2
    assert forge.branch_sha("alice/results", "subtool/TeamX") is None
