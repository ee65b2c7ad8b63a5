"""`subtool publish` to a plain git fork (a local bare repository): no API, no token, real git end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from subtool.cli import app
from subtool.errors import SubtoolError
from subtool.publish.api import PublishOptions, publish_tree

from .helpers import BASE_FILES, TREE_FILES, branch_files, git, make_results_repo, make_tree, rev

BRANCH = "subtool/TeamX"


@pytest.fixture
def fork(tmp_path: Path) -> Path:
    return make_results_repo(tmp_path / "forge")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "tree")


def run_cli(*args: str) -> tuple[int, dict | None, str]:
    result = CliRunner().invoke(app, ["publish", *args, "--json"])
    doc = json.loads(result.stdout) if result.stdout.strip() else None
    return result.exit_code, doc, result.stderr


def test_push_to_local_bare_fork_then_rerun_is_idempotent(tmp_path, fork, tree):
    cache = tmp_path / "cache"
    code, doc, err = run_cli(str(tree), "--fork", str(fork), "--upstream", "comp/results", "--cache", str(cache))
    assert code == 0, err
    assert doc["pushed"] is True and doc["branch"] == BRANCH
    tip = rev(fork, BRANCH)
    assert doc["commit"] == tip
    # One commit on top of the base branch, carrying the tree and every other submitter's files.
    assert git("--git-dir", str(fork), "rev-parse", f"{BRANCH}^") == rev(fork, "main")
    published = branch_files(fork, BRANCH)
    for rel, text in TREE_FILES.items():
        assert published[rel] == text
    assert published["README.md"] == BASE_FILES["README.md"]
    assert "closed/OtherTeam/systems/sysA.json" in published
    assert "open/TeamX/documentation/earlier.md" in published  # written over, never deleted
    assert "open/TeamX/results/sys1/bert-99/Offline/stale_from_old_run.txt" not in published  # result replaced
    message = git("--git-dir", str(fork), "log", "-1", "--format=%B", BRANCH)
    assert message.splitlines()[0] == "TeamX: bert-99 results (open)"
    assert "Systems: sys1" in message and "Benchmarks: bert-99 (Offline)" in message
    expected_compare = "https://github.com/comp/results/compare/main...forge:subtool/TeamX?expand=1"
    assert doc["compare_url"] == expected_compare
    assert expected_compare in err.replace("\n", "")

    code, doc2, err2 = run_cli(str(tree), "--fork", str(fork), "--upstream", "comp/results", "--cache", str(cache))
    assert code == 0, err2
    assert doc2["pushed"] is False and doc2["up_to_date"] is True and doc2["commit"] == tip
    assert rev(fork, BRANCH) == tip
    assert git("--git-dir", str(fork), "rev-list", "--count", BRANCH) == "2"


def test_changed_tree_replaces_the_single_commit(tmp_path, fork, tree):
    cache = tmp_path / "cache"
    opts = PublishOptions(tree=tree, fork=f"file://{fork}", cache=cache)
    first = publish_tree(opts)
    (tree / "open/TeamX/results/sys1/bert-99/Offline/accuracy/accuracy.txt").write_text('{"f1": 3.0}\n')
    second = publish_tree(opts)
    assert second.pushed and second.commit != first.commit
    assert rev(fork, BRANCH) == second.commit
    assert git("--git-dir", str(fork), "rev-parse", f"{BRANCH}^") == rev(fork, "main")
    assert (
        branch_files(fork, BRANCH)["open/TeamX/results/sys1/bert-99/Offline/accuracy/accuracy.txt"] == '{"f1": 3.0}\n'
    )
    # A fresh cache (another machine) sees the same branch and finds nothing to do.
    again = publish_tree(PublishOptions(tree=tree, fork=str(fork), cache=tmp_path / "other-cache"))
    assert again.up_to_date and not again.pushed and again.commit == second.commit


def test_without_cache_the_fork_clone_goes_where_subtool_cache_says(tmp_path, fork, tree, monkeypatch):
    """A cluster user points SUBTOOL_CACHE at scratch space because $HOME is small: the fork's clone (one per
    results repository) goes there too, not into ~/.cache or $XDG_CACHE_HOME, which it used to."""
    monkeypatch.setenv("SUBTOOL_CACHE", str(tmp_path / "scratch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    result = publish_tree(PublishOptions(tree=tree, fork=str(fork)))
    assert result.pushed
    assert list((tmp_path / "scratch" / "forks").iterdir())
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "home").exists()


def test_dry_run_pushes_nothing_and_lists_changes(tmp_path, fork, tree):
    code, doc, err = run_cli(str(tree), "--fork", str(fork), "--dry-run", "--cache", str(tmp_path / "c"))
    assert code == 0, err
    assert doc["pushed"] is False and doc["dry_run"] is True
    assert rev(fork, BRANCH) is None
    assert "A open/TeamX/systems/sys1.json" in doc["changes"]
    assert "D open/TeamX/results/sys1/bert-99/Offline/stale_from_old_run.txt" in doc["changes"]
    assert "would push" in err


def test_branch_and_title_options(tmp_path, fork, tree):
    code, doc, err = run_cli(
        str(tree),
        "--fork",
        str(fork),
        "--branch",
        "scc25/teamx",
        "--title",
        "TeamX SCC25 bert",
        "--cache",
        str(tmp_path / "c"),
        "--no-pr",
    )
    assert code == 0, err
    assert rev(fork, "scc25/teamx") == doc["commit"]
    assert git("--git-dir", str(fork), "log", "-1", "--format=%s", "scc25/teamx") == "TeamX SCC25 bert"
    assert doc["compare_url"] is None  # no --upstream: nothing to compare against


def test_base_branch_missing_fails_cleanly(tmp_path, fork, tree):
    code, doc, err = run_cli(str(tree), "--fork", str(fork), "--base", "scc25", "--cache", str(tmp_path / "c"))
    assert code == 3
    assert "base branch 'scc25' does not exist" in err
    assert rev(fork, BRANCH) is None


def test_fork_missing_fails_with_exit_3(tmp_path, tree):
    with pytest.raises(SubtoolError) as info:
        publish_tree(PublishOptions(tree=tree, fork=str(tmp_path / "nope.git"), cache=tmp_path / "c"))
    assert info.value.rule == "publish.fork_missing" and info.value.exit_code == 3


def test_tree_without_submitters_is_a_usage_error(tmp_path, fork):
    empty = tmp_path / "empty"
    (empty / "open").mkdir(parents=True)
    code, doc, err = run_cli(str(empty), "--fork", str(fork))
    assert code == 2 and doc is None
    assert "no <division>/<submitter>/ directory" in err


def test_invalid_branch_name_is_rejected_before_any_git(tmp_path, fork, tree):
    with pytest.raises(SubtoolError) as info:
        publish_tree(PublishOptions(tree=tree, fork=str(fork), branch="bad..name", cache=tmp_path / "c"))
    assert info.value.rule == "publish.branch"
    assert not (tmp_path / "c").exists()


def test_base_already_holding_the_files_is_nothing_to_publish(tmp_path, tree):
    merged = dict(BASE_FILES)
    merged.pop("open/TeamX/results/sys1/bert-99/Offline/stale_from_old_run.txt")
    merged.update(TREE_FILES)
    fork = make_results_repo(tmp_path / "merged", merged)
    result = publish_tree(PublishOptions(tree=tree, fork=str(fork), cache=tmp_path / "c"))
    assert result.up_to_date and not result.pushed and result.commit is None
    assert rev(fork, BRANCH) is None


def test_file_where_a_directory_is_needed_is_replaced(tmp_path, tree):
    files = dict(BASE_FILES)
    files["open/TeamX/systems"] = "a file where the tree has a directory\n"
    fork = make_results_repo(tmp_path / "clash", files)
    publish_tree(PublishOptions(tree=tree, fork=str(fork), cache=tmp_path / "c"))
    published = branch_files(fork, BRANCH)
    assert "open/TeamX/systems/sys1.json" in published and "open/TeamX/systems" not in published


def test_executable_bit_is_published(tmp_path, fork):
    # (links are refused, not published: tests/publish/test_publish_links.py)
    tree = make_tree(tmp_path / "tree")
    script = tree / "open/TeamX/src/run.sh"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\necho run\n")
    script.chmod(0o755)
    publish_tree(PublishOptions(tree=tree, fork=str(fork), cache=tmp_path / "c"))
    listing = git(
        "--git-dir", str(fork), "ls-tree", "-r", BRANCH, "open/TeamX/src/run.sh", "open/TeamX/documentation/README.md"
    )
    modes = {line.split("\t")[1]: line.split()[0] for line in listing.splitlines()}
    assert modes["open/TeamX/src/run.sh"] == "100755"
    assert set(modes.values()) == {"100755", "100644"}


def test_branch_moved_on_fork_is_not_overwritten(tmp_path, fork, tree):
    """The push carries a lease: a branch that changed since it was read is left alone."""
    from subtool.publish import git as g
    from subtool.publish.remote import Redactor, parse_fork

    ours = publish_tree(PublishOptions(tree=tree, fork=str(fork), cache=tmp_path / "c")).commit
    someone_elses = rev(fork, "main")
    git("--git-dir", str(fork), "update-ref", f"refs/heads/{BRANCH}", someone_elses)
    location = parse_fork(str(fork))
    with g.locked_cache(g.cache_dir_for(tmp_path / "c", location)) as git_dir:
        runner = g.Git(git_dir, token=None, urls=[str(fork)], redact=Redactor(None), retries=0)
        with pytest.raises(g.GitFailure) as info:
            g.push(runner, "origin", ours, BRANCH, ours)
    assert info.value.kind == "rejected"
    assert rev(fork, BRANCH) == someone_elses


def test_cache_is_reused_and_holds_no_work_tree(tmp_path, fork, tree):
    cache = tmp_path / "cache"
    publish_tree(PublishOptions(tree=tree, fork=str(fork), cache=cache))
    clones = [p for p in cache.iterdir() if p.suffix == ".git"]
    assert len(clones) == 1
    assert git("--git-dir", str(clones[0]), "rev-parse", "--is-bare-repository") == "true"
    shutil.rmtree(tree / "open/TeamX/documentation")
    publish_tree(PublishOptions(tree=tree, fork=str(fork), cache=cache))
    assert [p for p in cache.iterdir() if p.suffix == ".git"] == clones


def test_broken_cache_is_a_clear_error_and_deleting_it_recovers(tmp_path, fork, tree):
    cache = tmp_path / "cache"
    publish_tree(PublishOptions(tree=tree, fork=str(fork), cache=cache))
    [clone] = [p for p in cache.iterdir() if p.suffix == ".git"]
    (tree / "open/TeamX/documentation/README.md").write_text("# TeamX v2\n")
    (clone / "config").write_text("[core\n\tthis is not git config\n")
    with pytest.raises(SubtoolError) as info:
        publish_tree(PublishOptions(tree=tree, fork=str(fork), cache=cache))
    assert (info.value.rule, info.value.exit_code) == ("publish.git", 2)
    assert info.value.path == str(clone) and "delete that folder" in info.value.hint
    shutil.rmtree(clone)
    assert publish_tree(PublishOptions(tree=tree, fork=str(fork), cache=cache)).pushed


def test_unwritable_cache_is_one_line_exit_2(tmp_path, fork, tree):
    (tmp_path / "afile").write_text("x")
    cache = tmp_path / "afile" / "cache"  # a file where a folder is needed
    code, doc, err = run_cli(str(tree), "--fork", str(fork), "--cache", str(cache))
    assert code == 2 and doc is None, err
    assert "--cache cannot be written" in err and "[io.enotdir]" in err and "Traceback" not in err
    assert rev(fork, BRANCH) is None


# ----------------------------------------------------- survivors of a mutation probe: each fails on its mutant
def test_a_v5_compliance_folder_is_replaced_as_a_whole_like_results(tmp_path):
    from subtool.publish.content import scan_tree

    sub = tmp_path / "t" / "closed" / "TeamX"
    for root in ("results", "measurements", "compliance"):
        (sub / root / "box" / "bert-99" / "Offline").mkdir(parents=True)
        (sub / root / "box" / "bert-99" / "Offline" / "f.txt").write_text("x\n")
    content = scan_tree(tmp_path / "t")
    assert content.replace == [
        f"closed/TeamX/{root}/box/bert-99/Offline" for root in ("compliance", "measurements", "results")
    ]
    assert content.results == [("closed", "TeamX", "box", "bert-99", "Offline")]  # one result, not three


@pytest.mark.parametrize("name", ["a\tb.txt", "a\rb.txt", "a\x1b[31mRED\x1b[0m", "evil\u202etxt.exe"])
@pytest.mark.parametrize("as_folder", [False, True], ids=["file", "folder"])
def test_a_name_with_a_control_character_is_refused_as_check_refuses_it(tmp_path, name, as_folder):
    """An escape sequence reached the terminal in --dry-run's list; a right-to-left mark reverses what it shows."""
    from subtool.publish.content import scan_tree

    sub = tmp_path / "t" / "closed" / "TeamX" / "documentation"
    sub.mkdir(parents=True)
    (sub / "README.md").write_text("x\n")
    if as_folder:
        (sub / name).mkdir()
        (sub / name / "notes.md").write_text("x\n")
    else:
        (sub / name).write_text("x\n")
    with pytest.raises(SubtoolError) as err:
        scan_tree(tmp_path / "t")
    assert err.value.rule == "tree.unprintable_name"


