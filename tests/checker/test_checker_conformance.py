"""Conformance: on every case tree, subtool's verdict per result matches the official checker's recorded one.

Where they differ on purpose the case says so: `stricter` (subtool fails INVALID results and LoadGen errors the
official checker lets through), `crash` (the official checker stops with a traceback; subtool must give a
verdict with a finding), `waive` (a rule waived on request).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from cases import CASES, CASES_BY_NAME, CSV_CASES

from subtool.checker.api import SUMMARY_COLUMNS, CheckOptions, check_tree
from subtool.checker.official import STRICTER_RULES
from subtool.checker.report import summary_csv_text

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checker"

# Trees whose results all pass, inferred ones among them: their Result column is compared with the official
# checker's live (each session runs LoadGen anew, so no recording holds the numbers).
RESULT_CASES = (
    "resnet_closed_valid",
    "multistream_inferred_from_singlestream",
    "offline_inferred_from_multistream",
    "offline_inferred_from_singlestream",
)


def test_there_are_at_least_30_cases_and_all_are_recorded(official_data):
    assert len(CASES) >= 30
    assert set(official_data["cases"]) == {c.name for c in CASES}
    for case in CASES:
        recorded = official_data["cases"][case.name]
        assert recorded["version"] == case.version
        assert recorded["crashed"] == case.crash, f"{case.name}: crash flag differs from the recording"


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_verdicts_match_official(name, case_trees, official_data):
    case = CASES_BY_NAME[name]
    recorded = official_data["cases"][name]
    report = check_tree(case_trees[name], CheckOptions(version=case.version, waive=frozenset(case.waive)))
    ours = {r.result: r for r in report.results}
    errors = {f.rule for f in report.findings if f.severity == "error"}
    for rule in case.expect_rules:
        assert rule in errors, f"{name}: expected a {rule} error, got {sorted(errors)}"

    if case.crash:
        # The official checker gave no verdict; subtool must give one, with the reason as a finding.
        assert recorded["crashed"] and not report.ok
        failing = {r.result for r in report.results if not r.passed}
        assert failing == (set(case.crash_fails) or {r.result for r in report.results})
        return

    assert set(ours) == set(recorded["verdicts"]), f"{name}: different results found"
    for rid, official_pass in recorded["verdicts"].items():
        verdict = ours[rid]
        if rid in case.stricter:
            assert official_pass, f"{name}: {rid} is marked stricter but the official checker fails it too"
            assert not verdict.passed and case.stricter[rid] in verdict.failed, (
                f"{name}: {rid} should fail with {case.stricter[rid]}, failed with {verdict.failed}"
            )
            assert set(verdict.failed) <= STRICTER_RULES
        elif case.waive and not official_pass:
            # Waived on request: subtool passes; the official errors are only about the waived rule.
            assert verdict.passed and set(verdict.waived) == set(case.waive)
            official_errors = [e for e in recorded["errors"].get(rid, []) if "Checks failed" not in e]
            assert official_errors and all("Test duration less than 600s" in e for e in official_errors), (
                official_errors
            )
        else:
            assert verdict.passed == official_pass, (
                f"{name}: {rid} subtool {'passes' if verdict.passed else 'fails ' + str(verdict.failed)}, "
                f"official {'passes' if official_pass else 'fails: ' + str(recorded['errors'].get(rid))}"
            )


@pytest.mark.parametrize("name", CSV_CASES)
def test_summary_csv_matches_official(name, case_trees):
    """Same columns, same rows, same values; only Result differs, because each session runs LoadGen anew."""
    case = CASES_BY_NAME[name]
    tree = case_trees[name]
    report = check_tree(tree, CheckOptions(version=case.version))
    ours_text = summary_csv_text(report)
    recorded_text = (FIXTURES / f"official_summary_{name}.csv").read_text().replace("{TREE}", str(tree))
    assert ours_text.splitlines()[0] == recorded_text.splitlines()[0] == ",".join(SUMMARY_COLUMNS)
    ours = list(csv.DictReader(io.StringIO(ours_text)))
    official = list(csv.DictReader(io.StringIO(recorded_text)))
    assert len(ours) == len(official) > 0
    for a, b in zip(ours, official):
        assert {k: v for k, v in a.items() if k != "Result"} == {k: v for k, v in b.items() if k != "Result"}
        float(a["Result"])
    # every value is quoted, as the official exporter writes it
    assert all(line.startswith('"') and line.endswith('"') for line in ours_text.splitlines()[1:])


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_live_official_agrees_with_recording(name, case_trees, official_data, official_checkout):
    """With a checkout present, run the official checker now: the recording must still hold."""
    from subtool.checker.official import run_official

    case = CASES_BY_NAME[name]
    diff = run_official(official_checkout, case_trees[name], case.version)
    recorded = official_data["cases"][name]
    assert diff.crashed == recorded["crashed"]
    if not diff.crashed:
        assert diff.verdicts == recorded["verdicts"]


def _results(csv_text: str) -> dict[tuple[str, str, str], tuple[str, str, str]]:
    rows = csv.DictReader(io.StringIO(csv_text))
    return {(r["Platform"], r["Model"], r["Scenario"]): (r["Result"], r["Units"], r["inferred"]) for r in rows}


@pytest.mark.parametrize("name", RESULT_CASES)
def test_live_official_reports_the_same_results(name, case_trees, official_checkout):
    """Each result's number, an inferred one computed from another scenario's log, is the official checker's,
    written the same way (MultiStream = 8 × a SingleStream run's p99 estimate; Offline = a MultiStream run's
    samples per query over its mean query latency, or a SingleStream run's QPS without LoadGen overhead)."""
    from subtool.checker.official import run_official

    case = CASES_BY_NAME[name]
    diff = run_official(official_checkout, case_trees[name], case.version)
    ours = _results(summary_csv_text(check_tree(case_trees[name], CheckOptions(version=case.version))))
    assert ours == _results(diff.summary_csv) and len(ours) == 3
