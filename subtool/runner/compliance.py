"""Compliance tests run by the runner: TEST01 (accuracy sampled in a performance run), with its verification.

TEST01 proves that the SUT computes real answers in performance mode: LoadGen, steered by the test's
audit.config, logs a sample of the responses of a performance run; the verification compares them with the
accuracy run's responses for the same samples, and the run's score with the submission's (within 10 %, or 20 %
for fast SingleStream/MultiStream). The outputs are laid out as the official tree wants them under TEST01/:
performance/run_1/ (the audited run's logs), accuracy/ (its sampled accuracy log, plus baseline/compliance
accuracy on the same samples), verify_accuracy.txt and verify_performance.txt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.fsutil import atomic_write_text

# The official audit settings for TEST01 (compliance/TEST01/<model>/audit.config in mlcommons/inference).
TEST01_AUDIT = {
    "bert": {"mode": 2, "accuracy_log_rng_seed": 720381539243781796, "accuracy_log_sampling_target": 4096},
}
PERF_TOLERANCE = 0.10
PERF_TOLERANCE_FAST_STREAM = 0.20          # SingleStream ≤ 200 µs or MultiStream ≤ 1.6 ms results (ns)


@dataclass
class VerifyOutcome:
    passed: bool
    text: str


def write_audit_config(path: Path, loadgen_model: str, test: str) -> Path:
    if test != "TEST01":
        raise SubtoolError(f"compliance test {test} is not run by subtool for this model", rule="run.compliance")
    values = TEST01_AUDIT.get(loadgen_model)
    if values is None:
        raise SubtoolError(f"no TEST01 audit settings for {loadgen_model}", rule="run.compliance")
    lines = ["# TEST01 audit settings (official values), written by subtool"]
    lines += [f"*.*.{key} = {value}" for key, value in values.items()]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def _entries(path: Path) -> list[dict]:
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise SubtoolError("accuracy log missing", path=path, rule="compliance.log_missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SubtoolError("accuracy log is not valid JSON", path=path, rule="compliance.log_parse") from None


def verify_accuracy(accuracy_run_log: Path, test_log: Path) -> VerifyOutcome:
    """Every sampled response must equal the accuracy run's response for the same sample, byte for byte."""
    reference: dict[int, str] = {}
    duplicates = 0
    for e in _entries(accuracy_run_log):
        if e["qsl_idx"] in reference:
            duplicates += 1
        reference[e["qsl_idx"]] = e["data"]
    test = _entries(test_log)
    matched = mismatched = missing = 0
    for e in test:
        ref = reference.get(e["qsl_idx"])
        if ref is None:
            missing += 1
        elif ref == e["data"]:
            matched += 1
        else:
            mismatched += 1
    passed = mismatched == 0 and missing == 0 and matched > 0
    text = "\n".join([
        f"accuracy run entries = {len(reference)}",
        f"accuracy run duplicate qsl_idx = {duplicates}",
        f"compliance run entries = {len(test)}",
        f"compliance run qsl_idx matched = {matched}",
        f"compliance run data mismatch = {mismatched}",
        f"compliance run qsl_idx missing from the accuracy run = {missing}",
        "TEST PASS" if passed else "TEST FAIL",
    ]) + "\n"
    return VerifyOutcome(passed, text)


def _perf_facts(detail: Path) -> tuple[str, float, object, str | None]:
    from subtool.runner.harness import RESULT_FIELD, read_detail_log

    values = read_detail_log(detail)
    scenario = str(values.get("effective_scenario"))
    field = RESULT_FIELD.get(scenario)
    if field is None or not isinstance(values.get(field), (int, float)):
        raise SubtoolError("no result in the detail log", path=detail, rule="compliance.perf_parse")
    return scenario, float(values[field]), values.get("effective_target_latency_ns"), values.get("result_validity")


def verify_performance(reference_detail: Path, test_detail: Path) -> VerifyOutcome:
    ref_scenario, ref_score, ref_latency, ref_valid = _perf_facts(reference_detail)
    test_scenario, test_score, test_latency, test_valid = _perf_facts(test_detail)
    lines = [f"Reference score = {ref_score}", f"Test score = {test_score}"]
    if ref_valid != "VALID" or test_valid != "VALID":
        lines.append(f"TEST FAIL: result validity reference={ref_valid} test={test_valid}")
        return VerifyOutcome(False, "\n".join(lines) + "\n")
    if ref_scenario != test_scenario:
        lines.append("TEST FAIL: test and reference scenarios differ")
        return VerifyOutcome(False, "\n".join(lines) + "\n")
    if ref_scenario == "Server" and ref_latency != test_latency:
        lines.append("TEST FAIL: Server target latency differs")
        return VerifyOutcome(False, "\n".join(lines) + "\n")
    tolerance = PERF_TOLERANCE
    if (ref_scenario == "SingleStream" and ref_score <= 200000) or (
            ref_scenario == "MultiStream" and ref_score <= 1600000):
        tolerance = PERF_TOLERANCE_FAST_STREAM
    passed = ref_score * (1 - tolerance) <= test_score <= ref_score * (1 + tolerance)
    lines.append(f"tolerance = {tolerance:.0%}")
    lines.append("TEST PASS" if passed else "TEST FAIL: test score outside the tolerance")
    return VerifyOutcome(passed, "\n".join(lines) + "\n")
