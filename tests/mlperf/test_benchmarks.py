"""The benchmark catalogue is the one home of each benchmark's facts: every round table agrees with it, and the
runner's workloads and packaging read it (a benchmark `subtool run` runs is one packaging knows)."""

from __future__ import annotations

import pytest

from subtool.mlperf.benchmarks import BENCHMARKS, METRIC_KEYS, accuracy_line_ok, format_accuracy_line, runnable
from subtool.mlperf.round import ACCURACY_PATTERNS, round_config
from subtool.mlperf.rounds import ROUNDS, VERSIONS

ENTRIES = [(v, name) for v in VERSIONS for name in sorted(ROUNDS[v]["models"])]


def test_every_benchmark_of_every_round_is_in_the_catalogue():
    missing = sorted({name for _v, name in ENTRIES if name not in BENCHMARKS})
    assert missing == []
    listed_nowhere = sorted(n for n, b in BENCHMARKS.items() if not b.rounds)
    assert listed_nowhere == []


@pytest.mark.parametrize(("version", "name"), ENTRIES, ids=[f"{v}-{n}" for v, n in ENTRIES])
def test_round_table_agrees_with_the_catalogue(version, name):
    bench, entry = BENCHMARKS[name], ROUNDS[version]["models"][name]
    assert entry["performance_sample_count"] == bench.performance_sample_count
    assert entry["dataset_size"] == bench.dataset_size
    accuracy = entry.get("accuracy", ())
    if isinstance(accuracy, dict):  # per-scenario targets (a round's own): the Offline one is the catalogue's
        accuracy = accuracy["Offline"]
    assert tuple(accuracy) == bench.accuracy
    assert tuple(entry.get("accuracy_upper", ())) == bench.accuracy_upper
    assert (version in bench.rounds) == entry.get("listed", True)
    suites = {k for k in entry.get("scenarios", {}) if "," not in k}
    assert suites <= set(bench.suites)
    for metric, _ref, _frac in (*bench.accuracy, *bench.accuracy_upper):
        assert metric in ACCURACY_PATTERNS


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_catalogue_entry_is_what_its_newest_round_says(name):
    bench = BENCHMARKS[name]
    newest = round_config(bench.rounds[-1])
    rules = newest.model(name)
    assert tuple(rules.compliance_tests) == bench.compliance_tests
    suites = set()
    for version in VERSIONS:
        suites |= {k for k in ROUNDS[version]["models"].get(name, {}).get("scenarios", {}) if "," not in k}
    assert suites == set(bench.suites)
    assert bench.units("Offline") == rules.units("Offline")
    assert bench.tokens == rules.is_llm


def test_the_runner_runs_exactly_the_catalogue_benchmarks_with_a_family():
    from subtool.runner.workload import WORKLOAD_MODULES

    assert set(WORKLOAD_MODULES) == {b.name for b in runnable()} >= {"bert-99", "gptj-99.9", "llama3.1-8b"}


def test_runner_specs_read_the_catalogue():
    pytest.importorskip("numpy")
    from subtool.runner.bert.workload import WORKLOADS
    from subtool.runner.llm.specs import LLM_SPECS

    families = {b.name: b.family for b in runnable()}
    assert set(WORKLOADS) == {n for n, f in families.items() if f == "bert"}
    assert set(LLM_SPECS) == {n for n, f in families.items() if f == "llm"}
    for name, spec in LLM_SPECS.items():
        bench = BENCHMARKS[name]
        assert (spec.loadgen_model, spec.sample_count, spec.round, spec.compliance) == (
            bench.conf_name,
            bench.performance_sample_count,
            bench.rounds[-1],
            ("TEST06",),
        )
        # every metric the checker holds the result to is one the runner scores, with the same limit
        assert dict(spec.thresholds) == {METRIC_KEYS[m]: r * f for m, r, f in bench.accuracy}
        assert dict(spec.upper_limits) == {METRIC_KEYS[m]: r * f for m, r, f in bench.accuracy_upper}
    for name, spec in WORKLOADS.items():
        bench = BENCHMARKS[name]
        assert (spec.loadgen_model, spec.sample_count) == (bench.conf_name, bench.performance_sample_count)
        assert spec.f1_target == pytest.approx(bench.accuracy[0][1] * bench.accuracy[0][2])
    assert LLM_SPECS["gptj-99.9"].round == "v5.0" and LLM_SPECS["llama2-70b-99"].round == "v6.0"


@pytest.mark.parametrize("bench", runnable(), ids=lambda b: b.name)
def test_packaging_writes_an_accuracy_line_the_checker_reads(bench):
    """Every benchmark subtool runs: the accuracy line packaging writes carries each metric the checker reads."""
    metrics = {key: 12.5 for key in bench.accuracy_keys}
    line = format_accuracy_line(bench, metrics)
    assert accuracy_line_ok(bench, line)
    for metric, _ref, _frac in bench.accuracy:
        match = ACCURACY_PATTERNS[metric].match(line)
        assert match and float(match.group(1)) == 12.5, metric
    assert not accuracy_line_ok(bench, "accuracy: none\n")