@pytest.mark.parametrize("folder", ["model", "scenario"])
@pytest.mark.parametrize(
    "name",
    ["bert-99)\n\nSigned-off-by: Someone Else <ceo@example.com>", "bert|99", "[bert](https://evil.example)"],
    ids=["trailer", "cell", "link"],
)
def test_benchmark_and_scenario_folder_names_are_checked_before_they_reach_the_commit_and_pr(
    tmp_path, fork, folder, name
):
    """They go into the commit message (a forged trailer), the title and the pull request's table (a forged
    cell or link). An empty folder is enough: only files were checked."""
    tree = make_tree(tmp_path / "tree")
    results = tree / "open" / "TeamX" / "results" / "sys1"
    (results / name / "Offline" if folder == "model" else results / "bert-99" / name).mkdir(parents=True)
    code, _, err = run_cli(str(tree), "--fork", str(fork), "--no-pr", "--cache", str(tmp_path / "cache"))
    assert code == 2 and "[tree.bad_name]" in err and f"{'benchmark' if folder == 'model' else folder} folder" in err
    assert git("--git-dir", str(fork), "branch", "--list", BRANCH) == ""


def test_a_tree_path_starting_with_a_double_quote_publishes_its_own_files(tmp_path, fork, monkeypatch):
    """hash-object --stdin-paths C-unquotes a line that starts with '"': the tree '"t"' hashed ./t's bytes."""
    make_tree(tmp_path / '"t"')
    (tmp_path / "t").write_text("SECRET FILE CONTENT\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli('"t"', "--fork", str(fork), "--no-pr", "--cache", str(tmp_path / "cache"))
    assert code == 0, err
    published = branch_files(fork, BRANCH)
    assert "SECRET FILE CONTENT\n" not in published.values()
    for rel, text in TREE_FILES.items():
        assert published[rel] == text


def test_a_git_folder_inside_a_submitter_folder_is_never_published(tmp_path):
    """A team that keeps its submitter folder in git: its .git (objects, hooks, a config that may hold a token
    in a remote URL) is no part of the submission."""
    from subtool.publish.content import scan_tree

    sub = tmp_path / "t" / "closed" / "TeamX"
    (sub / "documentation").mkdir(parents=True)
    (sub / "documentation" / "README.md").write_text("x\n")
    (sub / ".git" / "objects").mkdir(parents=True)
    (sub / ".git" / "config").write_text('[remote "origin"]\n\turl = https://x:token@example.org/r.git\n')
    (sub / ".git" / "objects" / "ab").write_bytes(b"\0blob")
    names = [f.path for f in scan_tree(tmp_path / "t").files]
    assert names == ["closed/TeamX/documentation/README.md"]


def test_publish_refuses_to_send_a_token_over_plain_http_before_any_network(tmp_path, tree):
    result = CliRunner().invoke(
        app,
        ["publish", str(tree), "--fork", "http://git.example.invalid/team/results.git", "--upstream", "comp/results"],
        env={"GITHUB_TOKEN": "ghp_" + "7" * 36},
    )
    assert result.exit_code == 2 and "[publish.insecure_token]" in result.output, result.output
    assert "7777" not in result.output
