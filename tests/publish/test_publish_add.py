"""A team publishes one benchmark, then another from a second output folder: the branch and its pull request
hold both (`--replace` keeps only the second). Real git, the forge on 127.0.0.1, the CLI as users type it."""

from __future__ import annotations

import json

from subtool.publish.api import publish_tree

from .conftest import UPSTREAM, github
from .helpers import git, make_tree
from .test_publish_forge import fork_files, pull_creations, run_cli

BRANCH = "subtool/TeamX"
BERT = "open/TeamX/results/sys1/bert-99/Offline"
LLAMA = "open/TeamX/results/sys1/llama2-70b-99/Offline"
LLAMA_FILES = {
    "open/TeamX/systems/sys1.json": '{"system_name": "sys1", "division": "open"}\n',
    f"{LLAMA}/performance/run_1/mlperf_log_summary.txt": "Result is : VALID (llama)\n",
    f"{LLAMA}/accuracy/accuracy.txt": '{"ROUGE1": 44.4}\n',
    f"{LLAMA}/measurements.json": '{"input_data_types": "int32"}\n',
    "open/TeamX/documentation/llama.md": "# llama notes\n",
}


def _quick(fast, users, monkeypatch, fork, tree, **kwargs) -> dict:
    """In process (no interpreter start-up), for the steps after the first two."""
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    return publish_tree(fast(tree, fork, **kwargs)).to_dict()


