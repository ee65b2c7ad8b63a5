"""`subtool ci` on pull requests that try to write workflow commands through folder names, and on a repository
with its own folders (.git, .github, tools) beside the divisions."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from subtool.checker.findings import Finding
from subtool.ci import annotations, printable

from .results_tree import commit_all, lay_out_submitter, pr_checkout

HOSTILE_SYSTEM = "box\n::error file=README.md,title=pwned::injected system"
HOSTILE_SCENARIO = "Offline\r::warning::injected scenario"
HOSTILE_SUBMITTER = "Team::error::injected\u2028::error::also injected"


@pytest.fixture
def checkout(tmp_path, results_logs) -> Path:
    """A results repository with its own folders, and a pull request whose folder names are workflow commands."""
    base = {
        "README.md": "# results\n",
        ".github/workflows/check.yml": "on: pull_request\n",
        "tools/score.py": "print('hi')\n",
        ".hidden/notes.txt": "x\n",
    }
    clone = pr_checkout(tmp_path, base, "pr")
    sub = lay_out_submitter(clone, results_logs, "open", "TeamX")
    (sub / "results" / "box").rename(sub / "results" / HOSTILE_SYSTEM)
    (sub / "systems" / "box.json").rename(sub / "systems" / f"{HOSTILE_SYSTEM}.json")
    model = sub / "results" / HOSTILE_SYSTEM / "bert-99"
    (model / "Offline").rename(model / HOSTILE_SCENARIO)
    lay_out_submitter(clone, results_logs, "closed", HOSTILE_SUBMITTER)
    (clone / ".github" / "workflows" / "check.yml").write_text("on: [pull_request]\n")  # the PR touches these too
    (clone / "tools" / "score.py").write_text("print('hello')\n")
    commit_all(clone, "hostile names")
    return clone


def _subtool(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    code = "import sys; from subtool.cli import main; sys.argv[0] = 'subtool'; main()"
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300
    )


def _unescape(text: str) -> str:
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%3A", ":").replace("%2C", ",").replace("%25", "%")


def workflow_commands(output: str) -> list[tuple[str, dict[str, str], str]]:
    """Every line GitHub's runner would take for a workflow command (it trims leading space, then looks for
    `::`), parsed as the runner does. Python's splitlines breaks on more characters than the runner does."""
    found = []
    for line in output.splitlines():
        line = line.lstrip()
        if not line.startswith("::"):
            continue
        head, sep, data = line[2:].partition("::")
        assert sep, f"a line that starts like a command but is none: {line!r}"
        name, _, props = head.partition(" ")
        fields = dict(p.split("=", 1) for p in props.split(",") if "=" in p) if props else {}
        found.append((name, {k: _unescape(v) for k, v in fields.items()}, _unescape(data)))
    return found


def _spelled(text: str) -> str:
    """What an annotation carries after the runner unescapes it: the text, other control characters spelled out."""
    return "".join(part if part in ("\r", "\n") else printable(part) for part in re.split(r"([\r\n])", text))


def test_folder_names_cannot_write_workflow_commands(checkout, tmp_path):
    summary = tmp_path / "summary.md"
    plain = _subtool(["ci", str(checkout), "--base-ref", "origin/main", "--summary", str(summary)], checkout)
    assert plain.returncode == 1, plain.stderr
    as_json = _subtool(["ci", str(checkout), "--base-ref", "origin/main", "--json"], checkout)
    doc = json.loads(as_json.stdout)
    findings = [f for f in doc["findings"] if f["severity"] in ("error", "warning")]
    # the hostile folders were checked (so their names reached the output), and both PR submitters were
    assert any(HOSTILE_SYSTEM in f["path"] for f in findings)
    assert any(HOSTILE_SUBMITTER in f["path"] for f in findings)
    assert sorted(doc["checked"]) == sorted(["open/TeamX", f"closed/{HOSTILE_SUBMITTER}"])

    expected = [
        (
            f["severity"],
            {"file": _spelled(f["path"]), "title": f["rule"]},
            _spelled(f["message"] + (f" — {f['hint']}" if f["hint"] else "")),
        )
        for f in findings
    ]
    for run in (plain.stdout + plain.stderr, as_json.stderr):
        commands = workflow_commands(run)
        # exactly one annotation per finding, each naming its file and rule: nothing injected, nothing lost
        assert sorted(map(repr, commands)) == sorted(map(repr, expected))
    text = summary.read_text()
    assert not any(line.lstrip().startswith("::") for line in text.splitlines())


def test_the_repositorys_own_folders_are_not_findings(checkout):
    proc = _subtool(["ci", str(checkout), "--base-ref", "origin/main", "--json"], checkout)
    doc = json.loads(proc.stdout)
    ours = ("open/TeamX/", f"closed/{HOSTILE_SUBMITTER}/")
    outside = [f for f in doc["findings"] if not (f["path"] + "/").startswith(ours)]
    assert outside == []
    # the hostile name itself is refused by the one name rule (tree.bad_name), at the submitter folder
    assert any(f["rule"] == "tree.bad_name" and f["path"] == f"closed/{HOSTILE_SUBMITTER}" for f in doc["findings"])
    assert ".git" not in proc.stderr and ".github" not in proc.stderr and "tools" not in proc.stderr
    assert sorted(doc["other_paths"]) == [".github/workflows/check.yml", "tools/score.py"]


def test_escaping_follows_githubs_rules_and_spells_out_control_characters():
    finding = Finding(
        "system.missing", "error", "open/a,b:c/x%\r\n\x0b\x85.json", "50% off\nnext\x1b[31m", "fix:it", None
    )
    [line] = annotations([finding])
    assert line == (
        "::error file=open/a%2Cb%3Ac/x%25%0D%0A\\x0b\\x85.json,title=system.missing::50%25 off%0Anext\\x1b[31m — fix:it"
    )
    assert printable("a\nb\u2028c\x7f") == "a\\x0ab\\u2028c\\x7f"


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the test extra
    given = None

if given is not None:

    @settings(max_examples=300, deadline=None)
    @given(path=st.text(), message=st.text(), hint=st.text(), severity=st.sampled_from(["error", "warning"]))
    def test_any_name_or_message_makes_exactly_one_well_formed_annotation(path, message, hint, severity):
        [line] = annotations([Finding("layout.x", severity, path, message, hint, None)])
        assert len(line.splitlines()) == 1 and line == line.strip("\r\n")
        [(name, props, data)] = workflow_commands(line)
        assert name == severity and props == {"file": _spelled(path), "title": "layout.x"}
        assert data == _spelled(message + (f" — {hint}" if hint else ""))
        assert len(printable(path).splitlines()) <= 1
