"""TEST01's verification at its edges: a sampled response the accuracy run never answered fails the test even beside
matching ones, a log that sampled nothing proves nothing, and the performance check compares only like runs (same
scenario; for Server, the same latency bound) within the tolerance for the reference's speed (runner/compliance.py;
hand-written logs, no LoadGen)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.detail_logs import write_detail_log

from subtool.runner import compliance

FIELDS = {
    "Offline": "result_samples_per_second",
    "Server": "result_completed_samples_per_sec",
    "SingleStream": "early_stopping_latency_ss",
    "MultiStream": "early_stopping_latency_ms",
}


def _accuracy_log(path, entries):
    path.write_text(json.dumps([{"seq_id": i, "qsl_idx": q, "data": d} for i, (q, d) in enumerate(entries)]))
    return path


def _detail(path, scenario, score, *, latency_ns=None):
    """A LoadGen detail log with the lines the performance check reads, each as LoadGen writes them."""
    lines = [
        {"key": "effective_scenario", "value": scenario},
        {"key": FIELDS[scenario], "value": score},
        {"key": "result_validity", "value": "VALID"},
    ]
    if latency_ns is not None:
        lines.append({"key": "effective_target_latency_ns", "value": latency_ns})
    return write_detail_log(path, lines)


def test_a_sampled_response_the_accuracy_run_lacks_fails_the_test_beside_matching_ones(tmp_path):
    ref = _accuracy_log(tmp_path / "ref.json", [(0, "00ff"), (1, "0101")])
    test = _accuracy_log(tmp_path / "test.json", [(0, "00ff"), (1, "0101"), (9, "abcd")])
    outcome = compliance.verify_accuracy(ref, test)
    assert not outcome.passed and "missing from the accuracy run = 1" in outcome.text
    assert outcome.text.rstrip().endswith("TEST FAIL")


def test_a_compliance_run_that_sampled_no_response_proves_nothing(tmp_path):
    ref = _accuracy_log(tmp_path / "ref.json", [(0, "00ff")])
    empty = _accuracy_log(tmp_path / "test.json", [])
    outcome = compliance.verify_accuracy(ref, empty)
    assert not outcome.passed and outcome.text.rstrip().endswith("TEST FAIL")


def test_runs_of_different_scenarios_are_not_compared(tmp_path):
    ref = _detail(tmp_path / "r.txt", "Offline", 1000.0)
    test = _detail(tmp_path / "t.txt", "Server", 1000.0, latency_ns=130_000_000)
    outcome = compliance.verify_performance(ref, test)
    assert not outcome.passed and "scenarios differ" in outcome.text


def test_server_runs_with_different_latency_bounds_are_not_compared(tmp_path):
    ref = _detail(tmp_path / "r.txt", "Server", 1000.0, latency_ns=130_000_000)
    same = _detail(tmp_path / "s.txt", "Server", 1000.0, latency_ns=130_000_000)
    other = _detail(tmp_path / "o.txt", "Server", 1000.0, latency_ns=260_000_000)
    assert compliance.verify_performance(ref, same).passed
    outcome = compliance.verify_performance(ref, other)
    assert not outcome.passed and "target latency differs" in outcome.text


@pytest.mark.parametrize(
    "scenario, ref, test, ok",
    [
        ("SingleStream", 200_000.0, 235_000.0, True),  # 200 µs exactly: still fast, 20 %
        ("SingleStream", 200_001.0, 235_000.0, False),  # above it: 10 %
        ("MultiStream", 1_600_000.0, 1_900_000.0, True),  # 1.6 ms exactly: 20 %
        ("MultiStream", 2_000_000.0, 2_300_000.0, False),  # slower: 10 %
        ("Offline", 1000.0, 901.0, True),
        ("Offline", 1000.0, 899.0, False),  # below the tolerance
        ("Offline", 1000.0, 1101.0, False),  # above it: a faster test run is no proof either
    ],
)
def test_the_tolerance_follows_the_reference_speed_on_both_sides(tmp_path, scenario, ref, test, ok):
    r = _detail(tmp_path / "r.txt", scenario, ref)
    t = _detail(tmp_path / "t.txt", scenario, test)
    assert compliance.verify_performance(r, t).passed is ok


def test_test06_an_empty_early_first_token_proves_nothing(tmp_path):
    import numpy as np

    answer = np.array([5, 6, 2], np.int32)
    entries = [
        {"seq_id": 0, "qsl_idx": 0, "data": answer.tobytes().hex(), "token_data": answer[:1].tobytes().hex()},
        {"seq_id": 1, "qsl_idx": 1, "data": answer.tobytes().hex(), "token_data": ""},
    ]
    for e in entries:
        e["token_count"] = 3
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text(json.dumps(entries[:1]))
    assert compliance.verify_test06(log, scenario="Server", dtype="int32", eos_token_id=2).passed
    log.write_text(json.dumps(entries))
    outcome = compliance.verify_test06(log, scenario="Server", dtype="int32", eos_token_id=2)
    assert not outcome.passed and outcome.first_token == "False" and "qsl_idx 1" in outcome.text
    del entries[1]["token_data"]  # none reported at all
    log.write_text(json.dumps(entries))
    assert verify_test06_first(log) == "False"


def verify_test06_first(log) -> str:
    return compliance.verify_test06(log, scenario="Server", dtype="int32", eos_token_id=2).first_token


@pytest.mark.parametrize(
    "bad",
    [{"seq_id": 1, "data": "00ff"}, {"qsl_idx": "1", "data": "00ff"}, {"qsl_idx": True, "data": "00"}, [1, "00"]],
)
@pytest.mark.parametrize("which", ["reference", "test"])
def test_an_entry_without_a_whole_qsl_idx_and_text_data_is_one_line_naming_it(tmp_path, bad, which):
    """A log cut and mended by hand, or another tool's: the entry is named in a SubtoolError, never a KeyError."""
    good = [{"seq_id": 0, "qsl_idx": 0, "data": "00ff"}]
    logs = {name: tmp_path / f"{name}.json" for name in ("reference", "test")}
    for name, path in logs.items():
        path.write_text(json.dumps(good + ([bad] if name == which else [])))
    with pytest.raises(compliance.SubtoolError) as err:
        compliance.verify_accuracy(logs["reference"], logs["test"])
    assert err.value.rule == "compliance.log_parse" and Path(err.value.path) == logs[which]
    assert "entry 2 " in err.value.message


