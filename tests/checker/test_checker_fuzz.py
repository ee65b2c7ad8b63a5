"""Property-based fuzzing of every reader the checker uses (issue 19): JSON files, LoadGen detail logs, summary
logs, accuracy.txt and verify_*.txt, system descriptions, measurements.json. No generated input makes a reader
or a rule raise: each returns a value or a reason, and `check_tree` turns every reason into a finding.

The number of examples comes from the hypothesis profile in fuzzing.py (bounded in CI; `HYPOTHESIS_PROFILE=long`
for the long run documented there and in subtool/checker/RULES.md).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from fuzzing import (
    FUZZ,
    SLOW,
    any_bytes,
    detail_log_bytes,
    hostile_fragments,
    json_objects,
    json_texts,
    summary_bytes,
)
from hypothesis import given
from hypothesis import strategies as st
from support.scratch import module_scratch

from subtool.checker.api import CheckOptions, _product, check_tree
from subtool.checker.findings import Collector
from subtool.checker.rules import all_rules
from subtool.checker.rules.system import check_system
from subtool.mlperf.logs import (
    NonFinite,
    parse_json,
    read_json_object,
    read_loadgen_log,
    read_summary,
    read_text_lines,
)

SCRATCH = module_scratch("subtool-fuzz-")
RULES = all_rules()


def _scratch(data: bytes, name: str = "input") -> Path:
    path = SCRATCH / name
    path.write_bytes(data)
    return path


def _finite_everywhere(value: object) -> bool:
    """No NaN or ±Infinity anywhere in a parsed value (iterative: parsed values may be deep)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


# ------------------------------------------------------------------------------------------ readers
@FUZZ
@given(st.one_of(json_texts(), st.text(max_size=200), any_bytes))
def test_parse_json_returns_a_value_or_a_reason(text):
    value, problem = parse_json(text)
    if problem is None:
        assert _finite_everywhere(value)
    else:
        assert value is None and isinstance(problem, str) and problem


@FUZZ
@given(st.one_of(json_texts().map(lambda t: t.encode("utf-8", "surrogatepass")), any_bytes))
def test_read_json_object_never_raises(data):
    obj, problem = read_json_object(_scratch(data, "x.json"))
    assert (obj is None) != (problem is None)
    if obj is not None:
        assert isinstance(obj, dict) and _finite_everywhere(obj)


@FUZZ
@given(st.one_of(detail_log_bytes(), any_bytes))
def test_detail_log_reader_never_raises(data):
    log = read_loadgen_log(_scratch(data, "mlperf_log_detail.txt"))
    values = log.decode_all()
    assert _finite_everywhere(list(values.values()))
    assert all(isinstance(p, str) for p in log.problems) and all(isinstance(e, str) for e in log.errors)
    assert set(log.non_finite) <= set(log.raw)
    for key in log.non_finite:
        assert values[key] is None


@FUZZ
@given(st.one_of(summary_bytes(), any_bytes))
def test_summary_reader_never_raises(data):
    summary = read_summary(_scratch(data, "mlperf_log_summary.txt"))
    assert summary.problem is None or isinstance(summary.problem, str)
    for label in list(summary.values)[:20]:
        value, problem = summary.number(label)
        assert (value is None) != (problem is None)
        assert value is None or math.isfinite(value)


@FUZZ
@given(any_bytes)
def test_text_reader_never_raises(data):
    lines, problem = read_text_lines(_scratch(data, "accuracy.txt"))
    assert (lines is None) != (problem is None)


@FUZZ
@given(json_objects, st.sampled_from(["closed", "open", "network"]))
def test_system_rules_take_any_json_object(data, division):
    out = Collector()
    check_system(data, division, "TeamX", "closed/TeamX/systems/box.json", out)
    assert all(f.rule in RULES for f in out.findings)
    total = _product(data.get("number_of_nodes"), data.get("accelerators_per_node"))
    assert total == "" or isinstance(total, int)


