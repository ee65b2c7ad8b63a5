"""Compliance tests run by the runner, each an audited LoadGen run plus subtool's own verification.

TEST01 (bert) proves that the SUT computes real answers in performance mode: LoadGen, steered by the test's
audit.config, logs a sample of the responses of a performance run; the verification compares them with the
accuracy run's responses for the same samples, and the run's score with the submission's (within 10 %, or 20 %
for fast SingleStream/MultiStream). Its outputs are laid out as the official tree wants them under TEST01/:
performance/run_1/ (the audited run's logs), accuracy/ (its sampled accuracy log, plus baseline/compliance
accuracy on the same samples), verify_accuracy.txt and verify_performance.txt.

TEST06 (the LLMs) proves that the token counts behind tokens/s and TTFT are honest: a short performance run
logs about 100 responses with the token count the SUT reported for each (and, outside Offline, the first token
it reported early); the verification checks that the early first token is the answer's first token, that an
answer ends with at most one EOS, and that the reported count is the number of tokens returned. Its outputs
under TEST06/: verify_accuracy.txt and accuracy/mlperf_log_accuracy.json (what the official checker reads),
plus performance/run_1/ with the audited run's own logs, which stay in the run directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.fsutil import atomic_write_text

# The official audit settings (compliance/<test>[/<model>]/audit.config in mlcommons/inference), keyed by
# LoadGen model name; "*" applies to every model the test is run for (TEST06 has one config for all the LLMs).
AUDIT_SETTINGS = {
    "TEST01": {
        "bert": {"mode": 2, "accuracy_log_rng_seed": 720381539243781796, "accuracy_log_sampling_target": 4096},
    },
    "TEST06": {
        "*": {
            "mode": 2,
            "accuracy_log_rng_seed": 720381539243781796,
            "accuracy_log_sampling_target": 100,
            "min_query_count": 100,
            "min_duration": 0,
            # equal-issue mode off: the test looks at single answers
            "sample_concatenate_permutation": 0,
        },
    },
}
PERF_TOLERANCE = 0.10
PERF_TOLERANCE_FAST_STREAM = 0.20  # SingleStream ≤ 200 µs or MultiStream ≤ 1.6 ms results (ns)


@dataclass
class VerifyOutcome:
    passed: bool
    text: str


def write_audit_config(path: Path, loadgen_model: str, test: str) -> Path:
    per_model = AUDIT_SETTINGS.get(test)
    if per_model is None:
        raise SubtoolError(f"compliance test {test} is not run by subtool", rule="run.compliance")
    values = per_model.get(loadgen_model, per_model.get("*"))
    if values is None:
        raise SubtoolError(f"no {test} audit settings for {loadgen_model}", rule="run.compliance")
    lines = [f"# {test} audit settings (official values), written by subtool"]
    lines += [f"*.*.{key} = {value}" for key, value in values.items()]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def _entries(path: Path) -> list:
    """The accuracy log's list of responses (each entry as it is: the checks judge them)."""
    try:
        with open(path, "rb") as fh:
            entries = json.load(fh)
    except FileNotFoundError:
        raise SubtoolError("accuracy log missing", path=path, rule="compliance.log_missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SubtoolError("accuracy log is not valid JSON", path=path, rule="compliance.log_parse") from None
    if not isinstance(entries, list):
        raise SubtoolError("accuracy log is not a list of responses", path=path, rule="compliance.log_parse")
    return entries


def _responses(path: Path) -> list[tuple[int, str]]:
    """(qsl_idx, data) of each entry; an entry that is not {"qsl_idx": whole number, "data": text} is refused in one
    line naming it (a KeyError used to escape)."""
    pairs = []
    for number, e in enumerate(_entries(path), start=1):
        idx, data = (e.get("qsl_idx"), e.get("data")) if isinstance(e, dict) else (None, None)
        if not isinstance(idx, int) or isinstance(idx, bool) or not isinstance(data, str):
            raise SubtoolError(
                f"accuracy log entry {number} has no qsl_idx (a whole number) and data (text)",
                path=path,
                rule="compliance.log_parse",
            )
        pairs.append((idx, data))
    return pairs


def verify_accuracy(accuracy_run_log: Path, test_log: Path) -> VerifyOutcome:
    """Every sampled response must equal the accuracy run's response for the same sample, byte for byte."""
    reference: dict[int, str] = {}
    duplicates = 0
    for idx, data in _responses(accuracy_run_log):
        if idx in reference:
            duplicates += 1
        reference[idx] = data
    test = _responses(test_log)
    matched = mismatched = missing = 0
    for idx, data in test:
        ref = reference.get(idx)
        if ref is None:
            missing += 1
        elif ref == data:
            matched += 1
        else:
            mismatched += 1
    passed = mismatched == 0 and missing == 0 and matched > 0
    text = (
        "\n".join(
            [
                f"accuracy run entries = {len(reference)}",
                f"accuracy run duplicate qsl_idx = {duplicates}",
                f"compliance run entries = {len(test)}",
                f"compliance run qsl_idx matched = {matched}",
                f"compliance run data mismatch = {mismatched}",
                f"compliance run qsl_idx missing from the accuracy run = {missing}",
                "TEST PASS" if passed else "TEST FAIL",
            ]
        )
        + "\n"
    )
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
        ref_scenario == "MultiStream" and ref_score <= 1600000
    ):
        tolerance = PERF_TOLERANCE_FAST_STREAM
    passed = ref_score * (1 - tolerance) <= test_score <= ref_score * (1 + tolerance)
    lines.append(f"tolerance = {tolerance:.0%}")
    lines.append("TEST PASS" if passed else "TEST FAIL: test score outside the tolerance")
    return VerifyOutcome(passed, "\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------------- TEST06
TOKEN_DTYPES = ("int16", "int32", "int64", "float32")
_LISTED = 10  # offending qsl_idx values named per check in verify_accuracy.txt


@dataclass
class Test06Outcome(VerifyOutcome):
    first_token: str  # "True" | "False" | "Skipped" (Offline reports no first token)
    eos: bool
    sample_length: bool
    samples: int


def _tokens(hex_text: object, dtype) -> list[int] | None:
    """A logged response's token ids, or None when it is not whole tokens of the benchmark's type."""
    import numpy as np

    try:
        raw = bytes.fromhex(str(hex_text))
        return np.frombuffer(raw, dtype=dtype).tolist()
    except ValueError:
        return None


def _trailing_eos_ok(tokens: list[int], eos_token_id: int) -> bool:
    """At most one EOS at the end. The first token is left out of the count, as in the official check: an
    answer of exactly [EOS, EOS] is allowed (a model whose minimum output is two tokens may stop at once)."""
    run = 0
    for token in reversed(tokens[1:]):
        if token != eos_token_id:
            break
        run += 1
    return run < 2


def _listed(qsl: list, detail: str = "") -> str:
    shown = ", ".join(str(q) for q in qsl[:_LISTED]) + (f" and {len(qsl) - _LISTED} more" if len(qsl) > _LISTED else "")
    return shown + detail


def verify_test06(accuracy_log: Path, *, scenario: str, dtype: str, eos_token_id: int) -> Test06Outcome:
    """The three TEST06 checks on the audited run's accuracy log, written as the official verification writes
    them (the lines both checkers read), followed by which samples failed and 'TEST PASS' / 'TEST FAIL'."""
    if dtype not in TOKEN_DTYPES:
        raise SubtoolError(f"unknown token type {dtype!r} (one of {', '.join(TOKEN_DTYPES)})", rule="run.compliance")
    entries = _entries(accuracy_log)
    check_first = scenario != "Offline"  # LoadGen logs the early first token only outside Offline
    f = _test06_findings(entries, dtype, eos_token_id, check_first)
    first_pass = not f.first_bad and not f.undecodable
    eos_pass = not f.eos_bad and not f.undecodable
    length_pass = bool(entries) and not f.length_bad and not f.no_count and not f.undecodable
    first_word = str(first_pass) if check_first else "Skipped"
    passed = first_pass and eos_pass and length_pass
    lines = [
        f"First token check pass: {first_word}",
        f"EOS check pass: {eos_pass}",
        f"Sample length check pass: {length_pass}",
        "TEST06 verification complete" if passed else "TEST06 verification failed",
        f"responses checked = {len(entries)} (scenario {scenario}, tokens {dtype}, EOS id {eos_token_id})",
        *_test06_details(f, bool(entries), dtype),
        "TEST PASS" if passed else "TEST FAIL",
    ]
    return Test06Outcome(
        passed=passed,
        text="\n".join(lines) + "\n",
        first_token=first_word,
        eos=eos_pass,
        sample_length=length_pass,
        samples=len(entries),
    )


@dataclass
class _Test06Findings:
    """The samples (qsl_idx) each TEST06 check found wanting; length_bad: (qsl_idx, reported, returned)."""

    undecodable: list = field(default_factory=list)
    first_bad: list = field(default_factory=list)
    eos_bad: list = field(default_factory=list)
    eos_inside: list = field(default_factory=list)
    no_count: list = field(default_factory=list)
    length_bad: list = field(default_factory=list)


def _test06_findings(entries: list, dtype: str, eos_token_id: int, check_first: bool) -> _Test06Findings:
    f = _Test06Findings()
    for e in entries:
        if not isinstance(e, dict):
            f.undecodable.append(None)
            continue
        qsl = e.get("qsl_idx")
        tokens = _tokens(e.get("data", ""), dtype)
        if tokens is None:
            f.undecodable.append(qsl)
            continue
        if check_first:
            first = _tokens(e["token_data"], dtype) if "token_data" in e else None
            # the early report must be the answer's beginning; an empty early report proves nothing
            if first is None or (tokens and not first) or first != tokens[: len(first)]:
                f.first_bad.append(qsl)
        if not _trailing_eos_ok(tokens, eos_token_id):
            f.eos_bad.append(qsl)
        elif eos_token_id in tokens[:-1]:
            f.eos_inside.append(qsl)
        count = e.get("token_count")
        if not isinstance(count, int) or isinstance(count, bool):
            f.no_count.append(qsl)
        elif count != len(tokens):
            f.length_bad.append((qsl, count, len(tokens)))
    return f


def _test06_details(f: _Test06Findings, any_entries: bool, dtype: str) -> list[str]:
    """The lines after the verdicts that say which samples failed which check, and why."""
    lines = []
    if not any_entries:
        lines.append("no responses were logged: the audited run sampled none (was the TEST06 audit config read?)")
    if f.undecodable:
        lines.append(f"responses that are not whole {dtype} tokens: qsl_idx {_listed(f.undecodable)}")
    if f.first_bad:
        early = _listed(f.first_bad)
        lines.append(f"first token reported early differs from the answer's first token: qsl_idx {early}")
    if f.eos_bad:
        lines.append(f"answer ends with more than one EOS: qsl_idx {_listed(f.eos_bad)}")
    if f.eos_inside:
        lines.append(
            f"note: EOS inside the answer (not counted: the official check looks at its end only): "
            f"qsl_idx {_listed(f.eos_inside)}"
        )
    if f.no_count:
        lines.append(
            f"no token_count logged (LoadGen logs it when use_token_latencies is on): qsl_idx {_listed(f.no_count)}"
        )
    if f.length_bad:
        q, reported, returned = f.length_bad[0]
        example = f" (qsl_idx {q}: reported {reported}, returned {returned})"
        lines.append(
            f"reported token count differs from the tokens returned: qsl_idx "
            f"{_listed([b[0] for b in f.length_bad], example)}"
        )
    return lines
