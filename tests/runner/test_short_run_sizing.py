"""A short run is VALID (apart from the waived 600 s minimum) on any hardware: on an instant SUT — millions of
samples per second, far past what the default sizing expects — every scenario, run through `subtool run`'s own
path (user.conf written by subtool, the benchmark's child process, real LoadGen), ends VALID, and the user.conf
in the run directory holds the settings the counted run used."""

from __future__ import annotations

import json
from pathlib import Path

import instant_sut  # noqa: E402  (tests/runner is on sys.path: pytest's rootdir-relative import)
import pytest
from typer.testing import CliRunner

from subtool.cli import app
from subtool.runner import sizing
from subtool.runner.harness import read_detail_log

# instant_backend (tests/runner/conftest.py): bert's backend "instant", here and in the benchmark's child process

runner = CliRunner()


def _run(tmp_path, checkpoint, squad, scenario, *extra):
    res = runner.invoke(
        app,
        [
            "run",
            "--model-path",
            str(checkpoint),
            "--dataset-path",
            str(squad),
            "--out",
            str(tmp_path / "runs"),
            "--backend",
            instant_sut.BACKEND,
            "--scenario",
            scenario,
            "--mode",
            "performance",
            *map(str, extra),
        ],
    )
    assert res.exit_code == 0, res.output
    run_dir = tmp_path / "runs" / "bert-99" / scenario
    return run_dir, json.loads((run_dir / "run.json").read_text())


def _conf(run_dir) -> dict[str, float]:
    out = {}
    for line in (run_dir / "user.conf").read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=")
            out[key.strip().split(".", 2)[2]] = float(value)
    return out


def test_offline_short_run_on_an_instant_sut_is_valid(tmp_path, tiny_checkpoint, small_squad, instant_backend):
    run_dir, record = _run(tmp_path, tiny_checkpoint, small_squad, "Offline")
    perf = record["modes"]["performance"]
    values = read_detail_log(run_dir / "performance/run_1/mlperf_log_detail.txt")
    assert perf["result_validity"] == "VALID" and values["result_validity"] == "VALID"
    assert values["result_min_duration_met"] is True and "Multiple conf files" not in str(values)
    assert perf["result"] > 100_000  # far above the ~9,850 samples/s the default sizing expects
    tries = record["sizing"]["tries"]
    assert tries[0]["validity"] == "INVALID" and tries[0]["reason"] == "duration" and tries[-1]["validity"] == "VALID"
    # the user.conf in the run directory is the one the counted run used, and run.json says the same
    conf = _conf(run_dir)
    assert conf["target_qps"] == pytest.approx(values["effective_target_qps"], rel=1e-4)  # LoadGen logs 6 digits
    assert conf["min_duration"] == 1000 == values["effective_min_duration_ms"]
    assert record["settings"]["target_qps"] == conf["target_qps"]
    assert values["effective_samples_per_query"] >= 10833  # still at least the whole data set
    assert record["waives"] == ["600 s minimum duration (perf.min_duration)"]
    # only the counted run's logs are in the run directory
    assert sorted(p.name for p in (run_dir / "performance/run_1").iterdir()) == [
        "mlperf_log_accuracy.json",
        "mlperf_log_detail.txt",
        "mlperf_log_summary.txt",
    ]


@pytest.mark.parametrize("scenario", ["Server", "SingleStream", "MultiStream"])
def test_latency_scenarios_short_run_on_an_instant_sut_is_valid(
    tmp_path, tiny_checkpoint, small_squad, instant_backend, scenario
):
    # a 1 s minimum instead of the short style's 10 s keeps the test fast; the sizing is the same code
    run_dir, record = _run(tmp_path, tiny_checkpoint, small_squad, scenario, "--min-duration-ms", "1000")
    values = read_detail_log(run_dir / "performance/run_1/mlperf_log_detail.txt")
    assert record["modes"]["performance"]["result_validity"] == "VALID" == values["result_validity"]
    assert values["result_min_duration_met"] is True and values["early_stopping_met"] is True
    probe = record["sizing"]["probe"]  # the SUT was measured first, and the run sized from it
    assert probe["seconds"] >= sizing.PROBE_SECONDS or probe.get("samples", probe.get("queries")) >= 1 << 20
    assert record["sizing"]["tries"][-1]["validity"] == "VALID"
    conf = _conf(run_dir)
    assert set(conf) == set(record["settings"])  # run.json and user.conf: the settings the run used
    assert all(float(record["settings"][k]) == pytest.approx(v) for k, v in conf.items())
    if scenario == "Server":
        assert probe["throughput"] > 10_000
        assert values["effective_target_qps"] == pytest.approx(conf["target_qps"])
        assert values["result_query_count"] >= sizing_queries("Server")
    else:
        key = "single" if scenario == "SingleStream" else "multi"
        assert values[f"requested_{key}_stream_expected_latency_ns"] == int(conf["target_latency"] * 1e6)
        assert conf["target_latency"] < 1.0  # sized from the probe: far below LoadGen's default 10 ms


def sizing_queries(scenario: str) -> int:
    from subtool.runner.harness import SHORT_MIN_QUERIES

    return SHORT_MIN_QUERIES[scenario]


