"""`subtool publish` against what an unlucky user or an attacker hands it: paths git will not hold, a cache left
behind by a killed git, a fork that is a file, a branch that is the base. Real git, a local bare fork."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from subtool.cli import app

from .helpers import TREE_FILES, branch_files, git, make_results_repo, make_tree, rev

BRANCH = "subtool/TeamX"


@pytest.fixture
def fork(tmp_path: Path) -> Path:
    return make_results_repo(tmp_path / "forge")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "tree")


def publish(tree: Path, fork: Path | str, cache: Path, *args: str) -> tuple[int, dict | None, str]:
    result = CliRunner().invoke(
        app, ["publish", str(tree), "--fork", str(fork), "--cache", str(cache), "--json", *args]
    )
    doc = json.loads(result.stdout) if result.stdout.strip() else None
    return result.exit_code, doc, result.stderr


@pytest.mark.parametrize("rel", ["documentation/.GIT/config", "documentation/git~1/notes.txt", "src/.Git"])
def test_a_path_git_will_not_hold_is_refused_not_silently_left_out(tmp_path, fork, tree, rel):
    """update-index skips such a path with a warning and exit 0: the branch was pushed without the file."""
    bad = tree / "open" / "TeamX" / rel
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text("part of the submission\n")
    code, _, err = publish(tree, fork, tmp_path / "cache")
    assert code == 2, err
    assert "[publish.git_path]" in err and rel in err
    assert rev(fork, f"refs/heads/{BRANCH}") is None


def test_a_submodules_git_file_is_left_out_like_a_git_folder(tmp_path, fork, tree):
    """src/ holding a submodule checkout: its `.git` is a file pointing at the team's clone, no part of the tree."""
    (tree / "open" / "TeamX" / "src" / "inference").mkdir(parents=True)
    (tree / "open" / "TeamX" / "src" / "inference" / ".git").write_text("gitdir: /home/team/.git/modules/x\n")
    (tree / "open" / "TeamX" / "src" / "inference" / "run.py").write_text("print(1)\n")
    code, doc, err = publish(tree, fork, tmp_path / "cache")
    assert code == 0 and doc["pushed"], err
    published = branch_files(fork, BRANCH)
    assert "open/TeamX/src/inference/run.py" in published
    assert not any(p.endswith("/.git") for p in published)
    assert all(published[rel] == text for rel, text in TREE_FILES.items())


@pytest.mark.parametrize("lock", ["shallow.lock", "refs/subtool/branch.lock"])
def test_lock_files_a_killed_git_left_in_the_cache_do_not_wedge_every_later_publish(tmp_path, fork, tree, lock):
    """A fetch past its timeout, or subtool terminated mid-fetch, SIGKILLs git: its lock files stay in the cache."""
    cache = tmp_path / "cache"
    assert publish(tree, fork, cache)[0] == 0
    (tree / "open" / "TeamX" / "documentation" / "README.md").write_text("# TeamX, second run\n")
    (git_dir,) = cache.glob("*.git")
    (git_dir / lock).parent.mkdir(parents=True, exist_ok=True)
    (git_dir / lock).write_text("")
    code, doc, err = publish(tree, fork, cache)
    assert code == 0 and doc["pushed"], err
    assert branch_files(fork, BRANCH)["open/TeamX/documentation/README.md"] == "# TeamX, second run\n"


@pytest.mark.parametrize("content", ["not a repository\n", "gitdir: /nonexistent/repo.git\n"])
def test_a_local_fork_that_is_a_file_is_missing_not_a_network_failure(tmp_path, tree, content):
    """git ends with 'Could not read from remote repository', which read as the network: three retries with
    back-off, then 're-run when the connection is back'."""
    fork = tmp_path / "results.tar.gz"
    fork.write_text(content)
    code, _, err = publish(tree, fork, tmp_path / "cache")
    assert code == 3 and "[publish.fork_missing]" in err, err
    assert "retry" not in err and "network" not in err


