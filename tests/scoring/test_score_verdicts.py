"""From the checker's report to the records the leaderboard ranks: which result passes (the checker's verdict,
the accuracy gate of require_accuracy, a finite value), the accuracy / performance columns (a compliance run's
finding counts for neither) and the reasons a failed result shows (its own findings and its submitter's)."""

from __future__ import annotations

from subtool.checker.api import CheckReport, ResultVerdict
from subtool.checker.findings import Finding
from subtool.scoring.entry import _results
from subtool.scoring.rules import default_rules_text, load_rules, parse_rules

RID = "open/Alpha/results/box/bert-99/Offline"


def _verdict(*, passed=True, value=100.0, failed=(), result=RID) -> ResultVerdict:
    return ResultVerdict(
        result=result,
        division="open",
        submitter=result.split("/")[1],
        system="box",
        model="bert-99",
        mlperf_model="bert-99",
        scenario="Offline",
        path=f"/t/{result}",
        passed=passed,
        value=value,
        units="Samples/s",
        accuracy="F1: 80.0",
        run_style="short",
        failed=list(failed),
    )


def _finding(rule, severity="error", path=RID + "/accuracy/accuracy.txt", result=RID, message="x") -> Finding:
    return Finding(rule=rule, severity=severity, path=path, message=message, hint="", result=result)


def _report(verdicts, findings) -> CheckReport:
    return CheckReport(tree="/t", version="v6.1", findings=list(findings), results=list(verdicts), rows=[])


def _rules(require_accuracy: bool):
    text = default_rules_text()
    if not require_accuracy:
        text = text.replace("require_accuracy = true", "require_accuracy = false")
        assert "require_accuracy = false" in text
    return parse_rules(text, "scoring.toml", "0" * 64)


def test_an_open_result_below_the_accuracy_threshold_fails_with_require_accuracy():
    # open division: the checker only warns about the threshold; require_accuracy makes the warning a failure
    report = _report([_verdict()], [_finding("acc.below_threshold", severity="warning")])
    (record,), _ = _results(report, load_rules(None))
    assert not record.passed and not record.accuracy_ok and record.performance_ok
    assert record.failed == ["acc.below_threshold"]
    assert record.reasons and record.reasons[0].startswith("acc.below_threshold")


def test_without_require_accuracy_the_open_divisions_accuracy_warning_does_not_fail_the_result():
    report = _report([_verdict()], [_finding("acc.below_threshold", severity="warning")])
    (record,), _ = _results(report, _rules(require_accuracy=False))
    assert record.passed and record.accuracy_ok and record.failed == [] and record.reasons == []


def test_a_waived_accuracy_finding_is_no_gate():
    report = _report([_verdict()], [_finding("acc.below_threshold", severity="waived")])
    (record,), _ = _results(report, load_rules(None))
    assert record.passed and record.accuracy_ok


def test_a_compliance_runs_finding_counts_for_neither_the_accuracy_nor_the_performance_column():
    findings = [
        _finding("acc.below_threshold", path=RID + "/TEST01/accuracy/accuracy.txt"),
        _finding("perf.result_invalid", path=RID + "/TEST04/performance/run_1/mlperf_log_detail.txt"),
    ]
    report = _report([_verdict(passed=False, failed=["acc.below_threshold", "perf.result_invalid"])], findings)
    (record,), _ = _results(report, load_rules(None))
    assert not record.passed
    assert record.accuracy_ok and record.performance_ok


def test_the_result_runs_own_errors_set_the_columns():
    findings = [
        _finding("acc.below_threshold", path=RID + "/accuracy/accuracy.txt"),
        _finding("perf.result_invalid", path=RID + "/performance/run_1/mlperf_log_detail.txt"),
    ]
    report = _report([_verdict(passed=False, failed=["acc.below_threshold", "perf.result_invalid"])], findings)
    (record,), _ = _results(report, load_rules(None))
    assert not record.passed and not record.accuracy_ok and not record.performance_ok


def test_an_infinite_value_fails_the_result_and_its_performance():
    (record,), _ = _results(_report([_verdict(value=float("inf"))], []), load_rules(None))
    assert not record.passed and not record.performance_ok and record.value is None
    assert record.failed == ["score.non_finite"]


