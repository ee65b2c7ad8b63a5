"""The user.conf keys subtool writes for a run (runner/harness.py): pure, no LoadGen."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("model", ["llama3_1-8b", "llama2-70b", "llama3_1-8b-interactive"])
@pytest.mark.parametrize("scenario", ["Server", "SingleStream"])
def test_equal_issue_is_turned_off_only_for_short_runs_of_the_llms(model, scenario):
    """mlperf.conf sets sample_concatenate_permutation for the LLMs, and the checker wants it in a valid run: only a
    short run (too few queries for it) may turn it off."""
    from subtool.runner.harness import user_conf_settings

    def settings(style: str) -> dict:
        return user_conf_settings(
            scenario, style, 100, target_qps=1.0, target_latency_ms=None, min_duration_ms=None, loadgen_model=model
        )

    assert settings("short")["sample_concatenate_permutation"] == 0
    assert "sample_concatenate_permutation" not in settings("valid")
    assert "sample_concatenate_permutation" not in user_conf_settings(
        scenario, "short", 100, target_qps=1.0, target_latency_ms=None, min_duration_ms=None, loadgen_model="bert"
    )
