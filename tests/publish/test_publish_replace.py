"""The branch changes under a publish: someone else pushes to it while subtool reads the fork, or between the read
and the push. Real git against a local bare fork; the other push happens when publish says it is at that step."""

from __future__ import annotations

from pathlib import Path

import pytest

from subtool.errors import SubtoolError
from subtool.publish.api import PublishOptions, publish_tree

from .conftest import UPSTREAM
from .helpers import branch_files, git, make_results_repo, make_tree, rev

BRANCH = "subtool/TeamX"
LLAMA = "open/TeamX/results/sys1/llama2-70b-99/Offline"


class _PushWhen:
    """A console that, when publish prints the line starting with `cue`, lets a teammate force-push the branch."""

    def __init__(self, fork: Path, tmp_path: Path, cue: str) -> None:
        self.fork, self.cue, self.pushed = fork, cue, None
        self.lines: list[str] = []
        self.work = tmp_path / "teammate"

    def print(self, text: str, **_kwargs) -> None:
        self.lines.append(text)
        if text.startswith(self.cue) and self.pushed is None:
            self.pushed = _teammate_push(self.fork, self.work)


def _teammate_push(fork: Path, work: Path) -> str:
    """A teammate's llama result, pushed to the branch from a clone of the fork's main."""
    git("clone", "-q", "-b", "main", str(fork), str(work))
    (work / LLAMA).mkdir(parents=True)
    (work / LLAMA / "accuracy.txt").write_text('{"ROUGE1": 44.4}\n')
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "TeamX: llama by hand", cwd=work)
    git("push", "-q", "-f", "origin", f"HEAD:refs/heads/{BRANCH}", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


@pytest.mark.parametrize("replace", [False, True])
def test_branch_pushed_while_the_fork_is_read_is_what_publish_builds_on(tmp_path, replace):
    """Pushed between the listing of the fork's branches and the fetch: the branch as fetched is what is kept (or
    dropped, with --replace) and what the push's lease expects, not the tip the listing saw."""
    fork = make_results_repo(tmp_path / "forge")
    opts = PublishOptions(tree=make_tree(tmp_path / "tree"), fork=str(fork), cache=tmp_path / "c", replace=replace)
    publish_tree(opts)
    console = _PushWhen(fork, tmp_path, "fetching main")
    result = publish_tree(PublishOptions(**{**vars(opts), "cache": tmp_path / "fresh"}), console)
    assert console.pushed and result.pushed and rev(fork, BRANCH) == result.commit
    assert (result.kept, result.dropped) == (([], [LLAMA]) if replace else ([LLAMA], []))
    assert (f"{LLAMA}/accuracy.txt" in branch_files(fork, BRANCH)) is not replace


@pytest.mark.parametrize("replace", [False, True])
def test_branch_pushed_between_read_and_push_is_left_alone(tmp_path, replace):
    """The lease refuses the push; the hint says what re-running does to the teammate's push (--replace drops it)."""
    fork = make_results_repo(tmp_path / "forge")
    opts = PublishOptions(tree=make_tree(tmp_path / "tree"), fork=str(fork), cache=tmp_path / "c", replace=replace)
    first = publish_tree(opts)
    (tmp_path / "tree" / "open/TeamX/documentation/README.md").write_text("# TeamX, again\n")
    console = _PushWhen(fork, tmp_path, f"pushing {BRANCH}")
    with pytest.raises(SubtoolError) as info:
        publish_tree(opts, console)
    assert (info.value.rule, info.value.exit_code) == ("publish.branch_moved", 3)
    assert rev(fork, BRANCH) == console.pushed != first.commit
    assert ("re-running with --replace drops it" in info.value.hint) is replace
    assert info.value.hint.startswith("nothing was pushed" if replace else "re-run the same command")


def test_an_upstream_base_that_moved_since_the_fork_was_made_is_said(
    tmp_path, forge, users, alice_fork, fast, monkeypatch
):
    """The commit is built on the fork's base; when the upstream's has moved on (it merged the team's earlier pull
    request, say), the pull request may show what upstream already has, or conflict: publish says so."""
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    tree = make_tree(tmp_path / "tree")
    in_step = publish_tree(fast(tree, alice_fork))
    assert not [n for n in in_step.notes if "Sync fork" in n]
    work = tmp_path / "organizers"
    git("clone", "-q", "-b", "main", str(forge.repo_path("comp", "results")), str(work))
    (work / "README.md").write_text("# Results, with the first merged submissions\n")
    git("commit", "-q", "-am", "Merge the first submissions", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    (tree / "open/TeamX/documentation/README.md").write_text("# TeamX, again\n")
    behind = publish_tree(fast(tree, alice_fork, replace=True))
    assert behind.pushed and behind.base_commit == in_step.base_commit != forge.branch_sha(UPSTREAM, "main")
    [note] = [n for n in behind.notes if "Sync fork" in n]
    assert note.startswith(f"the fork's main ({in_step.base_commit[:12]}) is not {UPSTREAM}'s")


def test_a_branch_whose_pull_request_goes_to_another_base_is_not_rebuilt_on_this_one(
    tmp_path, forge, users, alice_fork, fast, monkeypatch
):
    """Published into main, then again with --base scc25 (the competition's branch): the push would rebuild the
    branch on scc25, and the pull request into main, still open, would show scc25's other results as this team's.
    Refused before anything is pushed; the first pull request and its branch stay as they were."""
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    tree = make_tree(tmp_path / "tree")
    first = publish_tree(fast(tree, alice_fork))
    work = tmp_path / "alice"  # the fork's scc25 holds another team's results that main does not
    git("clone", "-q", "-b", "scc25", str(forge.repo_path("alice", "results")), str(work))
    (work / "closed/TeamZ/systems").mkdir(parents=True)
    (work / "closed/TeamZ/systems/z.json").write_text("{}\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "TeamZ on scc25", cwd=work)
    git("push", "-q", "origin", "HEAD:scc25", cwd=work)
    for replace in (False, True):
        with pytest.raises(SubtoolError) as info:
            publish_tree(fast(tree, alice_fork, base="scc25", replace=replace))
        assert (info.value.rule, info.value.exit_code) == ("publish.other_base", 2)
        assert first.pr_url in info.value.message and "into main" in info.value.message
        assert "--branch" in info.value.hint
        assert rev(forge.repo_path("alice", "results"), BRANCH) == first.commit
    other = publish_tree(fast(tree, alice_fork, base="scc25", branch="subtool/TeamX-scc25"))
    assert other.pushed and other.pr_created


class _DeleteWhen(_PushWhen):
    """A console that, at the cue, deletes the branch on the fork (a teammate cleaning up, a closed pull request's
    branch deleted by the forge)."""

    ref = BRANCH

    def print(self, text: str, **_kwargs) -> None:
        self.lines.append(text)
        if text.startswith(self.cue) and self.pushed is None:
            git("--git-dir", str(self.fork), "update-ref", "-d", f"refs/heads/{self.ref}")
            self.pushed = "deleted"


@pytest.mark.parametrize("replace", [False, True])
def test_branch_deleted_while_the_fork_is_read_is_built_anew_on_the_base(tmp_path, replace):
    """Deleted between the listing of the fork's branches and the fetch: the fetch of the listed branch failed as
    a generic 'git failed'. Publish now goes on as if the branch were absent: built on the base, pushed with a lease
    that expects no branch, and it says so."""
    fork = make_results_repo(tmp_path / "forge")
    llama = make_tree(tmp_path / "llama", {f"{LLAMA}/accuracy.txt": '{"ROUGE1": 44.4}\n'})
    publish_tree(PublishOptions(tree=llama, fork=str(fork), cache=tmp_path / "c"))
    opts = PublishOptions(tree=make_tree(tmp_path / "tree"), fork=str(fork), cache=tmp_path / "c", replace=replace)
    console = _DeleteWhen(fork, tmp_path, "fetching main")
    result = publish_tree(opts, console)
    assert console.pushed and result.pushed and rev(fork, BRANCH) == result.commit
    assert (result.kept, result.dropped) == ([], [])  # nothing of the deleted branch is carried, nor dropped
    assert git("--git-dir", str(fork), "rev-parse", f"{BRANCH}^") == rev(fork, "main")
    assert f"{LLAMA}/accuracy.txt" not in branch_files(fork, BRANCH)
    [note] = [n for n in result.notes if "deleted on the fork" in n]
    assert note.startswith(f"branch {BRANCH} was deleted on the fork while publish read it")


def test_base_deleted_while_the_fork_is_read_says_so(tmp_path):
    """The base deleted between the listing and the fetch: said as such (a branch deleted while publishing read
    it, exit 3), not as a generic git failure; the branch is left as it was."""
    fork = make_results_repo(tmp_path / "forge")
    opts = PublishOptions(tree=make_tree(tmp_path / "tree"), fork=str(fork), cache=tmp_path / "c")
    first = publish_tree(opts)
    (tmp_path / "tree" / "open/TeamX/documentation/README.md").write_text("# TeamX, again\n")
    console = _DeleteWhen(fork, tmp_path, "fetching main")
    console.ref = "main"
    with pytest.raises(SubtoolError) as info:
        publish_tree(opts, console)
    assert (info.value.rule, info.value.exit_code) == ("publish.branch_moved", 3)
    assert "deleted on the fork" in info.value.message and "refs/heads/main" in info.value.message
    assert rev(fork, BRANCH) == first.commit and rev(fork, "main") is None
