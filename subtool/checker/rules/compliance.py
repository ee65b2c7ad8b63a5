"""Compliance runs (closed and network divisions): TEST01 / TEST04 / TEST06 … present and passed."""

from __future__ import annotations

import math

from subtool.checker.context import ResultContext
from subtool.checker.registry import define
from subtool.checker.rules.inputs import NOT_FINITE
from subtool.checker.rules.performance import check_perf_log
from subtool.mlperf.logs import read_text_lines
from subtool.mlperf.round import (
    ACCURACY_PATTERNS,
    COMPLIANCE_PERF_FILES,
    COMPLIANCE_PERF_OPTIONAL,
    TEST01_ACC_FILES,
    test01_delta,
)

MISSING = define(
    "compliance.missing",
    "error",
    "A compliance test the benchmark needs (TEST01 for bert, TEST06 for the LLMs, TEST04 …) or one of its "
    "files (verify_accuracy.txt, verify_performance.txt, performance/run_1/mlperf_log_detail.txt) is missing.",
    "'Missing TEST0x in compliance dir' / 'Missing … file', fails the result",
)
FAILED = define(
    "compliance.failed",
    "error",
    "A compliance verification did not pass (no 'TEST PASS'; TEST06 first-token / EOS / length checks; "
    "TEST01 accuracy outside the allowed delta).",
    "'Compliance test … failed', fails the result",
)
FILE_LIST = define(
    "compliance.file_list",
    "error",
    "A compliance run folder holds other files than expected (TEST01/04 performance/run_1: the summary and "
    "detail logs; TEST01 accuracy/: accuracy log, accuracy.txt, baseline_ and compliance_accuracy.txt).",
    "'has file list mismatch', fails the result",
)

_ALWAYS_OPTIONAL = frozenset({"mlperf_log_trace.json", "results.json", ".gitkeep"})
_ACC_VERIFY = ("TEST01", "TEST06", "TEST07", "TEST08")
_PERF_VERIFY = ("TEST01", "TEST04")


def check_compliance(ctx: ResultContext) -> None:
    if not ctx.closed_like or ctx.rules is None:
        return
    for test in ctx.rules.compliance_tests:
        _check_test(ctx, test)


def _check_test(ctx: ResultContext, test: str) -> None:
    out = ctx.out
    base = f"{ctx.compliance_rel}/{test}"
    if not ctx.exists(base):
        out.add(
            MISSING,
            base,
            f"{test} compliance run is missing",
            f"run the {test} audit (compliance/{test} in the inference repo), verify it, and copy its folder here",
        )
        return
    lines = {}
    for name in ("verify_accuracy.txt", "verify_performance.txt", "verify_output_len.txt"):
        if ctx.exists(f"{base}/{name}"):
            text, problem = read_text_lines(ctx.abs(f"{base}/{name}"))
            if text is None:
                out.add(
                    FAILED,
                    f"{base}/{name}",
                    f"{test}/{name} {problem}",
                    f"run {test}'s verification again and keep its output unchanged",
                )
                text = []
            lines[name] = text
    if test in _ACC_VERIFY and "verify_accuracy.txt" not in lines:
        out.add(
            MISSING,
            f"{base}/verify_accuracy.txt",
            f"{test}/verify_accuracy.txt is missing",
            f"run {test}'s verification script and keep its output",
        )
    if test in _PERF_VERIFY:
        if "verify_performance.txt" not in lines:
            out.add(
                MISSING,
                f"{base}/verify_performance.txt",
                f"{test}/verify_performance.txt is missing",
                f"run {test}'s verify_performance.py and keep its output",
            )
        perf_rel = f"{base}/performance/run_1/mlperf_log_detail.txt"
        log = ctx.log(perf_rel)
        if log is None:
            out.add(
                MISSING,
                perf_rel,
                f"{test} performance log is missing",
                f"copy the {test} run's LoadGen logs into {test}/performance/run_1/",
            )
        else:
            check_perf_log(ctx, log, perf_rel, main_run=False)
        _perf_verification(ctx, test, base, lines.get("verify_performance.txt"))
    if test == "TEST09" and "verify_output_len.txt" not in lines:
        out.add(
            MISSING,
            f"{base}/verify_output_len.txt",
            "TEST09/verify_output_len.txt is missing",
            "run TEST09's verification script and keep its output",
        )
    _acc_verification(ctx, test, base, lines)


def _stripped(lines: list[str] | None) -> list[str]:
    return [line.strip() for line in lines or []]


