"""`score --metrics`: VirtualClient's MLPerf metric names (one per system, harness, benchmark variant, power mode and
scenario, under the benchmark) and min/max/avg over a team's repeated runs; on records, then through the CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from result_records import result_record
from typer.testing import CliRunner

from subtool.cli import app
from subtool.scoring.entry import EntryRecord, ResultRecord, SystemRecord
from subtool.scoring.metrics import aggregate, metric_rows, render_metrics


def _result(
    model: str,
    scenario: str = "Offline",
    *,
    value: float | None = 100.0,
    acc: bool = True,
    perf: bool = True,
    system: str = "box",
    submitter: str = "TeamX",
    units: str = "Samples/s",
):
    return result_record(
        submitter,
        model,
        scenario,
        value,
        system=system,
        units=units,
        accuracy="",
        passed=acc and perf,
        accuracy_ok=acc,
        performance_ok=perf,
        failed=[],
        reasons=[],
    )


def _entry(
    index: int, results: list[ResultRecord], framework: str = "PyTorch 2.13.0, transformers 4.44"
) -> EntryRecord:
    systems = [SystemRecord("open", r.submitter, r.system, "NVIDIA GPUs", {"framework": framework}) for r in results]
    return EntryRecord(
        index=index, input=f"in{index}.tar.gz", kind="tarball", name=f"in{index}", systems=systems, results=results
    )


def _by_name(metrics: list[dict]) -> dict[tuple, dict]:
    return {(m["metricMetadata"]["submitter"], m["scenario"], m["metricName"]): m for m in metrics}


def test_names_follow_virtualclient():
    rows = metric_rows(
        [
            _entry(
                0,
                [
                    _result("bert-99"),
                    _result("bert-99.9", "Server", perf=False),
                    _result("llama3.1-8b", value=None, acc=False),
                ],
            )
        ]
    )
    names = {row["benchmark"]: {m["metricName"]: m["metricValue"] for m in row["metrics"]} for row in rows}
    assert names == {
        "bert-99": {
            "box-PyTorch_k_99_MaxP-Offline-AccuracyMode": 1.0,
            "box-PyTorch_k_99_MaxP-Offline-PerformanceMode": 1.0,
            "box-PyTorch_k_99_MaxP-Offline-Result": 100.0,
        },
        "bert-99.9": {
            "box-PyTorch_k_99_9_MaxP-Server-AccuracyMode": 1.0,
            "box-PyTorch_k_99_9_MaxP-Server-PerformanceMode": 0.0,
            "box-PyTorch_k_99_9_MaxP-Server-Result": 100.0,
        },
        # no -99 in its name: the variant is the round's 99 % target; no value, so no Result metric
        "llama3.1-8b": {
            "box-PyTorch_k_99_MaxP-Offline-AccuracyMode": 0.0,
            "box-PyTorch_k_99_MaxP-Offline-PerformanceMode": 1.0,
        },
    }
    groups = {(row["benchmark"], row["benchmark_group"], row["metric"]) for row in rows}
    assert groups == {
        ("bert-99", "bert", "box-PyTorch_k_99_MaxP-Offline"),
        ("bert-99.9", "bert", "box-PyTorch_k_99_9_MaxP-Server"),
        ("llama3.1-8b", "llama3.1-8b", "box-PyTorch_k_99_MaxP-Offline"),
    }
    metrics = _by_name(aggregate(rows))
    # bert-99 and llama3.1-8b share a metric name but are reported under different benchmarks, never mixed
    assert metrics[("TeamX", "bert", "box-PyTorch_k_99_MaxP-Offline-AccuracyMode")]["avg"] == 1.0
    assert metrics[("TeamX", "llama3.1-8b", "box-PyTorch_k_99_MaxP-Offline-AccuracyMode")]["avg"] == 0.0
    assert metrics[("TeamX", "bert", "box-PyTorch_k_99_9_MaxP-Server-PerformanceMode")]["max"] == 0.0


def test_harness_and_power_mode_are_part_of_the_name():
    rows = metric_rows(
        [
            _entry(0, [_result("bert-99", units="Watts")], framework=""),
            _entry(1, [_result("bert-99", system="rig")], framework="TensorRT 10.1"),
        ]
    )
    names = sorted(m["metricName"] for row in rows for m in row["metrics"] if m["metricName"].endswith("Mode"))
    assert names == [
        "box-custom_k_99_MaxQ-Offline-AccuracyMode",
        "box-custom_k_99_MaxQ-Offline-PerformanceMode",
        "rig-TensorRT_k_99_MaxP-Offline-AccuracyMode",
        "rig-TensorRT_k_99_MaxP-Offline-PerformanceMode",
    ]


def test_repeated_runs_aggregate_min_max_avg():
    # one team hands in the same system three times: VALID, INVALID, VALID; its throughput 90, 120, 150
    entries = [
        _entry(i, [_result("bert-99", "Server", value=v, perf=ok)])
        for i, (v, ok) in enumerate([(90.0, True), (120.0, False), (150.0, True)])
    ]
    entries.append(_entry(3, [_result("bert-99", "Server", value=10.0, perf=False, submitter="Other")]))
    metrics = _by_name(aggregate(metric_rows(entries)))
    perf = metrics[("TeamX", "bert", "box-PyTorch_k_99_MaxP-Server-PerformanceMode")]
    assert (perf["count"], perf["min"], perf["max"]) == (3, 0.0, 1.0)
    assert perf["avg"] == pytest.approx(2 / 3)
    assert perf["metricMetadata"]["inputs"] == ["in0.tar.gz", "in1.tar.gz", "in2.tar.gz"]
    result = metrics[("TeamX", "bert", "box-PyTorch_k_99_MaxP-Server-Result")]
    assert (result["min"], result["max"], result["avg"], result["metricUnit"]) == (90.0, 150.0, 120.0, "Samples/s")
    # another team's system of the same name is its own metric
    other = metrics[("Other", "bert", "box-PyTorch_k_99_MaxP-Server-PerformanceMode")]
    assert (other["count"], other["avg"]) == (1, 0.0)
    assert len(metrics) == 6


def test_single_stream_results_are_lower_is_better():
    rows = metric_rows([_entry(0, [_result("bert-99", "SingleStream", value=1.5, units="Latency (ms)")])])
    rel = {m["metricName"].rsplit("-", 1)[1]: m["metricRelativity"] for m in rows[0]["metrics"]}
    assert rel == {"AccuracyMode": "HigherIsBetter", "PerformanceMode": "HigherIsBetter", "Result": "LowerIsBetter"}


def test_csv_keeps_one_row_per_result_with_its_metric_stem():
    rows = metric_rows([_entry(0, [_result("bert-99")]), _entry(1, [_result("bert-99", perf=False)])])
    table = list(csv.DictReader(io.StringIO(render_metrics(rows, "csv"))))
    assert [(r["input"], r["metric"], r["PerformanceMode"]) for r in table] == [
        ("in0.tar.gz", "box-PyTorch_k_99_MaxP-Offline", "1.0"),
        ("in1.tar.gz", "box-PyTorch_k_99_MaxP-Offline", "0.0"),
    ]


def test_score_cli_aggregates_a_team_handed_in_twice(sc_copy, tmp_path):
    handins = sc_copy(["Alpha", "Eta"])
    (handins / "Alpha").rename(handins / "upload-1")  # filed under folders that do not name the team
    sc_copy(["Alpha"])  # the same hand-in again, as a second input
    (handins / "Alpha").rename(handins / "upload-2")
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["score", str(handins), "--out", str(out), "--metrics", str(out / "m.json"), "--jobs", "1"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "m.json").read_text())
    metrics = _by_name(doc["metrics"])
    alpha = metrics[("Alpha", "bert", "cluster-PyTorch_k_99_MaxP-Offline-PerformanceMode")]
    assert (alpha["count"], alpha["min"], alpha["max"], alpha["avg"]) == (2, 1.0, 1.0, 1.0)
    assert sorted(Path(i).parent.name for i in alpha["metricMetadata"]["inputs"]) == ["upload-1", "upload-2"]
    llama = metrics[("Alpha", "llama2-70b", "cluster-PyTorch_k_99_9_MaxP-Offline-AccuracyMode")]
    assert (llama["count"], llama["avg"], llama["metricUnit"]) == (2, 1.0, "PASS/FAIL")
    eta = metrics[("Eta", "bert", "cluster-PyTorch_k_99_MaxP-Offline-PerformanceMode")]
    assert eta["count"] == 1  # another team: its own metric
    assert len(doc["results"]) == 5


# ----------------------------------------------------- survivors of a mutation probe: each fails on its mutant
def test_multistream_results_are_lower_is_better_too():
    [row] = metric_rows([_entry(0, [_result("bert-99", "MultiStream", value=4.2, units="Latency (ms)")])])
    assert [m["metricRelativity"] for m in row["metrics"] if m["metricName"].endswith("-Result")] == ["LowerIsBetter"]


def test_an_energy_result_in_joules_is_a_power_result():
    [row] = metric_rows([_entry(0, [_result("bert-99", "SingleStream", value=0.5, units="millijoules")])])
    assert row["metric"] == "box-PyTorch_k_99_MaxQ-SingleStream"


@pytest.mark.parametrize("lead", ["=", "+", "-", "@"])
def test_csv_cells_a_spreadsheet_would_run_as_a_formula_are_quoted(lead):
    evil = f"{lead}HYPERLINK(1)"
    text = render_metrics(metric_rows([_entry(0, [_result("bert-99", system=evil, submitter=evil)])]), "csv")
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["submitter"] == "'" + evil and row["system"] == "'" + evil
