"""find-perf's search for the highest VALID Server / Interactive load (runner/find_perf.py search_load): bounded,
never answers a load that failed, and gets within LOAD_PRECISION of the SUT's limit when the probes allow."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from subtool.runner import find_perf
from subtool.runner.find_perf import LOAD_PRECISION, MAX_LOAD_PROBES, search_load


def _sut(limit: float):
    """A SUT whose runs are VALID up to `limit` queries/s (what LoadGen's verdict and the p99 limits amount to)."""

    def probe_at(qps: float):
        return SimpleNamespace(valid=qps <= limit)

    return probe_at


@settings(max_examples=300, deadline=None)
@given(ceiling=st.floats(1.0, 1e5), share=st.floats(0.001, 1.5))
def test_search_is_bounded_and_answers_only_a_valid_load(ceiling, share):
    limit = ceiling * share
    best, tried = search_load(_sut(limit), ceiling)
    assert 1 <= len(tried) <= MAX_LOAD_PROBES
    assert all(0 < q <= ceiling for q in tried)
    if best is None:
        assert all(q > limit for q in tried)
    else:
        assert best in tried and best <= limit
        assert best == max(q for q in tried if q <= limit)


def test_search_gets_close_to_the_limit():
    # the first load (0.8 of the Offline rate) fails, a lower one holds, bisection closes in within the probes
    best, tried = search_load(_sut(500.0), 1000.0, max_probes=10)
    assert best is not None and 500.0 / (1 + LOAD_PRECISION) <= best <= 500.0
    assert tried[0] == 800.0 and len(tried) <= 10
    # a SUT that holds every load is given the Offline rate, never more
    best, tried = search_load(_sut(1e9), 1000.0)
    assert best == 1000.0 and max(tried) == 1000.0


def test_search_bisects_until_the_bracket_is_within_the_precision_and_then_stops():
    """800 and 480 fail, 288 holds: 288 is 28 % under the limit, so the search must bisect on (a stop condition
    read the wrong way round would answer 288), and stop as soon as the bracket is within LOAD_PRECISION."""
    limit = 400.0
    best, tried = search_load(_sut(limit), 1000.0, max_probes=10)
    assert tried[:3] == [800.0, 480.0, 288.0]
    assert best is not None and limit / (1 + LOAD_PRECISION) <= best <= limit
    lowest_invalid = min(q for q in tried if q > limit)
    assert lowest_invalid / best - 1 <= LOAD_PRECISION
    before_last = tried[:-1]
    valid, invalid = max(q for q in before_last if q <= limit), min(q for q in before_last if q > limit)
    assert invalid / valid - 1 > LOAD_PRECISION  # it stopped at the first probe that closed the bracket


def test_probe_lines_say_the_load_the_verdict_and_why():
    p = find_perf.Probe(result=1.0, validity="VALID", seconds=1.5, ttft_p99=620.0, tpot_p99=9.5, within_limits=False)
    line = find_perf._load_line(4, "Interactive", 12.5, p)
    assert line == (
        "  probe 4: Interactive 12.500 queries/s → INVALID (TTFT/TPOT p99 over the limits), "
        "TTFT p99 620 ms, TPOT p99 9.5 ms (1.5 s)"
    )
    p = find_perf.Probe(result=1.0, validity="INVALID", seconds=2.0)
    assert find_perf._load_line(1, "Server", 3.0, p) == "  probe 1: Server 3.000 queries/s → INVALID (LoadGen) (2.0 s)"


@settings(max_examples=200, deadline=None)
@given(ceiling=st.floats(1e-4, 2.0), share=st.floats(0.0, 1.5))
def test_no_load_below_what_a_run_can_be_paced_at_is_probed_or_found(ceiling, share):
    """A slow SUT's search stepped down to 0.005 queries/s (a probe at 0.04 needs 12,500 s) and wrote a user.conf
    the next run refuses; below the floor nothing is probed and nothing found."""
    from subtool.mlperf.user_conf import LEAST

    floor = LEAST["target_qps"]
    best, tried = search_load(_sut(ceiling * share), ceiling, floor=floor)
    assert all(q >= floor for q in tried)
    assert best is None or best >= floor


def test_a_found_load_is_written_as_run_takes_it():
    # round(…, 3) wrote 0.0 (and 0.000 for a probe) for a SUT of under 0.0005 queries/s
    from subtool.runner.find_perf import _qps

    assert _qps(123.4567891) == 123.457 and _qps(0.01234567) == 0.0123457 and _qps(0.0004) == 0.01
