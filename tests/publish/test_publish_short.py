"""DEMO and short-run trees: refused unless --allow-short, and when allowed, named in the commit, the pull
request title and its body. Short runs here are real LoadGen logs (min_duration 50 ms)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from subtool.publish.api import publish_tree
from subtool.publish.marks import marks_from_message, message_with, read_marks

from .conftest import UPSTREAM, github
from .helpers import TREE_FILES, git, make_tree
from .results_tree import lay_out_submitter
from .test_publish_add import LLAMA_FILES
from .test_publish_forge import run_cli

BRANCH = "subtool/TeamX"
SHORT = "open/TeamX/results/box/bert-99/Offline"
BERT = "open/TeamX/results/sys1/bert-99/Offline"
DEMO_SYSTEM = (
    json.dumps(
        {
            "system_name": "sys1 (DEMO)",
            "division": "open",
            "hw_notes": "DEMO: embedded demo run (random weights); not a benchmark result.",
        }
    )
    + "\n"
)


@pytest.fixture
def short_tree(tmp_path, results_logs) -> Path:
    root = tmp_path / "short"
    lay_out_submitter(root, results_logs, "open", "TeamX")
    return root


def _cli(tmp_path, forge, users, fork, tree, *extra):
    return run_cli(
        [str(tree), "--fork", fork, "--upstream", UPSTREAM, "--api-url", forge.api_url, *extra],
        {"GITHUB_TOKEN": users.alice},
        tmp_path,
    )


def test_short_run_is_refused_before_anything_is_sent(tmp_path, forge, users, alice_fork, short_tree):
    seen = len(forge.log)
    proc = _cli(tmp_path, forge, users, alice_fork, short_tree)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error")]
    assert len(errors) == 1 and "short run" in errors[0] and SHORT in errors[0] and "50 ms" in errors[0]
    assert "--allow-short" in proc.stderr and "Traceback" not in proc.stderr
    assert len(forge.log) == seen and forge.branch_sha("alice/results", BRANCH) is None


def test_allowed_short_run_says_so_in_commit_title_and_body(tmp_path, forge, users, alice_fork, short_tree):
    proc = _cli(tmp_path, forge, users, alice_fork, short_tree, "--allow-short", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["not_submittable"] == [SHORT]
    message = git("--git-dir", str(forge.repo_path("alice", "results")), "log", "-1", "--format=%B", BRANCH)
    assert message.startswith("[short run] TeamX: bert-99 results (open)\n")
    assert f"Not submittable (short run): {SHORT}" in message
    pr = github(forge, users.organizers).get_repo(UPSTREAM).get_pull(doc["pr_number"])
    assert pr.title == "[short run] TeamX: bert-99 results (open)"
    assert pr.body.startswith("> **short run: not submittable.**")
    assert f"`{SHORT}` (short run: min_duration 50 ms < 600000 ms)" in pr.body


def test_demo_tree_is_refused_then_marked_and_the_mark_stays_when_a_valid_run_joins(
    tmp_path, forge, users, alice_fork, fast, monkeypatch
):
    demo = make_tree(tmp_path / "demo", {**TREE_FILES, "open/TeamX/systems/sys1.json": DEMO_SYSTEM})
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    with pytest.raises(Exception) as info:
        publish_tree(fast(demo, alice_fork))
    assert (info.value.rule, info.value.exit_code) == ("publish.short_run", 2)
    assert "DEMO" in info.value.message
    first = publish_tree(fast(demo, alice_fork, allow_short=True))
    assert first.title == "[DEMO] TeamX: bert-99 results (open)" and first.not_submittable == [BERT]

    valid = make_tree(tmp_path / "valid", LLAMA_FILES)  # no mark: no --allow-short needed
    second = publish_tree(fast(valid, alice_fork))
    assert second.pushed and second.kept == [BERT] and second.not_submittable == [BERT]
    pr = github(forge, users.organizers).get_repo(UPSTREAM).get_pull(first.pr_number)
    assert pr.title.startswith("[DEMO] ") and f"`{BERT}` (DEMO)" in pr.body and "llama2-70b-99" in pr.body
    message = git("--git-dir", str(forge.repo_path("alice", "results")), "log", "-1", "--format=%B", BRANCH)
    assert f"Not submittable (DEMO): {BERT}" in message


# --------------------------------------------------------------------------------- the readers, on bad input
RESULT = ("open", "TeamX", "sys1", "bert-99", "Offline")


@pytest.mark.parametrize(
    "detail, readme, system, expected",
    [
        (None, None, None, (False, False)),
        (b"", b"", b"", (False, False)),
        (b"\xff\xfe garbage", b"\x00" * 10, b"[1, 2]", (False, False)),
        (
            b':::MLLOG {"key": "effective_min_duration_ms", "value": 600000, "time_ms": 1.0}\n',
            None,
            None,
            (False, False),
        ),
        (
            b':::MLLOG {"key": "effective_min_duration_ms", "value": 599999, "time_ms": 1.0}\n',
            None,
            None,
            (True, False),
        ),
        (
            b':::MLLOG {"key": "effective_min_duration_ms", "value": "short", "time_ms": 1.0}\n',
            None,
            None,
            (False, False),
        ),
        (b':::MLLOG {"key": "effective_min_duration_ms", "value": NaN, "time_ms": 1.0}\n', None, None, (False, False)),
        (None, b"# x\nRun style: short \xe2\x80\x94 not submittable\n", None, (True, False)),
        (None, b"> **DEMO** \xe2\x80\x94 produced by subtool\n", None, (False, True)),
        (None, None, b'{"system_name": "box (demo)"}', (False, True)),
        (None, None, b'{"system_name": "box", "sw_notes": "  demo: x"}', (False, True)),
        (None, None, b'{"system_name": {"nested": "(DEMO)"}}', (False, True)),
        (None, None, b"[" * 100000, (False, False)),
    ],
)
def test_marks_readers_never_raise(tmp_path, detail, readme, system, expected):
    folder = tmp_path / "/".join(RESULT[:2]) / "results" / "/".join(RESULT[2:])
    folder.mkdir(parents=True)
    if detail is not None:
        (folder / "performance" / "run_1").mkdir(parents=True)
        (folder / "performance" / "run_1" / "mlperf_log_detail.txt").write_bytes(detail)
    if readme is not None:
        (folder / "README.md").write_bytes(readme)
    if system is not None:
        (tmp_path / "open/TeamX/systems").mkdir(parents=True)
        (tmp_path / "open/TeamX/systems/sys1.json").write_bytes(system)
    marks = read_marks(tmp_path, [RESULT])
    rid = "open/TeamX/results/sys1/bert-99/Offline"
    assert (rid in marks.short, rid in marks.demo) == expected


def test_marks_survive_the_commit_message_round_trip():
    marks = read_marks(Path("/nonexistent"), [])
    marks.demo.add("open/T/results/s/m/Offline")
    marks.short.update({"open/T/results/s/m/Offline", "open/T/results/s/m/Server"})
    message = message_with("Title\n\nbody\n", marks)
    assert message.startswith("[DEMO / short run] Title\n")
    back = marks_from_message(message)
    assert (back.demo, back.short) == (marks.demo, marks.short)
    assert not marks_from_message("Title\n\nNot submittable: nothing parsable\n")