def _acc_verification(ctx: ResultContext, test: str, base: str, lines: dict) -> None:
    out = ctx.out
    verify = lines.get("verify_accuracy.txt")
    if test == "TEST01" and verify is not None:
        if "TEST PASS" not in _stripped(verify):
            _test01_accuracy_fallback(ctx, base)
    elif test == "TEST06" and verify is not None:
        got = set(_stripped(verify))
        first = "First token check pass: True" in got or "First token check pass: Skipped" in got
        eos = "EOS check pass: True" in got
        length = "Sample length check pass: True" in got
        if not (first and eos and length):
            out.add(
                FAILED,
                f"{base}/verify_accuracy.txt",
                f"TEST06 failed: first token {first}, EOS {eos}, sample length {length}",
                "fix the SUT's output (first token must match, end with EOS, respect max length) and re-run TEST06",
            )
    elif test in ("TEST07", "TEST08") and verify is not None:
        text = "".join(verify) if test == "TEST07" else None
        passed = ("TEST PASS" in text) if text is not None else ("TEST PASS" in _stripped(verify))
        if not passed:
            out.add(
                FAILED,
                f"{base}/verify_accuracy.txt",
                f"{test} accuracy verification did not pass",
                f"fix the cause and re-run {test}",
            )
    elif test == "TEST09" and lines.get("verify_output_len.txt") is not None:
        if "TEST PASS" not in "".join(lines["verify_output_len.txt"]):
            out.add(
                FAILED,
                f"{base}/verify_output_len.txt",
                "TEST09 output length check did not pass",
                "fix the output lengths and re-run TEST09",
            )


def _test01_accuracy_fallback(ctx: ResultContext, base: str) -> None:
    """TEST01 without 'TEST PASS': the non-deterministic path compares baseline and compliance accuracy."""
    acc = f"{base}/accuracy"
    if not _test01_accuracy_files(ctx, base, acc):
        return
    bounds = ctx.rules.accuracy(ctx.scenario)
    values = {name: _test01_metrics(ctx, acc, name, bounds) for name in ("baseline", "compliance")}
    for b in bounds:
        if not _test01_metric_agrees(ctx, acc, b.metric, values["baseline"][b.metric], values["compliance"][b.metric]):
            return


def _test01_accuracy_files(ctx: ResultContext, base: str, acc: str) -> bool:
    """TEST01's accuracy/ folder is there with exactly its files."""
    if not ctx.exists(acc):
        ctx.out.add(
            FAILED,
            f"{base}/verify_accuracy.txt",
            "TEST01 accuracy check failed (no 'TEST PASS') and there is no accuracy/ folder to compare",
            "make the SUT deterministic, or run TEST01's accuracy comparison and keep its accuracy/ folder",
        )
        return False
    diff = (set(ctx.files(acc)) ^ set(TEST01_ACC_FILES)) - _ALWAYS_OPTIONAL
    if diff:
        ctx.out.add(
            FILE_LIST,
            acc,
            f"TEST01 accuracy/ files differ from the expected set: {', '.join(sorted(diff))}",
            f"keep exactly {', '.join(TEST01_ACC_FILES)}",
        )
        return False
    return True


def _test01_metrics(ctx: ResultContext, acc: str, which: str, bounds) -> dict[str, float]:
    """Each accuracy metric's value in accuracy/<which>_accuracy.txt (0.0 where no line gives it)."""
    found = {b.metric: 0.0 for b in bounds}
    text, _ = read_text_lines(ctx.abs(f"{acc}/{which}_accuracy.txt"))
    for line in text or []:
        for b in bounds:
            m = ACCURACY_PATTERNS[b.metric].match(line)
            if m:
                try:
                    found[b.metric] = float(m.group(1))
                except ValueError:
                    pass
    return found


def _test01_metric_agrees(ctx: ResultContext, acc: str, metric: str, base_v: float, comp_v: float) -> bool:
    """Baseline and compliance values of one metric are both there, finite, and within the model's delta."""
    if not (math.isfinite(base_v) and math.isfinite(comp_v)):
        ctx.out.add(
            NOT_FINITE,
            acc,
            f"TEST01: {metric} is not a finite number ({base_v} / {comp_v})",
            "re-run TEST01's accuracy comparison",
        )
        return False
    if base_v == 0 or comp_v == 0:
        ctx.out.add(
            FAILED,
            acc,
            f"TEST01: {metric} missing from baseline or compliance accuracy",
            "re-run TEST01's accuracy comparison",
        )
        return False
    delta, allowed = test01_delta(ctx.job.mlperf_model, metric, base_v, comp_v)
    if delta > allowed:
        ctx.out.add(
            FAILED,
            acc,
            f"TEST01: {metric} differs by {delta:.3f}% (allowed {allowed}%)",
            "the SUT answers differently when LoadGen logs accuracy in performance mode; fix it",
        )
        return False
    return True


def _perf_verification(ctx: ResultContext, test: str, base: str, verify: list[str] | None) -> None:
    out = ctx.out
    if verify is not None and not any("TEST PASS" in line for line in verify):
        out.add(
            FAILED,
            f"{base}/verify_performance.txt",
            f"{test} performance verification did not pass",
            f"the {test} run's performance differs too much from the submission run; re-run both",
        )
    run = f"{base}/performance/run_1"
    if not ctx.exists(run):
        out.add(MISSING, run, f"{test} has no performance/run_1 folder", f"copy the {test} performance logs there")
        return
    files = ctx.files(run)
    diff = (set(files) ^ set(COMPLIANCE_PERF_FILES)) - COMPLIANCE_PERF_OPTIONAL
    if diff:
        out.add(
            FILE_LIST,
            run,
            f"{test} performance/run_1 files differ from the expected set: {', '.join(sorted(diff))}",
            f"keep exactly {', '.join(COMPLIANCE_PERF_FILES)} (mlperf_log_accuracy.json may stay)",
        )