def test_a_push_a_server_hook_declines_says_the_servers_reason(tmp_path, fork, tree):
    """GitHub refuses a file over 100 MB (or a protected branch) in a pre-receive hook: the 'remote:' line that says
    why was dropped, leaving '[remote rejected] (pre-receive hook declined)' as a generic git failure."""
    hook = fork / "hooks" / "pre-receive"
    hook.write_text(
        '#!/bin/sh\necho "error: File open/TeamX/big.json is 120.00 MB; this exceeds the file size limit" >&2\nexit 1\n'
    )
    hook.chmod(0o755)
    code, _, err = publish(tree, fork, tmp_path / "cache")
    assert code == 3 and "[publish.push_declined]" in err, err
    assert "big.json is 120.00 MB" in err
    assert rev(fork, f"refs/heads/{BRANCH}") is None


@pytest.mark.parametrize(
    "names",
    [["Team..x"], ["Team.lock"], ["A" * 200, "B" * 200], ["Team-", "x..lock"]],
)
def test_the_default_branch_is_valid_whatever_the_submitter_names(tmp_path, fork, names):
    """Names the tree allows ('..', a '.lock' end, 200 characters) made a branch git refuses, or one whose ref
    file name is over 255 bytes; the user, who gave no --branch, was told the branch name is invalid."""
    files = {}
    for name in names:
        files.update({k.replace("/TeamX/", f"/{name}/"): v for k, v in TREE_FILES.items()})
    tree = make_tree(tmp_path / "tree", files)
    code, doc, err = publish(tree, fork, tmp_path / "cache")
    assert code == 0 and doc["pushed"], err
    assert doc["branch"].startswith("subtool/") and len(doc["branch"]) <= len("subtool/") + 200
    assert rev(fork, f"refs/heads/{doc['branch']}") == doc["commit"]


def test_a_branch_spelled_at_brace_is_refused_not_read_in_the_working_directorys_repository(
    tmp_path, fork, tree, monkeypatch
):
    """`git check-ref-format --branch @{-1}` answers the branch checked out before in the current repository."""
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", "x", cwd=work)
    git("checkout", "-q", "-b", "feature", cwd=work)
    git("checkout", "-q", "main", cwd=work)
    monkeypatch.chdir(work)
    code, _, err = publish(tree, fork, tmp_path / "cache", "--branch", "@{-1}")
    assert code == 2 and "[publish.branch]" in err, err
    assert rev(fork, "refs/heads/feature") is None


def test_a_cache_on_a_file_system_without_locks_is_one_line_exit_2(tmp_path, fork, tree, monkeypatch):
    """flock on an NFS home whose lock daemon is missing fails with ENOLCK: that was a traceback (exit 70). No file
    system here lacks locks, so flock is made to fail as NFS makes it."""
    import errno
    import fcntl
    import os

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    code, _, err = publish(tree, fork, tmp_path / "cache")
    assert code == 2 and "[publish.cache]" in err and "No locks available" in err, err
    assert "--cache" in err


def _big_file(tree: Path) -> Path:
    big = tree / "open" / "TeamX" / "results" / "sys1" / "bert-99" / "Offline" / "accuracy" / "mlperf_log_accuracy.json"
    with open(big, "wb") as out:  # sparse: 101 MiB on paper, nothing on disk
        out.truncate(101 * 1024 * 1024)
    return big


def test_a_file_github_would_decline_is_named_before_anything_is_uploaded(tmp_path, tree, monkeypatch):
    """GitHub declines a push holding a file over 100 MiB only once every byte arrived."""
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("GH_TOKEN", raising=False)
    big = _big_file(tree)
    code, _, err = publish(tree, "https://github.com/alice/results.git", tmp_path / "cache", "--no-pr")
    assert code == 2 and "[publish.file_too_large]" in err and big.name in err, err
    assert not (tmp_path / "cache").exists()


def test_a_fork_off_github_takes_the_big_file(tmp_path, fork, tree):
    _big_file(tree)
    code, doc, err = publish(tree, fork, tmp_path / "cache")
    assert code == 0 and doc["pushed"], err


