"""Edges of `subtool ci` (subtool/ci.py) the other ci tests leave open: --skip-compliance reaching the check, an
unknown round named before git is asked anything, a pipe in a folder name kept inside its table cell, and the
closing count naming only the submitters checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import git, run_ci
from .results_tree import WAIVE, commit_all, lay_out_submitter, pr_checkout, pr_over_good


@pytest.fixture
def repo(tmp_path, results_logs) -> Path:
    return pr_over_good(tmp_path, results_logs)


def _compliance(doc: dict) -> set[str]:
    return {f["severity"] for f in doc["findings"] if f["rule"].startswith("compliance.")}


def test_skip_compliance_reaches_the_check(repo, results_logs):
    lay_out_submitter(repo, results_logs, "closed", "Closed")  # closed: the compliance tests are required
    commit_all(repo, "closed results without compliance runs")
    strict = json.loads(run_ci(str(repo), "--base-ref", "origin/main", *WAIVE, "--json").stdout)
    assert "error" in _compliance(strict)
    lenient = json.loads(run_ci(str(repo), "--base-ref", "origin/main", *WAIVE, "--skip-compliance", "--json").stdout)
    assert _compliance(lenient) == {"waived"}


def test_an_unknown_round_is_the_first_thing_said(tmp_path):
    result = run_ci(str(tmp_path / "not-a-checkout"), "--base-ref", "origin/main", "--version", "v0.7")
    assert result.exit_code == 2
    assert "unknown submission round 'v0.7'" in result.stderr and "round.unknown" in result.stderr


def test_a_pipe_in_a_folder_name_stays_inside_its_table_cell(repo, tmp_path):
    for folder in ("results", "src", "documentation"):
        (repo / "open/A|B" / folder).mkdir(parents=True)
        (repo / "open/A|B" / folder / "README.md").write_text("x\n")
    commit_all(repo, "a name with a pipe")
    summary = tmp_path / "s.md"
    result = run_ci(str(repo), "--base-ref", "origin/main", "--summary", str(summary))
    assert result.exit_code == 1
    rows = [line for line in summary.read_text().splitlines() if "ci.no_results" in line]
    assert rows and all("A\\|B" in row and "A|B" not in row for row in rows)


def test_the_closing_line_counts_the_submitters_checked_not_the_ones_removed(repo, results_logs):
    git("rm", "-q", "-r", "open/Good", cwd=repo)
    lay_out_submitter(repo, results_logs, "open", "New")
    commit_all(repo, "Good leaves, New comes")
    result = run_ci(str(repo), "--base-ref", "origin/main", *WAIVE)
    assert "open/Good: removed by this pull request" in result.stderr
    assert "0 error(s) in 1 submitter(s)" in result.stderr, result.stderr


def test_warnings_are_printed_as_well_as_errors(repo, results_logs):
    sub = lay_out_submitter(repo, results_logs, "open", "Team2")
    (sub / "results/box/bert-99/Offline/performance/run_1/mlperf_log_summary.txt").unlink()
    commit_all(repo, "a run without its summary")
    result = run_ci(str(repo), "--base-ref", "origin/main", *WAIVE, "--json")
    warned = [f for f in json.loads(result.stdout)["findings"] if f["severity"] == "warning"]
    assert warned, result.stdout
    assert all(f"warning: {f['path']}: " in result.stderr for f in warned), result.stderr


def test_a_long_findings_table_is_cut_to_its_row_limit(repo, results_logs, tmp_path, monkeypatch):
    from subtool import ci as ci_module

    monkeypatch.setattr(ci_module, "MAX_TABLE_ROWS", 3)
    sub = lay_out_submitter(repo, results_logs, "open", "Team2")
    for i in range(6):
        (sub / "documentation" / f"odd{i}\x01").write_text("x")
    commit_all(repo, "six odd names")
    summary = tmp_path / "s.md"
    run_ci(str(repo), "--base-ref", "origin/main", *WAIVE, "--summary", str(summary))
    rows = [line for line in summary.read_text().splitlines() if "tree.unprintable_name" in line]
    assert len(rows) == 3
    assert "… 3 more findings (the JSON report" in summary.read_text()


def test_results_of_a_same_named_submitter_in_another_division_are_not_reported(tmp_path, results_logs):
    base = {"README.md": "# results\n", "closed/Same/results/box/bert-99/Offline/README.md": "no logs at all\n"}
    clone = pr_checkout(tmp_path, base, "pr")
    lay_out_submitter(clone, results_logs, "open", "Same")
    commit_all(clone, "open/Same")
    doc = json.loads(run_ci(str(clone), "--base-ref", "origin/main", *WAIVE, "--json").stdout)
    assert doc["checked"] == ["open/Same"]
    assert doc["results"] and all(r["result"].startswith("open/Same/") for r in doc["results"])


def test_a_submitter_folder_swapped_for_a_link_on_disk_is_refused(repo, results_logs):
    import shutil

    sub = lay_out_submitter(repo, results_logs, "open", "Team2")
    commit_all(repo, "Team2")
    shutil.rmtree(sub)
    sub.symlink_to(repo / "open" / "Good")  # HEAD holds a folder; the work tree points elsewhere
    result = run_ci(str(repo), "--base-ref", "origin/main", *WAIVE)
    assert result.exit_code == 2 and "ci.checkout" in result.stderr


def test_a_pull_request_touching_more_submitters_than_one_git_call_lists_checks_them_all(repo):
    for i in range(205):
        (repo / "open" / f"T{i:03d}").mkdir()
        (repo / "open" / f"T{i:03d}" / "README.md").write_text("x\n")
    commit_all(repo, "many submitters")
    doc = json.loads(run_ci(str(repo), "--base-ref", "origin/main", "--json").stdout)
    assert len(doc["checked"]) == 205 and doc["removed"] == []
    assert len([f for f in doc["findings"] if f["rule"] == "ci.no_results"]) == 205