@pytest.mark.parametrize("doc", [{"0": "00ff"}, "00ff", None])
def test_an_accuracy_log_that_is_no_list_is_one_line_for_test01_and_test06(tmp_path, doc):
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text(json.dumps(doc))
    good = _accuracy_log(tmp_path / "good.json", [(0, "00ff")])
    for check in (
        lambda: compliance.verify_accuracy(log, good),
        lambda: compliance.verify_accuracy(good, log),
        lambda: compliance.verify_test06(log, scenario="Offline", dtype="int32", eos_token_id=2),
    ):
        with pytest.raises(compliance.SubtoolError) as err:
            check()
        assert err.value.rule == "compliance.log_parse" and Path(err.value.path) == log
        assert "not a list of responses" in err.value.message


@pytest.mark.parametrize(
    ("baseline", "compliance", "says", "passes"),
    [
        ({"exact_match": 1.0, "f1": 2.0}, {"exact_match": 3.0, "f1": 2.01}, "PASS by the accuracy comparison", True),
        ({"exact_match": 1.0, "f1": 2.0}, {"exact_match": 1.0, "f1": 2.5}, "20.000 % apart, 1 % allowed", False),
        (None, None, "FAIL (responses differ", None),
    ],
)
def test_test01_says_the_checkers_fallback_verdict_where_responses_differ(baseline, compliance, says, passes):
    """Batching on a CPU changes a logit's last bits: TEST01 said "accuracy FAIL" for a run whose sampled F1 equals
    the accuracy run's, which the checker's fallback passes. Only the metric the checker compares counts (bert's F1:
    exact_match 3 against 1 does not fail it)."""
    from subtool.runner.session import SessionSpec, _test01_fallback

    spec = SessionSpec("bert-99", "Offline", ["performance"], "m", "d", "u", "s", "c", "r")
    entry = {} if baseline is None else {"baseline": baseline, "compliance": compliance}
    assert says in _test01_fallback(spec, entry)
    assert entry.get("accuracy_fallback_pass") == passes
