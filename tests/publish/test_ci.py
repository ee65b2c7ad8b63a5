"""`subtool ci` on a real results-repository checkout, and the reusable workflow's own check step."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from subtool.ci import ChangedSubmitter, annotations, changed_submitters
from subtool.cli import app
from subtool.errors import SubtoolError

from .helpers import git
from .results_tree import commit_all, lay_out_submitter, pr_checkout

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
RESULT = "open/TeamX/results/box/bert-99/Offline"


@pytest.fixture
def checkout(tmp_path, results_logs) -> Path:
    """A clone of a results repository (origin/main exists) whose HEAD adds open/TeamX on a PR branch.

    The base already holds another team whose directory breaks the rules: `subtool ci` must not check it.
    """
    base = {"README.md": "# results\n", "closed/Broken/results/box/bert-99/Offline/README.md": "no logs at all\n"}
    clone = pr_checkout(tmp_path, base, "teamx")
    lay_out_submitter(clone, results_logs, "open", "TeamX")
    commit_all(clone, "TeamX results")
    return clone


def ci(*args: str, env: dict | None = None):
    result = CliRunner().invoke(app, ["ci", *args], env=env)
    return result


def test_ci_checks_only_the_changed_submitter(checkout, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    result = ci(
        str(checkout),
        "--base-ref",
        "origin/main",
        "--waive",
        "perf.min_duration",
        "--json",
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] and doc["checked"] == ["open/TeamX"]
    assert [r["result"] for r in doc["results"]] == [RESULT]
    text = summary.read_text()
    assert text.startswith("earlier step\n")  # appended, never overwritten
    assert f"| `{RESULT}` | ✅ pass |" in text and "perf.min_duration" in text
    assert "Broken" not in text
    # the whole tree would fail: Broken is in the base, and only the PR's directories are checked
    whole = CliRunner().invoke(app, ["check", str(checkout), "--waive", "perf.min_duration"])
    assert whole.exit_code == 1


def test_ci_errors_fail_with_annotations_and_a_table(checkout, tmp_path):
    system = checkout / "open/TeamX/systems/box.json"
    system.write_text(
        system.read_text().replace('"host_processor_model_name": "Test CPU"', '"host_processor_model_name": ""')
    )
    git("commit", "-q", "-am", "forget the processor", cwd=checkout)
    summary = tmp_path / "summary.md"
    result = ci(str(checkout), "--base-ref", "origin/main", "--waive", "perf.min_duration", "--summary", str(summary))
    assert result.exit_code == 1
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("::error ")]
    assert lines and all(ln.startswith("::error file=open/TeamX/") for ln in lines)
    assert "::error file=open/TeamX/systems/box.json,title=system.field_empty::" in result.stdout
    text = summary.read_text()
    assert "**failed**" in text and f"| `{RESULT}` | ❌ fail |" in text
    assert "| error | `system.field_empty` | `open/TeamX/systems/box.json` |" in text


def test_ci_on_a_merge_commit_like_github_checks_out(checkout):
    """pull_request events check out refs/pull/N/merge: the PR merged into the base's tip."""
    git("checkout", "-q", "--detach", "origin/main", cwd=checkout)
    git("merge", "-q", "--no-ff", "-m", "Merge teamx into main", "teamx", cwd=checkout)
    changes = changed_submitters(checkout, "origin/main")
    assert changes.submitters == [ChangedSubmitter("open", "TeamX", True)]


