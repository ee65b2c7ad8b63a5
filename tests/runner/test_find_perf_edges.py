"""find-perf's verdict on an LLM load probe is the checker's: LoadGen's VALID and the p99 TTFT and TPOT each
strictly below the round's limits (ms in run.json, ns in the limits table); the load it measured is samples/s, not
the tokens/s result. The probe run itself is replaced by its run.json record (the search: test_find_perf.py)."""

from __future__ import annotations

import pytest

from subtool.mlperf.round import LLM_TOKEN_LIMITS
from subtool.runner import find_perf
from subtool.runner.api import RunOptions

MODEL = "llama3.1-8b"


def _probe(tmp_path, monkeypatch, scenario, ttft_ms, tpot_ms, validity="VALID"):
    perf = {"result": 5000.0, "result_validity": validity, "seconds": 2.0, "samples_per_second": 12.0}
    if ttft_ms is not None:
        perf["ttft_ms"] = {"p99": ttft_ms}
    if tpot_ms is not None:
        perf["tpot_ms"] = {"p99": tpot_ms}
    monkeypatch.setattr(find_perf, "run_decided", lambda opts, say: {"modes": {"performance": perf}})
    return find_perf._probe(RunOptions(model=MODEL, scenario=scenario), tmp_path, {"k": 1})


@pytest.mark.parametrize("scenario", ["Server", "Interactive"])
def test_a_load_is_valid_only_with_both_p99_token_latencies_strictly_below_the_limits(tmp_path, monkeypatch, scenario):
    ttft_ms, tpot_ms = (limit / 1e6 for limit in LLM_TOKEN_LIMITS[MODEL][scenario])
    below = _probe(tmp_path, monkeypatch, scenario, ttft_ms * 0.99, tpot_ms * 0.99)
    assert below.valid and below.within_limits is True
    assert below.samples_per_second == 12.0  # the load, not the tokens/s result
    for ttft, tpot in [(ttft_ms, tpot_ms * 0.99), (ttft_ms * 0.99, tpot_ms), (ttft_ms * 2, tpot_ms * 0.5)]:
        p = _probe(tmp_path, monkeypatch, scenario, ttft, tpot)
        assert not p.valid and p.within_limits is False, (ttft, tpot)
    assert not _probe(tmp_path, monkeypatch, scenario, None, tpot_ms * 0.5).valid  # no TTFT measured: no proof
    assert not _probe(tmp_path, monkeypatch, scenario, ttft_ms * 0.5, tpot_ms * 0.5, validity="INVALID").valid


def test_a_light_load_probe_still_issues_the_queries_early_stopping_needs():
    from subtool.runner.harness import SHORT_MIN_QUERIES
    from subtool.runner.workload import get_workload

    spec = get_workload("bert-99").spec
    light = find_perf._load_settings(RunOptions(scenario="Server"), spec, 2.0)
    assert light["min_query_count"] >= SHORT_MIN_QUERIES["Server"] and light["min_duration"] == find_perf.LOAD_PROBE_MS
    heavy = find_perf._load_settings(RunOptions(scenario="Server"), spec, 1000.0)
    assert heavy["min_query_count"] >= 1000.0 * find_perf.LOAD_PROBE_MS / 1000
