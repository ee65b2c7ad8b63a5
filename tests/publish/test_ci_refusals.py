"""`subtool ci` on pull requests that try to get past it: a link, a file or a submodule where a submitter folder
belongs, a submitter with no result, a checkout that is not the repository's root, a base ref that is HEAD, names
that are not UTF-8 or that are Markdown, and a report too large for GitHub's step summary."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from subtool import ci as ci_module

from .helpers import git, run_ci
from .results_tree import WAIVE, commit_all, lay_out_submitter, pr_over_good


@pytest.fixture
def repo(tmp_path, results_logs) -> Path:
    return pr_over_good(tmp_path, results_logs)


def _doc(result) -> dict:
    return json.loads(result.stdout)


def _rules(doc: dict) -> set[tuple[str, str]]:
    return {(f["rule"], f["path"]) for f in doc["findings"] if f["severity"] == "error"}


def test_a_link_or_a_file_where_a_submitter_folder_belongs_fails(repo):
    (repo / "open" / "Evil").symlink_to("/etc")
    (repo / "open" / "Evil2").symlink_to("Good")
    (repo / "open" / "EvilFile").write_text("hi\n")
    commit_all(repo, "links")
    result = run_ci(str(repo), "--base-ref", "origin/main", *WAIVE, "--json")
    assert result.exit_code == 1, result.output
    assert _rules(_doc(result)) == {
        ("ci.not_a_folder", "open/Evil"),
        ("ci.not_a_folder", "open/Evil2"),
        ("ci.not_a_folder", "open/EvilFile"),
    }
    assert "is a link, not a submitter folder" in result.stderr


def test_a_division_replaced_by_a_link_fails(repo):
    git("rm", "-q", "-r", "open", cwd=repo)
    (repo / "open").symlink_to("/etc")
    commit_all(repo, "division is a link")
    doc = _doc(run_ci(str(repo), "--base-ref", "origin/main", "--json"))
    assert not doc["ok"] and ("ci.not_a_folder", "open") in _rules(doc)
    assert doc["removed"] == ["open/Good"] and doc["checked"] == []


def test_a_submodule_in_a_submitter_fails(repo, tmp_path):
    sub = tmp_path / "sm"
    git("init", "-q", str(sub))
    (sub / "x").write_text("junk\n")
    commit_all(sub, "s")
    lay_out_submitter(repo, Path(_logs_of(repo)), "open", "Team2")
    git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "open/Team2/extra", cwd=repo)
    git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "open/Evil", cwd=repo)
    commit_all(repo, "submodules")
    result = run_ci(str(repo), "--base-ref", "origin/main", *WAIVE, "--json")
    assert result.exit_code == 1
    rules = _rules(_doc(result))
    assert {("ci.submodule", "open/Team2/extra"), ("ci.not_a_folder", "open/Evil")} <= rules


def _logs_of(repo: Path) -> Path:
    """The LoadGen logs open/Good was laid out from, as a folder lay_out_submitter can copy again."""
    res = repo / "open/Good/results/box/bert-99/Offline"
    logs = repo.parent / "logs-again"
    for mode, src in (("performance", res / "performance/run_1"), ("accuracy", res / "accuracy")):
        (logs / mode).mkdir(parents=True, exist_ok=True)
        for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
            (logs / mode / name).write_bytes((src / name).read_bytes())
    (logs / "accuracy/mlperf_log_accuracy.json").write_bytes((res / "accuracy/mlperf_log_accuracy.json").read_bytes())
    (logs / "performance/user.conf").write_bytes((res / "user.conf").read_bytes())
    return logs


def test_a_changed_submitter_with_no_result_fails(repo, tmp_path):
    for folder in ("results", "src", "documentation"):
        (repo / "open/Empty" / folder).mkdir(parents=True)
        (repo / "open/Empty" / folder / "README.md").write_text("x\n")
    commit_all(repo, "empty")
    summary = tmp_path / "s.md"
    result = run_ci(str(repo), "--base-ref", "origin/main", "--json", "--summary", str(summary))
    assert result.exit_code == 1
    assert _rules(_doc(result)) == {("ci.no_results", "open/Empty")}
    assert "**failed** with 1 error(s)" in summary.read_text()


def test_a_checkout_that_is_not_the_repository_root_is_refused(repo):
    lay_out_submitter(repo, _logs_of(repo), "open", "Bad")
    (repo / "open/Bad/systems/box.json").write_text("garbage")
    commit_all(repo, "bad")
    for where in (repo / "open", repo / ".git"):
        result = run_ci(str(where), "--base-ref", "origin/main")
        assert result.exit_code == 2 and "[ci.checkout]" in result.stderr, (where, result.output)
    git("sparse-checkout", "set", "--no-cone", "/README.md", cwd=repo)
    result = run_ci(str(repo), "--base-ref", "origin/main")
    assert result.exit_code == 2 and "sparse or partial checkout" in " ".join(result.stderr.split())


def test_a_base_ref_that_is_head_is_refused(repo):
    lay_out_submitter(repo, _logs_of(repo), "open", "Bad")
    commit_all(repo, "bad")
    for ref in ("HEAD", "pr"):
        result = run_ci(str(repo), "--base-ref", ref)
        assert result.exit_code == 2 and "compare with itself" in " ".join(result.stderr.split()), result.output


def test_a_name_that_is_not_utf8_is_spelled_out_in_the_summary(repo, tmp_path):
    lay_out_submitter(repo, _logs_of(repo), "open", "Team2")
    odd = os.fsencode(repo / "open/Team2/documentation") + b"/\xff\xfe"
    os.makedirs(odd)
    with open(odd + b"/x.md", "w") as fh:
        fh.write("x")
    commit_all(repo, "odd name")
    summary = tmp_path / "s.md"
    result = run_ci(str(repo), "--base-ref", "origin/main", *WAIVE, "--summary", str(summary))
    assert result.exit_code == 1, result.output
    text = summary.read_text(encoding="utf-8")
    assert "tree.unprintable_name" in text and "\\xff\\xfe" in text
    assert "\\xff\\xfe" in result.stdout and "\udcff" not in result.stdout


def test_markdown_and_direction_marks_in_names_are_shown_not_rendered(repo, tmp_path):
    names = ["<h1>ALL CHECKS PASSED <img src=x>", "e\u202etxt", "x` [click](https:\u2215\u2215evil.example) `"]
    for name in names:
        (repo / "open" / name / "results").mkdir(parents=True)
        (repo / "open" / name / "results" / "a").write_text("x")
    commit_all(repo, "markdown names")
    summary = tmp_path / "s.md"
    assert run_ci(str(repo), "--base-ref", "origin/main", "--summary", str(summary)).exit_code == 1
    text = summary.read_text()
    assert "\u202e" not in text and "\\u202e" in text
    assert "\\<h1\\>ALL CHECKS PASSED \\<img src=x\\>" in text  # in prose: escaped for Markdown
    assert "`` open/x` [click](https:\u2215\u2215evil.example) ` ``" in text  # a longer fence holds the backtick
    outside_code = _CODE_SPAN.sub("", text)
    assert not re.search(r"(?<!\\)[<\[]", outside_code)  # no tag, no link: each is escaped


# CommonMark: a code span opens with a run of backticks that no backslash escapes, and the next run of the same
# length closes it
_CODE_SPAN = re.compile(r"(?<![`\\])(`+)(?!`)(.*?)(?<!`)\1(?!`)")


def test_the_summary_stays_under_githubs_cap(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(ci_module, "TABLE_BYTES", 20_000)
    lay_out_submitter(repo, _logs_of(repo), "open", "Team2")
    deep = repo / "open/Team2/documentation" / "/".join("d" * 200 + str(i) for i in range(3))
    deep.mkdir(parents=True)
    for i in range(120):
        (deep / f"f{i:03d}\x01").write_text("x")
    commit_all(repo, "many odd names")
    summary = tmp_path / "s.md"
    result = run_ci(str(repo), "--base-ref", "origin/main", *WAIVE, "--summary", str(summary), "--json")
    assert result.exit_code == 1
    assert len([f for f in _doc(result)["findings"] if f["rule"] == "tree.unprintable_name"]) == 120
    text = summary.read_text()
    assert len(text.encode()) < 2 * 20_000 + 5_000
    assert re.search(r"… \d+ more findings \(the JSON report", text)