def test_a_boolean_value_is_no_number():
    (record,), _ = _results(_report([_verdict(value=True)], []), load_rules(None))
    assert not record.passed and record.value is None


def test_a_failed_result_lists_its_submitters_shared_findings_but_not_another_submitters():
    other = "open/Beta/results/box/bert-99/Offline"
    shared = [
        Finding("system.invalid", "error", "open/Alpha/systems/box.json", "alpha's system", "", None),
        Finding("system.invalid", "error", "open/Beta/systems/box.json", "beta's system", "", None),
    ]
    report = _report(
        [
            _verdict(passed=False, failed=["system.invalid"]),
            _verdict(passed=False, failed=["system.invalid"], result=other),
        ],
        shared,
    )
    (alpha, beta), tree_errors = _results(report, load_rules(None))
    assert alpha.reasons == ["system.invalid: alpha's system (open/Alpha/systems/box.json)"]
    assert beta.reasons == ["system.invalid: beta's system (open/Beta/systems/box.json)"]
    assert len(tree_errors) == 2


def test_an_archive_with_two_tree_folders_at_its_top_is_no_tree(tmp_path):
    from subtool.scoring.entry import _tree_root

    (tmp_path / "one" / "submission" / "closed").mkdir(parents=True)
    assert _tree_root(tmp_path / "one") == tmp_path / "one" / "submission"  # `tar czf x.tar.gz submission`
    (tmp_path / "two" / "submission" / "closed").mkdir(parents=True)
    (tmp_path / "two" / "other" / "open").mkdir(parents=True)  # two trees: which one is the hand-in?
    assert _tree_root(tmp_path / "two") is None


def test_an_input_that_fails_after_its_check_keeps_no_results_to_rank(tmp_path, monkeypatch):
    # the checker's verdicts are in when reading the systems breaks: the entry is an error, nothing of it ranks
    from subtool.scoring import entry as entry_mod
    from subtool.scoring.inputs import InputJob

    (tmp_path / "tree" / "open").mkdir(parents=True)
    (tmp_path / "scratch").mkdir()
    monkeypatch.setattr(entry_mod, "_check", lambda root, rules: _report([_verdict()], []))

    def broken(root, rules):
        raise RuntimeError("unreadable system description")

    monkeypatch.setattr(entry_mod, "_systems", broken)
    job = InputJob(0, "tree", str(tmp_path / "tree"), "tree", "tree")
    record = entry_mod.score_input(job, load_rules(None), str(tmp_path / "scratch"))
    assert record.error == {"rule": "score.internal", "message": "RuntimeError: unreadable system description"}
    assert record.results == [] and record.systems == []


def test_the_tstamps_check_uses_the_slack_of_the_rules_file(tmp_path, monkeypatch):
    from subtool.scoring import entry as entry_mod
    from subtool.scoring.inputs import InputJob

    (tmp_path / "tree" / "open").mkdir(parents=True)
    (tmp_path / "scratch").mkdir()
    (tmp_path / "tree" / "t.tstamps").write_text("")
    monkeypatch.setattr(entry_mod, "_check", lambda root, rules: _report([_verdict()], []))
    monkeypatch.setattr(entry_mod, "_systems", lambda root, rules: ([], [("Alpha/box/bert-99/Offline", None, None)]))
    seen = []
    monkeypatch.setattr(entry_mod, "check_tstamps", lambda path, windows, slack: seen.append((windows, slack)) or [])
    rules = parse_rules(
        default_rules_text().replace("tstamps_slack_s = 120", "tstamps_slack_s = 5"), "scoring.toml", "0" * 64
    )
    job = InputJob(
        0, "tree", str(tmp_path / "tree"), "tree", "tree", companions={"tstamps": str(tmp_path / "tree" / "t.tstamps")}
    )
    record = entry_mod.score_input(job, rules, str(tmp_path / "scratch"))
    assert record.error is None
    assert seen == [([("Alpha/box/bert-99/Offline", None, None)], 5.0)]
