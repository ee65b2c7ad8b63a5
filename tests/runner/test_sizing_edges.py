"""What a short run's detail log says a bigger or lighter run would fix, and the next try's settings (runner/sizing.py;
pure: a detail log's values, no LoadGen): too few queries, early stopping, a run ended early in each scenario, a
Server load answered too late, and the probe's first settings."""

from __future__ import annotations

import pytest

from subtool.runner import sizing


def test_too_few_queries_is_a_reason_a_bigger_run_fixes_and_the_next_try_asks_for_more():
    values = {
        "result_validity": "INVALID",
        "result_min_duration_met": True,
        "result_min_queries_met": False,
        "result_query_count": 40,
    }
    reason = sizing.why_invalid(values)
    assert reason == "queries"
    grown = sizing.regrow("SingleStream", {"min_query_count": 64, "min_duration": 1000}, values, 1.2, reason)
    assert grown is not None and grown["min_query_count"] > 64 and grown["min_duration"] == 1000


def test_a_server_run_that_ended_before_its_minimum_duration_doubles_its_queries():
    values = {"result_validity": "INVALID", "result_min_duration_met": False, "result_query_count": 500}
    grown = sizing.regrow("Server", {"target_qps": 50.0, "min_query_count": 500}, values, 4.0, "duration")
    assert grown is not None and grown["min_query_count"] == 1000 and grown["target_qps"] == 50.0


def test_a_short_server_run_starts_at_half_the_measured_throughput_at_most_the_cap():
    probe = {"throughput": 200.0}
    assert sizing.initial("Server", {"min_duration": 10000}, probe)["target_qps"] == 100.0
    fast = sizing.initial("Server", {}, {"throughput": 1e9})
    assert fast["target_qps"] == sizing.SERVER_MAX_QPS
    assert sizing.initial("Server", {"target_qps": 7.0}, probe)["target_qps"] == 7.0  # the user's target stands


def test_a_run_invalid_only_for_early_stopping_is_regrown_and_a_flag_loadgen_did_not_log_is_no_reason():
    met = {"result_min_duration_met": True, "result_min_queries_met": True, "result_perf_constraints_met": True}
    assert sizing.why_invalid({"result_validity": "INVALID", **met, "early_stopping_met": False}) == "early_stopping"
    # Offline logs no early_stopping_met: an INVALID log without the flags names no reason re-sizing fixes
    assert sizing.why_invalid({"result_validity": "INVALID", **met}) == ""
    assert sizing.why_invalid({"result_validity": "INVALID"}) == ""


def test_early_stopping_asks_for_the_queries_already_run_plus_the_more_loadgen_wants():
    values = {
        "result_query_count": 300,
        "generated_query_count": 5000,
        "early_stopping_result": " * Run unsuccessful. * Processed 300 queries. * Would need to run at least 449 "
        "more queries, with the run being successful if …",
    }
    grown = sizing.regrow("SingleStream", {"min_query_count": 64}, values, 2.0, "early_stopping")
    assert 300 + 449 < grown["min_query_count"] < 5000  # with a margin over LoadGen's estimate
    # LoadGen's other wording names the total
    values["early_stopping_result"] = " * Run unsuccessful. * Would need to run at least 700 queries, with …"
    assert (
        700 < sizing.regrow("SingleStream", {"min_query_count": 64}, values, 2.0, "queries")["min_query_count"] < 5000
    )


def test_a_server_run_that_ended_early_doubles_the_larger_of_its_queries_and_its_minimum():
    def grown(queries: int, min_queries: int) -> int:
        values = {"result_query_count": queries, "generated_query_count": 20 * queries}
        return sizing.regrow("Server", {"target_qps": 50.0, "min_query_count": min_queries}, values, 4.0, "duration")[
            "min_query_count"
        ]

    assert grown(800, 500) == 1600  # the queries it ran, not the ones LoadGen generated
    assert grown(100, 500) == 1000


def test_an_offline_run_that_ended_early_at_least_doubles_its_target_whatever_the_rate_logged():
    values = {"result_validity": "INVALID", "result_min_duration_met": False, "result_samples_per_second": 1000.0}
    grown = sizing.regrow("Offline", {"target_qps": 9849.0, "min_duration": 1000}, values, 0.5, "duration")
    assert grown["target_qps"] == 19698.001


def test_a_stream_run_that_ended_early_expects_at_most_half_its_latency():
    def target(scenario: str, values: dict, seconds: float) -> float:
        kind = "single" if scenario == "SingleStream" else "multi"
        values = {f"requested_{kind}_stream_expected_latency_ns": 40_000_000, **values}
        return sizing.regrow(scenario, {"min_duration": 10000}, values, seconds, "duration")["target_latency"]

    assert target("MultiStream", {}, 9.0) == 20.0  # its own 40 ms, not SingleStream's key or LoadGen's default
    assert target("SingleStream", {}, 9.0) == 20.0  # 9 s of 10: halved, not just shrunk by 10/9 × 1.5
    # SingleStream's logged query rate, LoadGen's overhead included, says what to expect, 1.5 × faster …
    assert target("SingleStream", {"result_qps_with_loadgen_overhead": 2000.0}, 9.0) == pytest.approx(1 / 3, abs=1e-6)
    # … but never less than half as fast as before
    assert target("SingleStream", {"result_qps_with_loadgen_overhead": 10.0}, 9.0) == 20.0
    # and never a zero latency, however fast
    assert target("SingleStream", {"result_qps_with_loadgen_overhead": 1e12}, 9.0) == 1e-6


def test_only_a_server_run_is_made_lighter_for_answering_too_late():
    values = {"result_validity": "INVALID", "result_perf_constraints_met": False}
    assert sizing.regrow("SingleStream", {"target_latency": 2.0, "min_duration": 1000}, values, 2.0, "latency") is None


def test_a_server_load_answered_too_late_halves_down_to_what_the_sut_completed_and_stops_past_90_seconds():
    values = {"result_validity": "INVALID", "result_perf_constraints_met": False}
    slow = {**values, "result_completed_samples_per_sec": 60.0}
    assert sizing.regrow("Server", {"target_qps": 100.0, "min_query_count": 500}, slow, 5.0, "latency") == {
        "target_qps": 30.0,
        "min_query_count": 500,
    }
    # 500 queries at 5 per second would last 100 s: the run stands as it is
    assert sizing.regrow("Server", {"target_qps": 10.0, "min_query_count": 500}, values, 50.0, "latency") is None


def test_a_run_regrown_to_the_settings_it_had_is_not_run_again():
    values = {"result_validity": "INVALID", "result_min_duration_met": False, "result_qps_with_loadgen_overhead": 1e12}
    assert (
        sizing.regrow("SingleStream", {"target_latency": 1e-6, "min_duration": 1000}, values, 0.5, "duration") is None
    )


def test_a_short_run_sized_from_the_probe_never_asks_for_a_zero_load_or_latency():
    assert sizing.initial("Server", {}, {"throughput": 1e-4})["target_qps"] == 0.001  # a CPU LLM: an answer in 3 h
    assert sizing.initial("SingleStream", {}, {"latency_s": 2.5e-4})["target_latency"] == 0.25
    assert sizing.initial("MultiStream", {}, {"latency_s": 1e-12})["target_latency"] == 1e-6
    assert sizing.initial("SingleStream", {"target_latency": 3.0}, {"latency_s": 1.0}) == {"target_latency": 3.0}
