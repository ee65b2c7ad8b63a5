"""The Interactive scenario end to end: `subtool all --scenario Interactive` on the tiny llama3.1-8b through real
LoadGen. Interactive is a LoadGen Server run of the `-interactive` model (its own TTFT/TPOT limits), filed in the
tree's <model>/Interactive/ folder; both checkers accept the tree but for what the small data set and the short
run cost."""

from __future__ import annotations

import json

import pytest
from support.official import official_errors
from typer.testing import CliRunner

from subtool.cli import app
from subtool.mlperf.round import LLM_TOKEN_LIMITS, loadgen_names, round_config
from subtool.mlperf.rounds import VERSIONS

runner = CliRunner()
RESULT = "open/TeamX/results/box1/llama3.1-8b/Interactive"


@pytest.fixture(scope="module")
def interactive_all(tmp_path_factory, llama3_small):
    """`subtool all --scenario Interactive --division open` on the small data set: its output directory."""
    out = tmp_path_factory.mktemp("interactive") / "out"
    argv = ["all", "--submitter", "TeamX", "--model", "llama3.1-8b", "--scenario", "Interactive", "--system", "box1"]
    argv += ["--model-path", str(llama3_small.model_path), "--dataset-path", str(llama3_small.dataset_path)]
    argv += ["--division", "open", "--out", str(out), "--max-new-tokens", "4", "--min-duration-ms", "1000", "--json"]
    res = runner.invoke(app, argv)
    assert res.exit_code in (0, 1), res.output  # 1: the checker's acc.dataset_size on 24 samples
    return out, json.loads(res.stdout)


def test_interactive_is_a_server_run_of_the_interactive_model(interactive_all):
    out, _ = interactive_all
    run_dir = out / "runs/llama3.1-8b/Interactive"
    conf = (run_dir / "user.conf").read_text()
    assert "llama3_1-8b-interactive.Server.target_qps = " in conf and "llama3_1-8b.Server" not in conf
    detail = (run_dir / "performance/run_1/mlperf_log_detail.txt").read_text()
    assert '"key": "effective_scenario", "value": "Server"' in detail
    assert '"key": "requested_server_ttft_latency", "value": 500000000' in detail  # LoadGen's Interactive limits
    assert '"key": "requested_server_tpot_latency", "value": 30000000' in detail
    perf = json.loads((run_dir / "run.json").read_text())["modes"]["performance"]
    assert perf["result_validity"] == "VALID" and perf["result_field"] == "result_completed_tokens_per_second"
    assert perf["limits"] == {"ttft_ms": 500.0, "tpot_ms": 30.0}
    assert 0 < perf["ttft_ms"]["p50"] <= perf["ttft_ms"]["p97"] <= perf["ttft_ms"]["p99"]


def test_tree_files_it_as_interactive_and_subtool_check_accepts_it(interactive_all):
    out, doc = interactive_all
    result = out / "submission" / RESULT
    for rel in ("performance/run_1/mlperf_log_detail.txt", "accuracy/accuracy.txt", "user.conf", "measurements.json"):
        assert (result / rel).is_file(), rel
    findings = json.loads((out / "check/report.json").read_text())["findings"]
    assert {(f["severity"], f["rule"]) for f in findings if f["severity"] in ("error", "waived")} == {
        ("error", "acc.dataset_size"),
        ("waived", "perf.min_duration"),
    }
    assert doc["run"]["scenario"] == "Interactive" and doc["run"]["units"] == "Tokens/s"


def test_official_checker_accepts_the_interactive_result(interactive_all, official_checker, tmp_path):
    out, _ = interactive_all
    errors, output = official_errors(official_checker, out / "submission", "v6.1", tmp_path)
    assert "Traceback" not in output
    real = [e for e in errors if "Checks failed" not in e and not e.startswith(("NoResults", "SUMMARY"))]
    # the same two things subtool's checker reports: the 24-sample data set and the short run (waived there)
    assert len(real) == 2, errors
    assert any("does not cover all dataset" in e for e in real)
    assert any("Test duration less than 600s" in e for e in real)


def test_a_round_without_interactive_is_refused_before_loading(tmp_path, llama2_small):
    out = tmp_path / "runs"
    argv = ["run", "--model", "llama2-70b-99", "--scenario", "Interactive", "--version", "v5.0", "--out", str(out)]
    argv += ["--model-path", str(llama2_small.model_path), "--dataset-path", str(llama2_small.dataset_path)]
    res = runner.invoke(app, argv)
    assert res.exit_code == 2
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no Interactive scenario in round v5.0" in errors[0] and "[run.scenario]" in errors[0]
    assert not out.exists() or not any(out.rglob("run.json"))


_LOADGEN_LIMITS = """
import json, sys, tempfile
import mlperf_loadgen as lg
model = sys.argv[1]
settings = lg.TestSettings()
with tempfile.NamedTemporaryFile("w", suffix=".conf") as conf:
    conf.write(model + ".Server.target_qps = 1\\n")
    conf.flush()
    assert settings.FromConfig(conf.name, model, "Server") == 0
print(json.dumps([settings.ttft_latency, settings.tpot_latency, settings.use_token_latencies]))
"""