# ---------------------------------------------------------------------------------------- regrow, focused
def test_regrow_offline_sizes_the_query_from_the_measured_rate():
    values = {"result_validity": "INVALID", "result_min_duration_met": False, "result_samples_per_second": 500_000.0}
    settings = {"target_qps": 9849.0, "min_duration": 1000}
    grown = sizing.regrow("Offline", settings, values, 0.3, sizing.why_invalid(values))
    # the next query holds 1.5 × what the SUT answers in the minimum duration
    assert grown["target_qps"] * 1.1 == pytest.approx(500_000 * 1.5, rel=1e-3)
    assert grown["min_duration"] == 1000


def test_regrow_takes_the_query_count_loadgen_asks_for():
    values = {
        "result_validity": "INVALID",
        "early_stopping_met": False,
        "result_query_count": 10,
        "early_stopping_result": " * Run unsuccessful. * Processed 10 queries. * Would need to run at "
        "least 449 more queries, with the run being successful if …",
    }
    grown = sizing.regrow("Server", {"min_query_count": 10, "target_qps": 5.0}, values, 2.0, "early_stopping")
    assert grown["min_query_count"] >= 459 and grown["target_qps"] == 5.0


def test_regrow_lowers_a_server_load_the_sut_cannot_answer_in_time():
    values = {
        "result_validity": "INVALID",
        "result_min_duration_met": True,
        "result_min_queries_met": True,
        "result_perf_constraints_met": False,
    }
    grown = sizing.regrow(
        "Server", {"target_qps": 100.0, "min_query_count": 500}, values, 5.0, sizing.why_invalid(values)
    )
    assert grown["target_qps"] == 50.0


def test_a_run_invalid_for_another_reason_is_not_regrown():
    values = {
        "result_validity": "INVALID",
        "result_min_duration_met": True,
        "result_min_queries_met": True,
        "result_perf_constraints_met": True,
        "early_stopping_met": True,
    }
    assert sizing.why_invalid(values) == ""
    assert sizing.why_invalid({"result_validity": "VALID"}) == ""


def test_regrow_stream_scenarios_expect_a_shorter_latency_when_the_run_ended_early():
    values = {
        "result_validity": "INVALID",
        "result_min_duration_met": False,
        "requested_single_stream_expected_latency_ns": 10_000_000,
    }
    # LoadGen's own 10 ms (no target in user.conf); the run lasted 0.1 s of the 10 s it needed
    grown = sizing.regrow("SingleStream", {"min_duration": 10000}, values, 0.1, "duration")
    assert grown["target_latency"] == pytest.approx(10.0 / 150, rel=1e-3)


@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream"])
def test_a_stream_run_that_expected_a_slower_sut_is_grown_until_valid(
    tmp_path, tiny_checkpoint, small_squad, instant_backend, scenario
):
    """--target-latency-ms 100 on an instant SUT: LoadGen generates too few queries, ends early (and logs
    'Ran out of generated queries'); the short run expects a shorter latency and runs again, ending VALID with
    no LoadGen error in the log that counts."""
    run_dir, record = _run(
        tmp_path, tiny_checkpoint, small_squad, scenario, "--min-duration-ms", "1000", "--target-latency-ms", "100"
    )
    tries = record["sizing"]["tries"]
    assert record["sizing"]["probe"] is None and len(tries) >= 2
    assert tries[0]["reason"] == "duration" and tries[-1]["validity"] == "VALID"
    assert _conf(run_dir)["target_latency"] < 100
    values = read_detail_log(run_dir / "performance/run_1/mlperf_log_detail.txt")
    assert values["result_validity"] == "VALID" and values["__errors__"] == []


def test_the_instant_backends_child_imports_this_processs_subtool(tmp_path, instant_backend):
    """The benchmark's child must run the code under test: its sitecustomize imports subtool before the child puts
    its own folder on sys.path, so without the project first there it ran whichever subtool was installed (another
    checkout's), and every change to the child's code (a mutation too) went untested."""
    import os
    import subprocess
    import sys

    import subtool

    out = subprocess.run(
        [sys.executable, "-c", "import subtool, subtool.runner.session as s; print(subtool.__file__, s.__file__)"],
        cwd=tmp_path,
        env=os.environ,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    here = Path(subtool.__file__).resolve().parent
    assert [Path(p).resolve().parent for p in out] == [here, here / "runner"]


def test_a_short_run_whose_sut_failed_is_not_regrown(tmp_path, tiny_checkpoint, small_squad, instant_backend, capfd):
    """A SUT that failed answers every query empty at once (a Ray SUT that lost its last worker): the short run
    took that for a fast SUT and ran again, sized from the empty answers' absurd rate (1.5 million samples here;
    a --min-duration-ms of minutes asks LoadGen for hundreds of millions), before the session named the failure."""
    argv = ["run", "--model-path", tiny_checkpoint, "--dataset-path", small_squad, "--out", tmp_path / "runs"]
    argv += ["--backend", "instant-failing", "--scenario", "Offline", "--mode", "performance"]
    res = runner.invoke(app, [str(a) for a in argv])
    assert res.exit_code == 2, res.output
    assert "short run INVALID" not in capfd.readouterr().err  # no second try (the session's lines)
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.output
    assert "the SUT failed during the performance run: every worker was lost" in errors[0]
    assert not (tmp_path / "runs" / "bert-99" / "Offline").exists()