def test_a_fork_with_long_folder_names_gets_a_cache_folder_it_can_create(tmp_path, tree):
    """Owner and repository folders of 200 characters each: the cache folder's name (both, and a digest) was over
    255 bytes, and publish said it could not write the cache."""
    fork = make_results_repo(tmp_path / ("o" * 200)).rename(tmp_path / ("o" * 200) / ("r" * 200))
    code, doc, err = publish(tree, fork, tmp_path / "cache")
    assert code == 0 and doc["pushed"], err


@pytest.mark.parametrize("page", ["tree/main", "pulls", "tree/subtool/TeamX/open"])
def test_a_github_page_address_given_as_the_fork_is_refused_with_the_repositorys(tmp_path, tree, page):
    code, _, err = publish(tree, f"https://github.com/alice/results/{page}", tmp_path / "cache", "--no-pr")
    assert code == 2 and "[publish.fork_url]" in err, err
    assert "https://github.com/alice/results" in err and not (tmp_path / "cache").exists()


def _ssh_saying(tmp_path: Path, monkeypatch, line: str) -> str:
    """No ssh server runs here, so GIT_SSH_COMMAND stands in for ssh with what OpenSSH prints and its exit status."""
    script = tmp_path / "ssh"
    script.write_text(f"#!/bin/sh\necho '{line}' >&2\nexit 255\n")
    script.chmod(0o755)
    monkeypatch.setenv("GIT_SSH_COMMAND", str(script))
    return "git@git.example.org:team/results.git"


@pytest.fixture
def unknown_host_ssh(tmp_path, monkeypatch):
    """ssh on a node whose known_hosts lacks the forge, with no terminal to ask on."""
    return _ssh_saying(tmp_path, monkeypatch, "Host key verification failed.")


def test_an_unknown_ssh_host_stops_all_before_the_run_instead_of_passing_for_the_network(unknown_host_ssh):
    """It read as the network: `all` warned 'cannot reach the fork now' and ran for hours, then publish retried
    three times and said to re-run when the connection is back."""
    from subtool.errors import SubtoolError
    from subtool.publish.api import probe_fork

    with pytest.raises(SubtoolError) as err:
        probe_fork(unknown_host_ssh, "main", timeout_s=30)
    assert err.value.rule == "publish.ssh_host_key" and "ssh -T" in err.value.hint


def test_an_unknown_ssh_host_is_not_retried_by_publish(tmp_path, tree, unknown_host_ssh):
    code, _, err = publish(tree, unknown_host_ssh, tmp_path / "cache", "--no-pr")
    assert code == 3 and "[publish.ssh_host_key]" in err, err
    assert "retry" not in err


@pytest.mark.parametrize("token", [None, "ghp_" + "5" * 36])
def test_an_ssh_key_the_forge_does_not_know_is_not_blamed_on_the_token(tmp_path, tree, monkeypatch, token):
    """ssh never carries the token: 'Permission denied (publickey)' said the token was refused, or to export one."""
    fork = _ssh_saying(tmp_path, monkeypatch, "git@git.example.org: Permission denied (publickey).")
    monkeypatch.delenv("GH_TOKEN", raising=False)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    if token:
        monkeypatch.setenv("GITHUB_TOKEN", token)
    code, _, err = publish(tree, fork, tmp_path / "cache", "--no-pr")
    assert code == 3 and "[publish.ssh_key]" in err and "ssh public key" in err, err


@pytest.mark.parametrize("upstream", ["../..", "comp/..", "./results"])
def test_an_upstream_of_dot_segments_is_refused_before_the_token_goes_anywhere(tmp_path, tree, upstream):
    """GET /repos/../.. is the API's root: the token went with a request that could only end in a puzzling error."""
    code, _, err = publish(tree, "https://github.com/alice/results", tmp_path / "cache", "--upstream", upstream)
    assert code == 2 and "[publish.upstream]" in err, err