def test_ci_with_nothing_to_check_and_with_a_removed_submitter(checkout, tmp_path):
    git("checkout", "-q", "-b", "docs", "origin/main", cwd=checkout)
    (checkout / "README.md").write_text("# results, better explained\n")
    shutil.rmtree(checkout / "closed" / "Broken")
    git("commit", "-q", "-am", "docs; Broken withdraws", cwd=checkout)
    summary = tmp_path / "s.md"
    result = ci(str(checkout), "--base-ref", "origin/main", "--summary", str(summary), "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert (doc["checked"], doc["removed"], doc["other_paths"]) == ([], ["closed/Broken"], ["README.md"])
    assert "removed by this pull request" in result.stderr
    git("checkout", "-q", "-b", "only-docs", "origin/main", cwd=checkout)
    (checkout / "README.md").write_text("# typo fixed\n")
    git("commit", "-q", "-am", "docs", cwd=checkout)
    result = ci(str(checkout), "--base-ref", "origin/main", "--summary", str(summary))
    assert result.exit_code == 0
    assert summary.read_text().rstrip().endswith("nothing to check.")


def test_ci_usage_errors(checkout, tmp_path):
    result = ci(str(checkout), "--base-ref", "origin/no-such-branch")
    assert result.exit_code == 2 and "is not in the checkout" in result.stderr
    result = ci(str(tmp_path / "nowhere"), "--base-ref", "main")
    assert result.exit_code == 2
    shallow = tmp_path / "shallow"
    git("clone", "-q", "--depth", "1", "--branch", "teamx", f"file://{checkout}", str(shallow))
    git(
        "fetch",
        "-q",
        "--depth",
        "1",
        f"file://{checkout}",
        "refs/remotes/origin/main:refs/remotes/origin/base",
        cwd=shallow,
    )
    with pytest.raises(SubtoolError) as info:
        changed_submitters(shallow, "origin/base")
    assert info.value.rule == "ci.base_ref" and "fetch-depth: 0" in info.value.hint


def test_annotation_escaping():
    class F:
        severity, rule, path, hint = "error", "perf.x", "open/a,b:c/d.txt", "fix it"
        message = "100% wrong\nsecond line"

    [line] = annotations([F()])
    assert line == "::error file=open/a%2Cb%3Ac/d.txt,title=perf.x::100%25 wrong%0Asecond line — fix it"


# ------------------------------------------------------------------------------------------ workflows
def _load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def test_reusable_workflow_shape():
    wf = _load("check-results.yml")
    call = wf["on"]["workflow_call"]
    assert set(call["inputs"]) >= {"version", "waive", "skip-compliance", "subtool-spec"}
    assert wf["permissions"] == {"contents": "read"}
    steps = wf["jobs"]["check"]["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"] == {"fetch-depth": 0, "persist-credentials": False}
    for workflow in ("check-results.yml", "ci.yml"):
        for job in _load(workflow)["jobs"].values():
            for step in job.get("steps", []):
                if "uses" in step:
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
                assert "${{" not in step.get("run", ""), "expressions go through env:, never into scripts"
    ci_wf = _load("ci.yml")
    assert ci_wf["jobs"]["results-check-smoke"]["uses"] == "./.github/workflows/check-results.yml"


def _subtool_on_path(tmp_path: Path) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "subtool"
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'from subtool.cli import main; main()' \"$@\"\n")
    shim.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def test_reusable_workflow_check_step_runs_as_on_github(checkout, tmp_path):
    """Run the workflow's own `run:` script with the env GitHub would give it, in a PR checkout."""
    step = next(
        s
        for s in _load("check-results.yml")["jobs"]["check"]["steps"]
        if "subtool" in s.get("run", "") and "ci" in s["run"]
    )
    summary = tmp_path / "summary.md"
    env = {
        **os.environ,
        "PATH": _subtool_on_path(tmp_path),
        "GITHUB_STEP_SUMMARY": str(summary),
        "BASE_REF": "main",
        "VERSION": "v6.1",
        "WAIVE": "perf.min_duration",
        "SKIP_COMPLIANCE": "false",
    }
    ok = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=checkout, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert f"| `{RESULT}` | ✅ pass |" in summary.read_text()
    env["WAIVE"] = ""  # a short run without the waiver fails, with annotations
    failing = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=checkout, env=env, capture_output=True, text=True)
    assert failing.returncode == 1
    assert "::error file=open/TeamX/" in failing.stdout and "title=perf.min_duration" in failing.stdout


def test_ci_unwritable_summary_is_one_line_exit_2(checkout, tmp_path):
    (tmp_path / "afile").write_text("x")
    result = ci(
        str(checkout),
        "--base-ref",
        "origin/main",
        "--waive",
        "perf.min_duration",
        "--summary",
        str(tmp_path / "afile" / "summary.md"),
    )
    assert result.exit_code == 2, result.output
    assert "--summary" in result.stderr and "[io.enotdir]" in result.stderr  # refused before checking
    assert result.exception is None or isinstance(result.exception, SystemExit)