@FUZZ
@given(json_texts())
def test_system_json_through_the_reader(text):
    obj, problem = read_json_object(_scratch(text.encode("utf-8", "surrogatepass"), "box.json"))
    if obj is None:
        return
    out = Collector()
    check_system(obj, "closed", "TeamX", "closed/TeamX/systems/box.json", out)
    assert all(f.rule in RULES for f in out.findings)


# ------------------------------------------------------------------------------- whole trees
OFFLINE = "closed/TeamX/results/box/bert-99/Offline"
TARGETS = {  # file → what to write there
    f"{OFFLINE}/performance/run_1/mlperf_log_detail.txt": "log",
    f"{OFFLINE}/performance/run_1/mlperf_log_summary.txt": "summary",
    f"{OFFLINE}/accuracy/mlperf_log_detail.txt": "log",
    f"{OFFLINE}/accuracy/accuracy.txt": "bytes",
    f"{OFFLINE}/accuracy/mlperf_log_accuracy.json": "bytes",
    f"{OFFLINE}/measurements.json": "json",
    f"{OFFLINE}/user.conf": "bytes",
    f"{OFFLINE}/TEST01/verify_accuracy.txt": "bytes",
    f"{OFFLINE}/TEST01/verify_performance.txt": "bytes",
    f"{OFFLINE}/TEST01/performance/run_1/mlperf_log_detail.txt": "log",
    "closed/TeamX/systems/box.json": "json",
}


@pytest.fixture(scope="module")
def fuzz_tree(case_trees, tmp_path_factory):
    tree = tmp_path_factory.mktemp("fuzz") / "tree"
    shutil.copytree(case_trees["bert_closed_valid"], tree)
    return tree


def _strategy(kind: str):
    return {
        "log": st.one_of(detail_log_bytes(), any_bytes),
        "summary": st.one_of(summary_bytes(), any_bytes),
        "json": st.one_of(json_texts().map(lambda t: t.encode("utf-8", "surrogatepass")), any_bytes),
        "bytes": any_bytes,
    }[kind]


def _assert_sound(report) -> None:
    assert len(report.results) == 2 and all(isinstance(r.passed, bool) for r in report.results)
    assert all(f.rule in RULES for f in report.findings)
    for row in report.rows:
        assert row["Result"] is None or math.isfinite(row["Result"])


@SLOW
@given(st.data())
def test_check_tree_survives_any_file_content(fuzz_tree, data):
    rel = data.draw(st.sampled_from(sorted(TARGETS)))
    path = fuzz_tree / rel
    original = path.read_bytes()
    try:
        path.write_bytes(data.draw(_strategy(TARGETS[rel])))
        _assert_sound(check_tree(fuzz_tree, CheckOptions()))
    finally:
        path.write_bytes(original)


@SLOW
@given(st.data())
def test_a_hostile_value_in_a_real_log_never_passes(fuzz_tree, data):
    """One value of the real performance log replaced by NaN, Infinity, deep nesting, garbage...: never a pass
    on that value, never a traceback."""
    path = fuzz_tree / OFFLINE / "performance/run_1/mlperf_log_detail.txt"
    original = path.read_bytes()
    key = data.draw(
        st.sampled_from(
            [
                "result_samples_per_second",
                "result_validity",
                "effective_min_duration_ms",
                "effective_qsl_rng_seed",
                "effective_scenario",
                "effective_performance_sample_count",
                "result_99.00_percentile_latency_ns",
            ]
        )
    )
    fragment = data.draw(hostile_fragments)
    marker = f'"key": "{key}", "value": '.encode()
    start = original.index(marker) + len(marker)
    end = original.index(b', "time_ms"', start)
    try:
        path.write_bytes(original[:start] + fragment.encode("utf-8", "surrogatepass") + original[end:])
        report = check_tree(fuzz_tree, CheckOptions())
        _assert_sound(report)
        offline = next(r for r in report.results if r.result == OFFLINE)
        value, problem = parse_json(fragment)
        if problem is not None:
            assert not offline.passed, (key, fragment[:40])
        if isinstance(problem, NonFinite):
            assert "value.not_finite" in offline.failed
    finally:
        path.write_bytes(original)
