"""A short run INVALID for too few queries (LoadGen's min_query_count not met, its duration met) is re-sized with
more queries, not left INVALID (runner/sizing.py; pure: a detail log's values, no LoadGen)."""

from __future__ import annotations

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