def test_interactive_limits_are_the_ones_loadgen_applies():
    """The round tables' Interactive TTFT/TPOT limits, for every LLM a round lists with Interactive, are the ones
    the installed LoadGen's built-in mlperf.conf gives its `-interactive` model (read in child processes)."""
    import subprocess
    import sys

    from subtool.mlperf.benchmarks import BENCHMARKS

    wanted = {}
    for version in VERSIONS:
        rc = round_config(version)
        for name in rc.model_names:
            rules = rc.model(name)
            if rules is not None and rules.lists_scenario("Interactive") and name in LLM_TOKEN_LIMITS:
                wanted[name] = loadgen_names(BENCHMARKS[name].conf_name, "Interactive")
    assert all(scenario == "Server" for _, scenario in wanted.values())
    applied = {}
    for model in sorted({model for model, _ in wanted.values()}):  # one process each: LoadGen reads its built-in
        # mlperf.conf on the first FromConfig of a process only
        cmd = [sys.executable, "-c", _LOADGEN_LIMITS, model]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        applied[model] = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, (model, _) in wanted.items():
        ttft, tpot, token_latencies = applied[model]
        assert (ttft, tpot) == LLM_TOKEN_LIMITS[name]["Interactive"] and token_latencies, name
    assert {"llama3.1-8b", "llama2-70b-99.9", "llama3.1-405b", "deepseek-r1", "gpt-oss-120b"} <= set(wanted)


def test_find_perf_finds_a_valid_interactive_load(tmp_path, llama3_small, monkeypatch):
    """`--find-perf --scenario Interactive` on the tiny model with short probes (one Offline probe, one load at 0.3
    of its rate; the search itself: tests/runner/test_find_perf.py): one line per probe, the benchmark processes
    silent, a load that held under LoadGen's verdict and the Interactive p99 limits, written for the -interactive
    model."""
    from subtool.runner import find_perf

    monkeypatch.setattr(find_perf, "OFFLINE_PROBE_SAMPLES", (64,))
    monkeypatch.setattr(find_perf, "LOAD_START_FRACTION", 0.3)
    monkeypatch.setattr(find_perf, "MAX_LOAD_PROBES", 1)
    argv = ["run", "--model", "llama3.1-8b", "--scenario", "Interactive", "--find-perf", "--out", str(tmp_path)]
    argv += ["--model-path", str(llama3_small.model_path), "--dataset-path", str(llama3_small.dataset_path)]
    res = runner.invoke(app, [*argv, "--max-new-tokens", "4", "--min-duration-ms", "1000", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [p["scenario"] for p in doc["probes"]] == ["Offline", "Interactive"]
    loads = [p for p in doc["probes"] if p["scenario"] == "Interactive"]
    assert all(p["within_limits"] is not None and p["ttft_p99"] is not None for p in loads)
    found = doc["found"]["target_qps"]
    assert any(p["target_qps"] == found and p["validity"] == "VALID" and p["within_limits"] for p in loads)
    conf = (tmp_path / "llama3.1-8b/Interactive.user.conf").read_text()
    assert f"llama3_1-8b-interactive.Server.target_qps = {found}\n" in conf
    lines = [line for line in res.stderr.splitlines() if "probe " in line]
    assert [line.split(":")[0].strip() for line in lines] == ["probe 1", "probe 2"]
    assert "loadgen:" not in res.stderr  # the probes' own console stays quiet


def test_an_interactive_run_under_other_limits_stops(tmp_path, llama3_small):
    """LoadGen takes the Interactive limits from its mlperf.conf; a run under others (an older LoadGen runs the
    defaults; here a user.conf that loosens them) is no Interactive result: one line, nothing left behind."""
    conf = tmp_path / "user.conf"
    conf.write_text(
        "llama3_1-8b-interactive.Server.ttft_latency = 2000\n"
        "llama3_1-8b-interactive.Server.target_qps = 20\n"
        "llama3_1-8b-interactive.Server.min_duration = 10\n"
        "llama3_1-8b-interactive.Server.min_query_count = 24\n"
        "llama3_1-8b-interactive.Server.sample_concatenate_permutation = 0\n"
    )
    out = tmp_path / "runs"
    argv = ["run", "--model", "llama3.1-8b", "--scenario", "Interactive", "--mode", "performance", "--out", str(out)]
    argv += ["--model-path", str(llama3_small.model_path), "--dataset-path", str(llama3_small.dataset_path)]
    res = runner.invoke(app, [*argv, "--user-conf", str(conf), "--max-new-tokens", "2"])
    assert res.exit_code == 2
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "[run.interactive_limits]" in errors[0] and "2000.0 / 30.0 ms" in errors[0], res.output
    assert not any(out.rglob("run.json"))
    # the line names the log it read by its place in the run, not by a path in the staging folder that is gone
    assert ".staging" not in errors[0] and "seen in the run's performance/run_1/mlperf_log_detail.txt" in errors[0]
