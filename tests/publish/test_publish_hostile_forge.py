"""`subtool publish` against a forge whose API answers with addresses it should not: real git, the forge on
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
