"""The round tables restate the official checker's numbers (subtool/mlperf/rounds/, round.py): with the official
checker's copy beside the repository, every number a verdict depends on is compared with the one it holds (model
lists, seeds, sample counts, accuracy targets and upper limits, latency limits, minimum query counts, required and
optional scenarios, result fields, the TTFT/TPOT limits, the Offline samples-per-query minimums, the system
description's required fields). A number mistyped in one table gives a wrong verdict for one benchmark only, which
no tree of the checker's cases may hold; this test names it."""

from __future__ import annotations

import runpy

import pytest
from support.official import official_checker_dir, official_skip_reason

from subtool.mlperf import round as rules
from subtool.mlperf.round import round_config
from subtool.mlperf.rounds import ROUNDS, VERSIONS

SUITES = {"datacenter": "datacenter", "edge": "edge", "datacenter-edge": "datacenter,edge"}


@pytest.fixture(scope="module")
def official():
    checker = official_checker_dir()
    if checker is None:
        pytest.skip(official_skip_reason())
    return runpy.run_path(str(checker / "submission_checker" / "constants.py"))


def _listed(version: str) -> list[str]:
    return round_config(version).model_names


def _products(flat) -> dict[str, float]:
    """The official (metric, limit, metric, limit, …) tuple as {metric: limit}."""
    return dict(zip(flat[::2], flat[1::2]))


def _limits(bounds) -> dict[str, float]:
    return {b.metric: b.value for b in bounds}


@pytest.mark.parametrize("version", VERSIONS)
def test_models_seeds_and_sample_counts(official, version):
    config = official["MODEL_CONFIG"][version]
    assert sorted(config["models"]) == _listed(version)
    assert dict(ROUNDS[version]["seeds"]) == config["seeds"]
    for name in _listed(version):
        model = round_config(version).model(name)
        assert model.performance_sample_count == config["performance-sample-count"][name], name
        assert model.entry.get("dataset_size") == config["dataset-size"].get(name), name
        # an accuracy run's sample count: the round's own, per scenario where it gives one, else the data set's
        count = config["accuracy-sample-count"].get(name, config["dataset-size"].get(name))
        for scenario in rules.SCENARIO_BY_LOWER.values():
            want = count.get(scenario) if isinstance(count, dict) else count
            if want is not None and model.lists_scenario(scenario):
                assert model.accuracy_sample_count(scenario) == want, (name, scenario)


@pytest.mark.parametrize("version", VERSIONS)
def test_accuracy_targets_and_upper_limits(official, version):
    config = official["MODEL_CONFIG"][version]
    for name in _listed(version):
        model = round_config(version).model(name)
        target = config["accuracy-target"][name]
        by_scenario = target if isinstance(target, dict) else {"Offline": target}  # a round's per-scenario targets
        for scenario, flat in by_scenario.items():
            assert _limits(model.accuracy(scenario)) == pytest.approx(_products(flat)), (name, scenario)
        upper = _products(config["accuracy-upper-limit"].get(name, ()))
        assert _limits(model.accuracy_upper()) == pytest.approx(upper), name
    assert config["accuracy-delta-perc"] == rules.COMPLIANCE_DELTA_PERCENT


@pytest.mark.parametrize("version", VERSIONS)
def test_latency_limits_and_minimum_query_counts(official, version):
    config = official["MODEL_CONFIG"][version]
    for name in _listed(version):
        entry = round_config(version).model(name).entry
        assert dict(entry.get("latency_ns", {})) == config["latency-constraint"].get(name, {}), name
        assert dict(entry.get("min_queries", {})) == config["min-queries"].get(name, {}), name


@pytest.mark.parametrize("version", VERSIONS)
def test_required_and_optional_scenarios(official, version):
    config = official["MODEL_CONFIG"][version]
    for name in _listed(version):
        model = round_config(version).model(name)
        for suite, system_type in SUITES.items():
            required = config[f"required-scenarios-{suite}"].get(name)
            optional = config[f"optional-scenarios-{suite}"].get(name, [])
            ours = model.scenarios(system_type)
            if suite == "datacenter-edge":  # the system description may name the two types in either order
                assert model.scenarios("edge,datacenter") == ours, name
            if required is None:
                assert ours is None, (name, suite)
            else:
                assert ours is not None and sorted(ours[0]) == sorted(required), (name, suite)
                assert sorted(ours[1]) == sorted(optional), (name, suite)


@pytest.mark.parametrize("version", VERSIONS)
def test_result_fields(official, version):
    fields = official["RESULT_FIELD_NEW"][version]
    overwrite = official["RESULT_FIELD_BENCHMARK_OVERWRITE"].get(version, {})
    for name in _listed(version):
        model = round_config(version).model(name)
        for scenario, key in fields.items():
            want = overwrite.get(name, {}).get(scenario, key)
            assert model.result_field(scenario) == want, (name, scenario)


def test_token_latency_limits_and_offline_minimums(official):
    limits = {
        name: {scenario: (v["ttft"], v["tpot"]) for scenario, v in by_scenario.items()}
        for name, by_scenario in official["LLM_LATENCY_LIMITS"].items()
    }
    assert rules.LLM_TOKEN_LIMITS == limits
    assert rules.OFFLINE_MIN_SAMPLES_PER_QUERY == official["OFFLINE_MIN_SPQ_SINCE_V4"]
    assert rules.MIN_DURATION_MS == official["TEST_DURATION_MS"]
    assert rules.MAX_ACCURACY_LOG_BYTES == official["MAX_ACCURACY_LOG_SIZE"]
    assert rules.LARGE_FILE_BYTES == official["FILE_SIZE_LIMIT_MB"] * official["MB_TO_BYTES"]


def test_system_description_fields(official):
    assert list(rules.SYSTEM_REQUIRED_FIELDS) == list(official["SYSTEM_DESC_REQUIRED_FIELDS"])
    assert rules.SYSTEM_MEANINGFUL_FIELDS == set(official["SYSTEM_DESC_MEANINGFUL_RESPONSE_REQUIRED_FIELDS"])
    assert list(rules.SYSTEM_NETWORK_FIELDS) == list(official["SYSTEM_DESC_REQUIRED_FIELDS_NETWORK_MODE"])
    assert rules.NETWORK_SUT_NAME_MARK == official["NETWORK_MODE_REQUIRED_SUBSTRING_IN_SUT_NAME"]
    assert rules.AVAILABILITIES == tuple(official["VALID_AVAILABILITIES"])
    assert list(rules.COMPLIANCE_PERF_FILES) == official["REQUIRED_COMP_PER_FILES"]
    assert list(rules.TEST01_ACC_FILES) == official["REQUIRED_TEST01_ACC_FILES"]
    assert list(rules.MEASUREMENTS_FILES) == official["REQUIRED_MEASURE_FILES"]
