"""Shapes of genuine LoadGen logs seen in published submission trees that the checker once refused although the
official checker passes them. Each test starts from a real LoadGen run of the case trees and gives it the shape
found in the published logs (the numbers are made up, the format is LoadGen's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from treegen import set_log_value

from subtool.checker.api import CheckOptions, check_tree

SERVER = "closed/TeamX/results/dc/llama2-70b-99.9/Server"


def _replace_line(path: Path, label: str, new_value: str) -> None:
    """Every `label ... : value` line of a summary log gets `new_value`, spacing kept."""
    lines = []
    for line in path.read_text().splitlines(keepends=True):
        head, colon, _ = line.partition(":")
        if colon and head.strip() == label:
            line = f"{head}: {new_value}\n"
        lines.append(line)
    path.write_text("".join(lines))


def _server_pair(tree: Path, detail_value: object, summary_text: str) -> None:
    run = tree / SERVER / "performance" / "run_1"
    set_log_value(run / "mlperf_log_detail.txt", "result_completed_tokens_per_second", detail_value)
    _replace_line(run / "mlperf_log_summary.txt", "Completed tokens per second", summary_text)


def _summary_findings(tree: Path) -> list:
    return [f for f in check_tree(tree, CheckOptions()).findings if f.rule.startswith("summary.")]


@pytest.mark.parametrize(
    ("detail", "summary"), [(17.8585, "17.86"), (62.7982, "62.80"), (508.687, "508.69"), (3.47801, "3.48")]
)
def test_a_completed_rate_printed_with_two_decimals_matches_its_detail_log(tree_copy, detail, summary):
    """LoadGen prints 'Completed ... per second' in fixed point with two decimals and the detail log's value with
    six digits: 17.86 beside 17.8585 (a published stable-diffusion-xl Server run) is one run's pair, not a lie."""
    tree = tree_copy("llama2_closed_valid")
    _server_pair(tree, detail, summary)
    assert _summary_findings(tree) == []


def test_a_completed_rate_off_by_more_than_its_rounding_still_fails(tree_copy):
    tree = tree_copy("llama2_closed_valid")
    _server_pair(tree, 17.8585, "17.87")  # a hundredth off: no rounding of 17.8585 gives it
    (finding,) = _summary_findings(tree)
    assert finding.rule == "summary.mismatch" and finding.result == SERVER


OFFLINE = "closed/TeamX/results/box/bert-99/Offline"


def _log_value(detail: Path, key: str) -> object:
    line = next(ln for ln in detail.read_text().splitlines() if f'"key": "{key}"' in ln[:80])
    return json.loads(line[len(":::MLLOG ") :])["value"]


@pytest.mark.parametrize("logged", ["rounded", "configured"])
def test_an_offline_rate_over_the_samples_loadgen_issued_is_consistent(tree_copy, logged):
    """With sample_concatenate_permutation LoadGen rounds the query up to whole sets of the performance samples
    and its samples/s counts the samples issued. LoadGen 5.1 logs the rounded count as generated (a published
    3d-unet run: 5578 configured, 5590 generated), 4.1 the configured one (4488 generated, 4515 counted)."""
    tree = tree_copy("bert_closed_valid")
    run = tree / OFFLINE / "performance" / "run_1"
    detail = run / "mlperf_log_detail.txt"
    sets = _log_value(detail, "effective_performance_sample_count")
    configured = _log_value(detail, "effective_samples_per_query")
    issued = -(-configured // sets) * sets  # rounded up to whole sets
    rate = float(f"{issued * 1e9 / _log_value(detail, 'result_max_latency_ns'):.6g}")  # 1 query
    for key, value in (
        ("effective_sample_concatenate_permutation", True),
        ("generated_samples_per_query", issued if logged == "rounded" else configured),
        ("result_samples_per_second", rate),
    ):
        set_log_value(detail, key, value)
    _replace_line(run / "mlperf_log_summary.txt", "Samples per second", f"{rate:g}")
    report = check_tree(tree, CheckOptions())
    assert [f.rule for f in report.findings if f.result == OFFLINE and f.severity == "error"] == []
    assert {r.result: r.passed for r in report.results}[OFFLINE]


SINGLE = "closed/TeamX/results/box/bert-99/SingleStream"


def _at_percentile(tree: Path, percentile: float, label: str) -> Path:
    """The SingleStream run made one whose latency target is `percentile` (pointpainting's is 0.999): LoadGen
    names the summary's early-stopping line after it."""
    run = tree / SINGLE / "performance" / "run_1"
    set_log_value(run / "mlperf_log_detail.txt", "effective_target_latency_percentile", percentile)
    summary = run / "mlperf_log_summary.txt"
    summary.write_text(summary.read_text().replace("Early stopping 90.0th percentile estimate", label))
    return summary


def test_an_early_stopping_line_named_after_the_runs_percentile_is_compared(tree_copy):
    """A published pointpainting SingleStream summary says 'Early stopping 99.9th percentile estimate': it was
    reported as having no 90.0th line (summary.unreadable) and never compared with the detail log."""
    tree = tree_copy("bert_closed_valid")
    _at_percentile(tree, 0.999, "Early stopping 99.9th percentile estimate")
    assert _summary_findings(tree) == []


def test_an_early_stopping_line_of_another_percentile_is_not_the_result(tree_copy):
    tree = tree_copy("bert_closed_valid")
    summary = _at_percentile(tree, 0.999, "Early stopping 99.9th percentile estimate")
    summary.write_text(summary.read_text().replace("99.9th percentile estimate: ", "99.9th percentile estimate: 9"))
    (finding,) = _summary_findings(tree)
    assert finding.rule == "summary.mismatch" and "99.9th" in finding.message and finding.result == SINGLE
