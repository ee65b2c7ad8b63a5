"""`subtool check` end to end on real trees: exit codes, --json, --csv, --report, --waive, human output,
--skip-compliance, --official; and the rule catalogue staying in step with RULES.md."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from subtool.checker.api import CheckOptions, check_tree
from subtool.checker.report import summary_csv_text
from subtool.checker.rules import all_rules
from subtool.cli import app

runner = CliRunner()
# Files whose damage must fail the check (others, e.g. README.md or a truncated accuracy log, may stay valid
# for the official checker too).
CRITICAL = {
    "mlperf_log_detail.txt",
    "accuracy.txt",
    "measurements.json",
    "box.json",
    "verify_accuracy.txt",
    "verify_performance.txt",
}
DEMO = "open/TeamX/results/box/bert-99/Offline"


def test_short_open_run_fails_until_min_duration_is_waived(case_trees):
    tree = case_trees["demo_open_short_run_waived"]
    plain = runner.invoke(app, ["check", str(tree), "--json"])
    assert plain.exit_code == 1
    doc = json.loads(plain.stdout)
    assert not doc["ok"] and [f["rule"] for f in doc["findings"] if f["severity"] == "error"] == ["perf.min_duration"]

    waived = runner.invoke(app, ["check", str(tree), "--json", "--waive", "perf.min_duration"])
    assert waived.exit_code == 0
    doc = json.loads(waived.stdout)
    assert doc["ok"] and doc["waived_rules"] == ["perf.min_duration"]
    (result,) = doc["results"]
    assert result["passed"] and result["run_style"] == "short" and result["waived"] == ["perf.min_duration"]
    (finding,) = [f for f in doc["findings"] if f["rule"] == "perf.min_duration"]
    assert finding["severity"] == "waived" and finding["result"] == DEMO and finding["hint"]
    assert len(doc["summary_rows"]) == 1
    # human output (stderr) names the waived rule; it never claims the rule passed
    assert "perf.min_duration waived (short run)" in waived.stderr
    assert "PASS (waived)" in waived.stderr


def test_csv_and_report_files(case_trees, tmp_path):
    tree = case_trees["bert_closed_valid"]
    csv_path, report_path = tmp_path / "out" / "summary.csv", tmp_path / "out" / "report.json"
    result = runner.invoke(app, ["check", str(tree), "--csv", str(csv_path), "--report", str(report_path)])
    assert result.exit_code == 0, result.output
    assert csv_path.read_text() == summary_csv_text(check_tree(tree, CheckOptions()))
    report = json.loads(report_path.read_text())
    assert report["schema"] == "subtool.check/1" and report["counts"]["passed"] == 2
    assert not list(csv_path.parent.glob(".*tmp"))  # atomic writes leave no temporaries


def test_failures_are_grouped_by_result_with_fix(case_trees):
    result = runner.invoke(app, ["check", str(case_trees["low_accuracy_closed"])])
    assert result.exit_code == 1
    err = result.stderr
    assert "FAIL closed/TeamX/results/box/bert-99/Offline" in err
    assert "acc.below_threshold" in err and "fix:" in err
    assert "PASS closed/TeamX/results/box/bert-99/SingleStream" in err


def test_shared_findings_fail_every_result_of_the_system(case_trees):
    report = check_tree(case_trees["wrong_submitter"], CheckOptions())
    assert [r.passed for r in report.results] == [False, False]
    (finding,) = [f for f in report.findings if f.rule == "system.submitter_mismatch"]
    assert finding.result is None and finding.path == "closed/TeamX/systems/box.json"
    assert all("system.submitter_mismatch" in r.failed for r in report.results)


def test_skip_compliance_waives_compliance_findings(case_trees):
    tree = case_trees["missing_test01"]
    assert not check_tree(tree, CheckOptions()).ok
    report = check_tree(tree, CheckOptions(skip_compliance=True))
    assert report.ok
    (finding,) = [f for f in report.findings if f.rule == "compliance.missing"]
    assert finding.severity == "waived" and "--skip-compliance" in finding.message


def test_v6_rules_on_a_v5_tree_say_so(case_trees):
    report = check_tree(case_trees["bert_closed_v50_legacy_layout"], CheckOptions(version="v6.1"))
    rules = {f.rule for f in report.findings if f.severity == "error"}
    # said once up front (a warning: the official checker reads nothing in those folders), and the results fail
    # on the files v6 wants in them
    assert "layout.wrong_generation" in {f.rule for f in report.findings} and "perf.seeds" in rules
    assert not any(r.passed for r in report.results)
    seed = next(f for f in report.findings if f.rule == "perf.seeds")
    assert "v5.0" in seed.hint  # it tells which round the logs' seeds belong to


@pytest.mark.parametrize(
    "args, words",
    [
        (["check", "/nonexistent/tree"], "does not exist"),
        (["check", ".", "--version", "v4.9"], "unknown submission round 'v4.9' [round.unknown]"),
        (["check", ".", "--waive", "perf.no_such_rule"], "cannot waive unknown rule"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args, words):
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and words in result.stderr
    assert "Traceback" not in result.output


def test_a_file_instead_of_a_tree(tmp_path):
    f = tmp_path / "tree.tar.gz"
    f.write_bytes(b"\x1f\x8b")
    result = runner.invoke(app, ["check", str(f)])
    assert result.exit_code == 2 and "not a directory" in result.stderr


def test_never_a_traceback_whatever_a_file_holds(case_trees, tmp_path):
    """Every file of a valid tree, in turn: random bytes, emptied, cut in half, replaced by a folder."""
    src = case_trees["bert_closed_valid"]
    files = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file())
    rng = random.Random(5)
    damages = [
        lambda p: p.write_bytes(bytes(rng.randrange(256) for _ in range(512))),
        lambda p: p.write_bytes(b""),
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        lambda p: (p.unlink(), p.mkdir()),
    ]
    tree = tmp_path / "t"
    for i, rel in enumerate(files):
        damage = damages[i % len(damages)]
        if tree.exists():
            shutil.rmtree(tree)
        shutil.copytree(src, tree)
        damage(tree / rel)
        report = check_tree(tree, CheckOptions())  # must not raise
        assert len(report.results) == 2 and all(isinstance(r.passed, bool) for r in report.results)
        # (half an accuracy.txt keeps its metric line and a hash= prefix: valid for the official checker too)
        if rel.name in CRITICAL and not (rel.name == "accuracy.txt" and i % len(damages) == 2):
            assert not report.ok, f"{rel} damaged ({i % len(damages)}) but the tree still passes"


def test_rules_md_lists_every_rule():
    text = (Path(__file__).resolve().parents[2] / "subtool" / "checker" / "RULES.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|", text, flags=re.M))
    assert documented == set(all_rules())


def test_official_diff_explains_stricter_verdicts(case_trees, official_checkout):
    tree = case_trees["invalid_result"]
    result = runner.invoke(app, ["check", str(tree), "--official", str(official_checkout), "--json"])
    assert result.exit_code == 1
    diff = json.loads(result.stdout)["official_diff"]
    assert not diff["crashed"]
    (row,) = diff["disagreements"]
    assert row["subtool"] == "fail" and row["official"] == "pass"
    assert row["explained"] == "subtool is stricter: perf.result_invalid"
    assert "differs" in result.stderr


def test_official_diff_reports_a_crash(case_trees, official_checkout):
    report = check_tree(case_trees["missing_system_json"], CheckOptions(official=official_checkout))
    assert report.official_diff.crashed and "Error" in report.official_diff.crash
    assert all(row["official"] == "crashed (no verdict)" for row in report.official_diff.disagreements)


def test_official_path_that_is_not_a_checker(case_trees, tmp_path):
    result = runner.invoke(app, ["check", str(case_trees["bert_open_valid"]), "--official", str(tmp_path)])
    assert result.exit_code == 2 and "no official submission checker" in result.stderr


def test_parallel_and_serial_checks_agree(case_trees, tmp_path, monkeypatch):
    """Results checked by forked workers come back complete and in tree order."""
    import subtool.checker.api as api

    tree = tmp_path / "many"
    for name in ("bert_closed_valid", "llama2_open_valid", "wrong_submitter", "missing_perf_log"):
        for team in case_trees[name].glob("*/TeamX"):
            dest = tree / team.parent.name / name  # one submitter folder per case
            shutil.copytree(team, dest)
            for system_json in dest.glob("systems/*.json"):
                data = json.loads(system_json.read_text())
                if data["submitter"] == "TeamX":
                    data["submitter"] = name
                system_json.write_text(json.dumps(data))
    serial = check_tree(tree, CheckOptions())
    monkeypatch.setattr(api, "PARALLEL_MIN_RESULTS", 1)
    parallel = check_tree(tree, CheckOptions())
    assert len(serial.results) == 7 and 0 < len(serial.rows) < 7
    assert [r.to_dict() for r in parallel.results] == [r.to_dict() for r in serial.results]
    assert [f.to_dict() for f in parallel.findings] == [f.to_dict() for f in serial.findings]
    assert parallel.rows == serial.rows


def test_a_tree_with_no_result_fails_rather_than_passing_zero_of_zero(case_trees, tmp_path):
    # a mistyped path (the folder above the tree, an empty download) must not read as a clean submission
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["check", str(empty), "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert not doc["ok"] and doc["results"] == []
    assert [f["rule"] for f in doc["findings"] if f["severity"] == "error"] == ["layout.no_results"]

    # `subtool all`'s --out instead of its tree: the finding names the folder below that holds one, never the
    # full logs beside it (full_logs/ sorts first and holds open/ too)
    (empty / "submission" / "open" / "TeamX" / "results").mkdir(parents=True)
    (empty / "full_logs" / "open" / "TeamX" / "box" / "bert-99").mkdir(parents=True)
    (empty / "runs" / "bert-99").mkdir(parents=True)
    doc = json.loads(runner.invoke(app, ["check", str(empty), "--json"]).stdout)
    [finding] = [f for f in doc["findings"] if f["rule"] == "layout.no_results"]
    assert finding["hint"] == f"did you mean {empty / 'submission'}? It holds open/"

    # a submitter filter that matches no one in a good tree is the same finding, naming the submitter
    tree = case_trees["bert_closed_valid"]
    assert runner.invoke(app, ["check", str(tree)]).exit_code == 0
    other = runner.invoke(app, ["check", str(tree), "--json", "--submitter", "NoSuchTeam"])
    assert other.exit_code == 1
    (finding,) = json.loads(other.stdout)["findings"]
    assert finding["rule"] == "layout.no_results" and "NoSuchTeam" in finding["message"]


def test_official_diff_says_when_the_tree_verdicts_differ_though_every_result_agrees(official_checkout, tmp_path):
    """A tree with no result: subtool fails it (layout.no_results), the official checker exits 0; the report said
    "same verdict for every result"."""
    tree = tmp_path / "empty"
    tree.mkdir()
    result = runner.invoke(app, ["check", str(tree), "--official", str(official_checkout), "--json"])
    diff = json.loads(result.stdout)["official_diff"]
    (row,) = diff["disagreements"]
    assert row["result"] == "(the tree as a whole)" and row["subtool"] == "fail" and row["official"].startswith("pass")
    assert "same verdict" not in result.stderr


def test_human_output_prints_a_result_as_all_does(case_trees):
    """The human report gives a result with two decimals, as `subtool all`'s table does: four significant
    digits made 1268.59 read '1,269' beside all's '1268.59', and 79020.5 read '79,020.5' beside the CSV's."""
    tree = case_trees["bert_closed_valid"]
    value = check_tree(tree, CheckOptions()).rows[0]["Result"]
    result = runner.invoke(app, ["check", str(tree)])
    assert result.exit_code == 0, result.output
    assert f"{float(value):.2f} Samples/s" in result.output, result.output
