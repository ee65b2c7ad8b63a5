"""TEST06 for the LLMs end to end: the audited LoadGen run of a closed-division llama3.1-8b result, subtool's
verification of it, the TEST06 folder in the tree and what both checkers say about it; then the verification on
real audited accuracy logs edited to break each of its checks, next to the official verification's verdicts
(recorded in tests/fixtures/llm/official_test06.json; re-run live when a copy of the official repo is present)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.official import official_errors
from typer.testing import CliRunner

from subtool.cli import app
from subtool.runner.compliance import verify_test06

from .conftest import short_user_conf

runner = CliRunner()
RECORDED = json.loads((Path(__file__).parents[2] / "fixtures" / "llm" / "official_test06.json").read_text())
VERDICT_LINES = ("First token check pass:", "EOS check pass:", "Sample length check pass:", "TEST06 verification")


def _run(*args):
    return runner.invoke(app, ["run", *map(str, args)])


def _eos_id(model_path) -> int:
    from transformers import AutoTokenizer

    return int(AutoTokenizer.from_pretrained(str(model_path)).eos_token_id)


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory, llama3_small):
    """A closed-division llama3.1-8b Offline run (both modes) with TEST06: its run directory."""
    out = tmp_path_factory.mktemp("t06-offline")
    conf = short_user_conf(out / "user.conf", "llama3_1-8b", "Offline", target_qps=1000)
    res = _run(
        "--model",
        "llama3.1-8b",
        "--model-path",
        llama3_small.model_path,
        "--dataset-path",
        llama3_small.dataset_path,
        "--out",
        out / "runs",
        "--user-conf",
        conf,
        "--compliance",
        "TEST06",
    )
    assert res.exit_code == 0, res.output
    return out / "runs/llama3.1-8b/Offline"


@pytest.fixture(scope="module")
def server_run(tmp_path_factory, llama3_small):
    """Server reports the first token early (FirstTokenComplete), so TEST06 checks it there."""
    out = tmp_path_factory.mktemp("t06-server")
    conf = short_user_conf(out / "user.conf", "llama3_1-8b", "Server", target_qps=40)
    res = _run(
        "--model",
        "llama3.1-8b",
        "--scenario",
        "Server",
        "--mode",
        "performance",
        "--model-path",
        llama3_small.model_path,
        "--dataset-path",
        llama3_small.dataset_path,
        "--out",
        out / "runs",
        "--user-conf",
        conf,
        "--batch-size",
        "8",
        "--compliance",
        "TEST06",
    )
    assert res.exit_code == 0, res.output
    return out / "runs/llama3.1-8b/Server"


@pytest.fixture(scope="module")
def closed_tree(tmp_path_factory, offline_run):
    out = tmp_path_factory.mktemp("t06-tree") / "tree"
    res = runner.invoke(
        app,
        [
            "package",
            "--from",
            str(offline_run),
            "--submitter",
            "TeamX",
            "--system",
            "box1",
            "--division",
            "closed",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    return out


# ------------------------------------------------------------------------------------------- the runs
def test_offline_run_audits_and_verifies(offline_run):
    t06 = offline_run / "TEST06"
    assert sorted(str(p.relative_to(t06)) for p in t06.rglob("*") if p.is_file()) == [
        "accuracy/mlperf_log_accuracy.json",
        "performance/run_1/mlperf_log_detail.txt",
        "performance/run_1/mlperf_log_summary.txt",
        "verify_accuracy.txt",
    ]
    detail = (t06 / "performance/run_1/mlperf_log_detail.txt").read_text()
    # the official audit settings reached LoadGen: 100 sampled answers, equal-issue mode off
    assert '"key": "effective_accuracy_log_sampling_target", "value": 100' in detail
    assert '"key": "effective_sample_concatenate_permutation", "value": false' in detail
    entries = json.loads((t06 / "accuracy/mlperf_log_accuracy.json").read_text())
    assert len(entries) >= 90 and all("token_count" in e and "token_data" not in e for e in entries)
    lines = (t06 / "verify_accuracy.txt").read_text().splitlines()
    assert lines[:4] == [
        "First token check pass: Skipped",
        "EOS check pass: True",
        "Sample length check pass: True",
        "TEST06 verification complete",
    ]
    assert lines[-1] == "TEST PASS"
    entry = json.loads((offline_run / "run.json").read_text())["compliance"]["TEST06"]
    assert entry == {
        **entry,
        "dir": "TEST06",
        "accuracy_pass": True,
        "first_token": "Skipped",
        "eos": True,
        "sample_length": True,
        "samples": len(entries),
    }


def test_server_run_checks_the_early_first_token(server_run):
    entries = json.loads((server_run / "TEST06/accuracy/mlperf_log_accuracy.json").read_text())
    assert entries and all(e["token_data"] and e["data"].startswith(e["token_data"]) for e in entries)
    lines = (server_run / "TEST06/verify_accuracy.txt").read_text().splitlines()
    assert lines[:4] == [
        "First token check pass: True",
        "EOS check pass: True",
        "Sample length check pass: True",
        "TEST06 verification complete",
    ]
    assert json.loads((server_run / "run.json").read_text())["compliance"]["TEST06"]["first_token"] == "True"


# ------------------------------------------------------------------------------------------- the tree
def test_tree_holds_what_the_official_verification_hands_in(closed_tree, offline_run):
    t06 = closed_tree / "closed/TeamX/results/box1/llama3.1-8b/Offline/TEST06"
    assert sorted(str(p.relative_to(t06)) for p in t06.rglob("*") if p.is_file()) == [
        "accuracy/mlperf_log_accuracy.json",
        "verify_accuracy.txt",
    ]
    assert (t06 / "accuracy/mlperf_log_accuracy.json").read_bytes() == (
        offline_run / "TEST06/accuracy/mlperf_log_accuracy.json"
    ).read_bytes()


def test_subtool_check_passes_the_compliance_rules(closed_tree):
    res = runner.invoke(app, ["check", str(closed_tree), "--json"])
    findings = json.loads(res.stdout)["findings"]
    assert not [f for f in findings if f["rule"].startswith("compliance.")]
    # the small data set and the random weights fail other rules; TEST06 is not among them
    assert {f["rule"] for f in findings if f["severity"] == "error"} >= {"acc.dataset_size"}


def test_subtool_check_fails_a_failed_test06(closed_tree, offline_run, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(closed_tree, tree)
    t06 = tree / "closed/TeamX/results/box1/llama3.1-8b/Offline/TEST06"
    entries = _edit(
        offline_run / "TEST06/accuracy/mlperf_log_accuracy.json", "eos_repeated_at_end", eos=_eos_from(offline_run)
    )
    log = t06 / "accuracy/mlperf_log_accuracy.json"
    log.write_text(json.dumps(entries))
    (t06 / "verify_accuracy.txt").write_text(
        verify_test06(log, scenario="Offline", dtype="int32", eos_token_id=_eos_from(offline_run)).text
    )
    res = runner.invoke(app, ["check", str(tree), "--json"])
    failed = [f for f in json.loads(res.stdout)["findings"] if f["rule"] == "compliance.failed"]
    assert len(failed) == 1 and failed[0]["path"].endswith("TEST06/verify_accuracy.txt")
    assert "EOS False" in failed[0]["message"]


def test_official_checker_accepts_the_test06_part(closed_tree, official_checker, tmp_path):
    recorded = RECORDED["checker"]["closed_llama3.1-8b_Offline_v6.1"]
    errors, output = official_errors(official_checker, closed_tree, "v6.1", tmp_path)
    assert errors == recorded["errors"]
    assert not [e for e in errors if "TEST06" in e or "ompliance" in e]
    assert recorded["compliance_passed"] in output


# ------------------------------------------------------------------------------ the verification itself
def _eos_from(run_dir: Path) -> int:
    m = re.search(r"EOS id (\d+)", (run_dir / "TEST06/verify_accuracy.txt").read_text())
    return int(m.group(1))


def _hex(tokens) -> str:
    return np.asarray(tokens, dtype=np.int32).tobytes().hex().upper()


def _ids(text: str) -> list[int]:
    return np.frombuffer(bytes.fromhex(text), dtype=np.int32).tolist()


def _edit(log: Path, case: str, *, eos: int) -> list[dict]:
    """A real audited accuracy log with one kind of fault put into it (or a corner the official check allows)."""
    entries = json.loads(log.read_text())
    e = entries[3]
    tokens = _ids(e["data"])
    assert eos not in tokens  # the demo model's answers stop at their length, never on EOS
    if case == "first_token_mismatch":
        e["token_data"] = _hex([_ids(e["token_data"])[0] + 1])
    elif case == "eos_repeated_at_end":
        e["data"], e["token_count"] = _hex(tokens + [eos, eos]), len(tokens) + 2
    elif case == "token_count_mismatch":
        e["token_count"] = len(tokens) + 1
    elif case == "eos_inside":
        e["data"], e["token_count"] = _hex(tokens[:4] + [eos] + tokens[4:]), len(tokens) + 1
    elif case == "answer_of_two_eos":
        e["data"], e["token_count"] = _hex([eos, eos]), 2
        if "token_data" in e:
            e["token_data"] = _hex([eos])
    elif case == "no_token_count":  # how LoadGen logs a model without token latencies (gpt-j)
        for entry in entries:
            entry.pop("token_count")
    else:
        raise AssertionError(case)
    return entries


CASES = {  # case → the detail line subtool adds (None: none expected)
    "first_token_mismatch": "first token reported early differs from the answer's first token: qsl_idx {qsl}",
    "eos_repeated_at_end": "answer ends with more than one EOS: qsl_idx {qsl}",
    "token_count_mismatch": "reported token count differs from the tokens returned: qsl_idx {qsl} (qsl_idx {qsl}: "
    "reported {n1}, returned {n})",
    "eos_inside": "note: EOS inside the answer (not counted: the official check looks at its end only): qsl_idx {qsl}",
    "answer_of_two_eos": None,
    "no_token_count": "no token_count logged (LoadGen logs it when use_token_latencies is on): qsl_idx",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_verification_of_edited_logs(server_run, tmp_path, case):
    eos = _eos_from(server_run)
    src = server_run / "TEST06/accuracy/mlperf_log_accuracy.json"
    entries = _edit(src, case, eos=eos)
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text(json.dumps(entries))
    outcome = verify_test06(log, scenario="Server", dtype="int32", eos_token_id=eos)
    lines = outcome.text.splitlines()
    expected = RECORDED["verification"][case]
    # the verdict lines are those the official verification writes for the same log
    assert lines[:4] == expected["lines"]
    assert outcome.passed is expected["passed"] and lines[-1] == ("TEST PASS" if outcome.passed else "TEST FAIL")
    detail = CASES[case]
    if detail is not None:
        n = len(_ids(json.loads(src.read_text())[3]["data"]))
        want = detail.format(qsl=entries[3]["qsl_idx"], n=n, n1=n + 1)
        assert any(line.startswith(want) for line in lines), outcome.text


def test_offline_skips_the_first_token_check(offline_run, tmp_path):
    eos = _eos_from(offline_run)
    entries = json.loads((offline_run / "TEST06/accuracy/mlperf_log_accuracy.json").read_text())
    entries[0]["token_data"] = _hex([_ids(entries[0]["data"])[0] + 1])  # ignored: Offline has no early token
    log = tmp_path / "log.json"
    log.write_text(json.dumps(entries))
    out = verify_test06(log, scenario="Offline", dtype="int32", eos_token_id=eos)
    assert out.passed and out.first_token == "Skipped"


def test_an_empty_log_proves_nothing(tmp_path):
    log = tmp_path / "log.json"
    log.write_text("[]")
    out = verify_test06(log, scenario="Offline", dtype="int32", eos_token_id=2)
    assert not out.passed and out.text.splitlines()[2] == "Sample length check pass: False"
    assert "no responses were logged" in out.text


@pytest.mark.parametrize("case", sorted(CASES))
def test_official_verification_agrees(server_run, official_checker, tmp_path, case):
    """The recorded verdicts are what the official run_verification.py prints for the same edited logs."""
    script = official_checker.parents[1] / "compliance" / "TEST06" / "run_verification.py"
    if not script.is_file():
        pytest.skip("compliance/TEST06 not in the official copy")
    eos = _eos_from(server_run)
    comp = tmp_path / "comp"
    comp.mkdir()
    (comp / "mlperf_log_accuracy.json").write_text(
        json.dumps(_edit(server_run / "TEST06/accuracy/mlperf_log_accuracy.json", case, eos=eos))
    )
    # its -e option arrives as a string and then never equals a token, so EOS is checked only with the default
    # id, 2: the demo tokenizer's
    assert eos == 2
    proc = subprocess.run(
        [sys.executable, str(script), "-c", str(comp), "-o", str(tmp_path / "out"), "-s", "Server", "-d", "int32"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    expected = RECORDED["verification"][case]
    if expected.get("official_crashes"):
        assert proc.returncode != 0 and "KeyError" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    got = (tmp_path / "out/TEST06/verify_accuracy.txt").read_text().splitlines()
    assert [ln for ln in got if ln.startswith(VERDICT_LINES)] == expected["lines"]
