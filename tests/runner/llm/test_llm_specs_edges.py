"""The LLM benchmarks' own settings as the references run them, and the closed-division limits at their edge: a
metric exactly at its lower or upper limit meets it."""

from __future__ import annotations

import pytest

from subtool.runner.llm.specs import LLM_SPECS, accuracy_shortfalls


@pytest.mark.parametrize("name", sorted(LLM_SPECS))
def test_a_metric_exactly_at_its_limit_meets_it(name):
    spec = LLM_SPECS[name]
    assert spec.thresholds, name
    at = {key: value for key, value in spec.thresholds} | {key: value for key, value in spec.upper_limits}
    assert accuracy_shortfalls(spec, at) == []
    for key, low in spec.thresholds:
        assert accuracy_shortfalls(spec, at | {key: low - 1e-6}) == [f"{key} {round(low - 1e-6, 6)} < {round(low, 6)}"]
    for key, high in spec.upper_limits:
        assert len(accuracy_shortfalls(spec, at | {key: high + 1})) == 1


@pytest.mark.parametrize(
    "name, max_new, min_new, beams, dtype",
    [
        ("llama3.1-8b", 128, 1, 1, "int32"),
        ("llama2-70b-99", 1024, 1, 1, "int32"),
        ("llama2-70b-99.9", 1024, 1, 1, "int32"),
        ("gptj-99", 128, 30, 4, "int64"),
        ("gptj-99.9", 128, 30, 4, "int64"),
    ],
)
def test_generation_settings_are_the_references(name, max_new, min_new, beams, dtype):
    spec = LLM_SPECS[name]
    assert (spec.max_new_tokens, spec.min_new_tokens, spec.num_beams, spec.output_dtype) == (
        max_new,
        min_new,
        beams,
        dtype,
    )