def _publish(tmp_path, forge, users, fork, tree, *extra):
    proc = run_cli(
        [str(tree), "--fork", fork, "--upstream", UPSTREAM, "--api-url", forge.api_url, "--json", *extra],
        {"GITHUB_TOKEN": users.alice},
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def _results_on_branch(forge) -> set[str]:
    return {"/".join(p.split("/")[:6]) for p in fork_files(forge, BRANCH) if p.startswith("open/TeamX/results/")}


def test_second_benchmark_from_another_folder_adds_to_the_branch(tmp_path, forge, users, alice_fork, fast, monkeypatch):
    bert_tree = make_tree(tmp_path / "out-bert" / "tree")
    llama_tree = make_tree(tmp_path / "out-llama" / "tree", LLAMA_FILES)
    first, _ = _publish(tmp_path, forge, users, alice_fork, bert_tree)
    assert first["pr_created"] and _results_on_branch(forge) == {BERT}

    second, err = _publish(tmp_path, forge, users, alice_fork, llama_tree)
    assert second["pushed"] and not second["pr_created"] and second["pr_number"] == first["pr_number"]
    assert second["kept"] == [BERT] and second["dropped"] == []
    assert "keeping 1 result(s) already on the branch" in err and "other submitters" not in err
    files = fork_files(forge, BRANCH)
    assert _results_on_branch(forge) == {BERT, LLAMA}
    assert files[f"{BERT}/accuracy/accuracy.txt"] == '{"exact_match": 1.0, "f1": 2.0}\n'  # the first, intact
    assert files[f"{LLAMA}/accuracy/accuracy.txt"] == '{"ROUGE1": 44.4}\n'
    assert "open/TeamX/documentation/README.md" in files and "open/TeamX/documentation/llama.md" in files
    assert f"{BERT}/stale_from_old_run.txt" not in files  # the base's stale log stays replaced
    assert "closed/OtherTeam/systems/sysA.json" in files
    bare = forge.repo_path("alice", "results")
    assert git("--git-dir", str(bare), "rev-parse", f"{BRANCH}^") == forge.branch_sha(UPSTREAM, "main")
    message = git("--git-dir", str(bare), "log", "-1", "--format=%B", BRANCH)
    assert "Benchmarks: bert-99 (Offline), llama2-70b-99 (Offline)" in message

    pulls = list(github(forge, users.organizers).get_repo(UPSTREAM).get_pulls(state="all"))
    assert len(pulls) == 1 and pull_creations(forge) == 1
    pr = pulls[0]
    assert pr.head.sha == second["commit"]
    assert pr.title == "TeamX: bert-99 results (open)"  # the open pull request keeps its title
    assert "| open | TeamX | sys1 | bert-99 | Offline |" in pr.body
    assert "| open | TeamX | sys1 | llama2-70b-99 | Offline |" in pr.body

    again = _quick(fast, users, monkeypatch, alice_fork, llama_tree)  # nothing new: nothing pushed
    assert again["up_to_date"] and not again["pushed"] and again["commit"] == second["commit"]
    # the first folder again, with a changed result: it replaces its own result and keeps the other one
    (bert_tree / BERT / "accuracy" / "accuracy.txt").write_text('{"exact_match": 1.0, "f1": 3.0}\n')
    third = _quick(fast, users, monkeypatch, alice_fork, bert_tree)
    assert third["pushed"] and third["kept"] == [LLAMA]
    files = fork_files(forge, BRANCH)
    assert _results_on_branch(forge) == {BERT, LLAMA}
    assert files[f"{BERT}/accuracy/accuracy.txt"] == '{"exact_match": 1.0, "f1": 3.0}\n'


def test_replace_keeps_only_this_tree(tmp_path, forge, users, alice_fork, fast, monkeypatch):
    bert_tree = make_tree(tmp_path / "out-bert" / "tree")
    llama_tree = make_tree(tmp_path / "out-llama" / "tree", LLAMA_FILES)
    _quick(fast, users, monkeypatch, alice_fork, bert_tree)
    doc, err = _publish(tmp_path, forge, users, alice_fork, llama_tree, "--replace")
    # bert is back as the base has it (its stale log only): the branch holds this tree on top of the base
    assert doc["pushed"] and doc["dropped"] == [] and doc["reset_to_base"] == [BERT] and doc["kept"] == []
    assert "--replace: dropping" not in err and "--replace: 1 result(s) stay on the branch as main holds" in err
    files = fork_files(forge, BRANCH)
    assert [p for p in files if p.startswith(BERT)] == [f"{BERT}/stale_from_old_run.txt"]
    assert _results_on_branch(forge) == {BERT, LLAMA}
    assert "open/TeamX/documentation/README.md" not in files
    pr = github(forge, users.organizers).get_repo(UPSTREAM).get_pull(doc["pr_number"])
    assert "llama2-70b-99" in pr.body and "| bert-99 |" not in pr.body
    assert pr.title == "TeamX: llama2-70b-99 results (open)"  # not the first publish's, naming bert


def test_other_teams_on_the_same_branch_name_are_not_carried(tmp_path, forge, users, alice_fork, fast, monkeypatch):
    """Only the publishing submitters' directories are kept from the branch, never another team's."""
    other = make_tree(
        tmp_path / "other" / "tree",
        {"open/TeamY/results/s/bert-99/Offline/a.txt": "y\n", "open/TeamY/systems/s.json": "{}\n"},
    )
    _quick(fast, users, monkeypatch, alice_fork, other, branch=BRANCH)
    doc = _quick(fast, users, monkeypatch, alice_fork, make_tree(tmp_path / "x" / "tree"))
    assert doc["kept"] == []
    assert not any(p.startswith("open/TeamY/") for p in fork_files(forge, BRANCH))
    # ... and the user hears that they leave the branch (the base's other team, closed/OtherTeam, is no news)
    assert "the branch holds other submitters' files, which are not carried over: open/TeamY" in doc["notes"]


def test_adding_works_on_a_plain_git_fork_without_an_api(tmp_path):
    """A local bare repository (no API, no token), as in the README's demo → publish → score walk-through."""
    from subtool.publish.api import PublishOptions

    from .helpers import branch_files, make_results_repo

    fork = make_results_repo(tmp_path / "forge")
    for name, files in (("bert", None), ("llama", LLAMA_FILES)):
        publish_tree(PublishOptions(tree=make_tree(tmp_path / name, files), fork=str(fork), cache=tmp_path / "c"))
    published = branch_files(fork, BRANCH)
    assert f"{LLAMA}/accuracy/accuracy.txt" in published and f"{BERT}/accuracy/accuracy.txt" in published
    assert git("--git-dir", str(fork), "rev-list", "--count", BRANCH) == "2"  # still one commit on the base


def test_replace_with_nothing_new_empties_the_branch_and_says_so(tmp_path, forge, users, alice_fork, fast, monkeypatch):
    """--replace with a tree the base already holds (the team dropped what it had published, or its results now
    equal upstream's): the branch and its open pull request must not keep the dropped results."""
    llama_tree = make_tree(tmp_path / "out-llama" / "tree", LLAMA_FILES)
    first, _ = _publish(tmp_path, forge, users, alice_fork, llama_tree)
    as_upstream = make_tree(tmp_path / "same" / "tree", {f"{BERT}/stale_from_old_run.txt": "stale\n"})
    doc, err = _publish(tmp_path, forge, users, alice_fork, as_upstream, "--replace")
    assert doc["pushed"] and doc["dropped"] == [LLAMA] and doc["changes"] == []
    bare, upstream = forge.repo_path("alice", "results"), forge.repo_path("comp", "results")
    assert git("--git-dir", str(bare), "rev-parse", f"{BRANCH}^{{tree}}") == git(
        "--git-dir", str(upstream), "rev-parse", "main^{tree}"
    )
    # a commit of its own on the base, never the base itself (GitHub would show the pull request as merged)
    assert git("--git-dir", str(bare), "rev-parse", f"{BRANCH}^") == forge.branch_sha(UPSTREAM, "main")
    assert f"{BRANCH} now holds no changes against main" in err
    assert f"pull request {first['pr_url']} is left open with no changes" in err
    assert doc["pr_number"] == first["pr_number"] and pull_creations(forge) == 1
    pr = github(forge, users.organizers).get_repo(UPSTREAM).get_pull(doc["pr_number"])
    assert pr.state == "open" and pr.head.sha == doc["commit"]
    assert "No changes against `main`" in pr.body and "llama2-70b-99 | Offline" not in pr.body

    for replace in (True, False):  # the same again: nothing pushed, the pull request's body still says so
        again = _quick(fast, users, monkeypatch, alice_fork, as_upstream, replace=replace)
        assert again["up_to_date"] and not again["pushed"] and again["commit"] == doc["commit"]
        assert again["pr_number"] == doc["pr_number"] and pull_creations(forge) == 1
        pr = github(forge, users.organizers).get_repo(UPSTREAM).get_pull(doc["pr_number"])
        assert "No changes against `main`" in pr.body


def test_replace_with_nothing_new_opens_no_pull_request(tmp_path, forge, users, alice_fork, fast, monkeypatch):
    """With no pull request open for the branch (pushed with --no-pr, or closed), none is opened for no change."""
    _quick(fast, users, monkeypatch, alice_fork, make_tree(tmp_path / "llama", LLAMA_FILES), no_pr=True)
    as_upstream = make_tree(tmp_path / "same" / "tree", {f"{BERT}/stale_from_old_run.txt": "stale\n"})
    doc = _quick(fast, users, monkeypatch, alice_fork, as_upstream, replace=True)
    assert doc["pushed"] and doc["dropped"] == [LLAMA] and doc["pr_url"] is None and pull_creations(forge) == 0
    assert any("no pull request opened" in n for n in doc["notes"])
    assert _results_on_branch(forge) == {BERT}


def test_replace_does_not_call_a_result_the_base_holds_dropped(tmp_path, forge, users, alice_fork, fast, monkeypatch):
    """Upstream merged the team's bert and the fork was synced; the team then fixed bert and added llama, and now
    publishes another result with --replace: llama leaves the branch, bert stays as the base has it (only the fix
    leaves). Publish said both were dropped; now what it says, its notes and --json tell the two apart."""
    bert_tree = make_tree(tmp_path / "out-bert" / "tree")
    _quick(fast, users, monkeypatch, alice_fork, bert_tree)
    work = tmp_path / "organizers"  # upstream merges the team's branch, and Alice syncs her fork's main
    git("clone", "-q", "-b", "main", str(forge.repo_path("comp", "results")), str(work))
    git("pull", "-q", "--no-rebase", "--no-ff", str(forge.repo_path("alice", "results")), BRANCH, cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    git("push", "-q", str(forge.repo_path("alice", "results")), "HEAD:main", cwd=work)
    (bert_tree / BERT / "accuracy" / "accuracy.txt").write_text('{"exact_match": 1.0, "f1": 3.0}\n')
    _quick(fast, users, monkeypatch, alice_fork, bert_tree)
    _quick(fast, users, monkeypatch, alice_fork, make_tree(tmp_path / "out-llama" / "tree", LLAMA_FILES))
    server = {p.replace("/Offline/", "/Server/"): text for p, text in LLAMA_FILES.items()}
    doc, err = _publish(tmp_path, forge, users, alice_fork, make_tree(tmp_path / "server", server), "--replace")
    assert doc["pushed"] and doc["dropped"] == [LLAMA] and doc["reset_to_base"] == [BERT]
    said = [line for line in err.splitlines() if line.startswith("--replace:")]
    assert said == [
        f"--replace: dropping 1 result(s) from the branch: {LLAMA}",
        "--replace: 1 result(s) stay on the branch as main holds them (its copy, not the branch's earlier one): "
        + BERT,
    ]
    assert [n for n in doc["notes"] if n.startswith("--replace:")] == said
    results = _results_on_branch(forge)
    assert BERT in results and LLAMA not in results and LLAMA.replace("Offline", "Server") in results
    assert fork_files(forge, BRANCH)[f"{BERT}/accuracy/accuracy.txt"] == '{"exact_match": 1.0, "f1": 2.0}\n'


def test_a_result_the_branch_holds_as_the_base_does_is_not_the_teams(tmp_path):
    """The base holds an old TeamX bert; the team publishes llama twice. The branch's bert is the base's, untouched:
    publish said it kept it from the branch and the title named it ('bert-99, llama2-70b-99'), though the pull
    request does not change it. With --replace it is neither dropped nor said to stay: nothing happens to it."""
    from subtool.publish.api import PublishOptions

    from .helpers import make_results_repo

    fork = make_results_repo(tmp_path / "forge")
    llama = make_tree(tmp_path / "llama", LLAMA_FILES)
    opts = PublishOptions(tree=llama, fork=str(fork), cache=tmp_path / "c")
    publish_tree(opts)
    (llama / "open/TeamX/documentation/llama.md").write_text("# llama notes, again\n")
    again = publish_tree(opts)
    assert again.pushed and again.kept == [] and again.title == "TeamX: llama2-70b-99 results (open)"
    assert not [n for n in again.notes if "keeping" in n]
    (llama / "open/TeamX/documentation/llama.md").write_text("# llama notes, a third time\n")
    replaced = publish_tree(PublishOptions(**{**vars(opts), "replace": True}))
    assert replaced.pushed and (replaced.dropped, replaced.reset_to_base) == ([], [])
    assert not [n for n in replaced.notes if n.startswith("--replace:")]
