"""A LoadGen that never returns after the SUT answered everything (runner/loadgen_watch.py): `subtool run` ends it in
one line instead of waiting for ever (CI at a2bf6da sat in LoadGen's GetLatenciesBlocking until killed by hand),
keeps the modes that finished, and a slow SUT is never taken for a stuck LoadGen.

Real LoadGen through the CLI's own path with the instant SUTs (tests/runner/instant_sut.py). LoadGen's own hang
(a latency lost in its logger) is a race seen once in thousands of runs, so SUBTOOL_LOADGEN_FAILPOINT stands in
for it: StartTest's run finishes, every sample answered, and then the call does not return."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import pytest
from support.watched_loadgen import WatchedLoadGen

from subtool.runner import loadgen_watch

PACKAGE = Path(loadgen_watch.__file__).resolve().parents[1]


def _run(tiny_checkpoint, small_squad, runs, backend, *extra):
    """`subtool run` in its own process, given two minutes: a run the watch failed to end would wait for ever."""
    argv = [sys.executable, "-m", "subtool.cli", "run", "--model-path", str(tiny_checkpoint)]
    argv += ["--dataset-path", str(small_squad), "--out", str(runs), "--run-style", "short", "--backend", backend]
    try:
        done = subprocess.run([*argv, *extra], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:  # its benchmark process dies with it (session.die_with_parent)
        pytest.fail("`subtool run` was still waiting after 120 s: the stuck LoadGen run was not ended")
    return done, " ".join((done.stdout + done.stderr).split())


def test_loadgen_stuck_after_every_answer_is_one_line_and_the_finished_mode_is_kept(
    tmp_path, monkeypatch, tiny_checkpoint, small_squad, instant_backend
):
    runs = tmp_path / "runs"
    monkeypatch.setenv(loadgen_watch.STALL_ENV, "2")
    monkeypatch.setenv(loadgen_watch.FAILPOINT_ENV, "hang-after:accuracy")
    stuck, said = _run(tiny_checkpoint, small_squad, runs, instant_backend)
    assert stuck.returncode not in (0, 130), said
    errors = [x for x in (stuck.stdout + stuck.stderr).splitlines() if x.startswith("error")]
    assert len(errors) == 1 and "[run.loadgen_stalled]" in errors[0], said
    assert "LoadGen did not finish its run 2 s after the SUT had answered all" in said, said
    assert (
        "kept the finished performance run" in said and "(seen in the run's accuracy/mlperf_log_detail.txt)" in said
    ), said
    assert "Traceback" not in said
    assert not (runs / "bert-99" / "Offline").exists()

    monkeypatch.delenv(loadgen_watch.FAILPOINT_ENV)
    again, said = _run(tiny_checkpoint, small_squad, runs, instant_backend)
    assert again.returncode == 0, said
    assert "reusing the performance run" in said, said
    assert (runs / "bert-99" / "Offline" / "accuracy" / "mlperf_log_accuracy.json").is_file()


def test_a_sut_slower_than_the_bound_is_waited_for(
    tmp_path, monkeypatch, tiny_checkpoint, small_squad, instant_backend
):
    """Every query answered 3 s after it was issued, under a 1-second bound: LoadGen waits on the SUT, which is
    no stall, and the run ends as any other."""
    monkeypatch.setenv(loadgen_watch.STALL_ENV, "1")
    result, said = _run(tiny_checkpoint, small_squad, tmp_path / "runs", "instant-late", "--mode", "accuracy")
    assert result.returncode == 0, said
    assert "loadgen_stalled" not in said


@pytest.mark.parametrize(
    "value, bound",
    [(None, 300.0), ("45", 45.0), ("0.2", 1.0), ("-5", 1.0), ("soon", 300.0), ("nan", 300.0), ("inf", 300.0)],
)
def test_the_bound_is_read_from_the_environment_and_kept_sane(monkeypatch, value, bound):
    if value is None:
        monkeypatch.delenv(loadgen_watch.STALL_ENV, raising=False)
    else:
        monkeypatch.setenv(loadgen_watch.STALL_ENV, value)
    assert loadgen_watch.stall_s() == bound and math.isfinite(bound)


def _calls(name: str) -> list[str]:
    """Where subtool's modules call `<anything>.name(...)`, as 'module:line'."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


@pytest.mark.parametrize(
    "name", ["ConstructSUT", "QuerySamplesComplete", "FirstTokenComplete", "StartTestWithLogSettings", "StartTest"]
)
def test_every_sut_and_every_run_meets_loadgen_through_the_watch(name):
    """A SUT that built its handle or answered past loadgen_watch would go uncounted: its runs could never be found
    stuck (issued > answered for ever), or worse, found stuck while it still worked."""
    assert [c for c in _calls(name) if not c.startswith("subtool/runner/loadgen_watch.py")] == []
    if name != "StartTest":
        assert _calls(name), f"the scan found no call to {name} at all"


@pytest.mark.parametrize(
    "scenario, qps, gap",
    [("Server", 0.01, 100.0), ("Server", 4.0, 0.25), ("Offline", 0.01, 0.0), ("SingleStream", 1, 0)],
)
def test_a_server_schedule_may_be_quiet_for_its_gaps(scenario, qps, gap):
    """A Server run (and Interactive, which runs LoadGen's Server scenario: the watch reads LoadGen's settings, not
    the folder name) at 0.01 QPS is quiet for 100 s on average with everything answered: the bound covers 50 such
    gaps (5,000 s) over the 300 s default; the scenarios that issue on answers have no such quiet."""
    import mlperf_loadgen as lg

    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, scenario)
    settings.server_target_qps = qps
    assert loadgen_watch._mean_gap_s(lg, settings) == pytest.approx(gap)


@pytest.mark.parametrize("token_latencies", [True, False])
def test_under_token_latencies_a_sample_answered_without_a_first_token_gets_one_first(tmp_path, token_latencies):
    """Half the samples answered through first_token + complete, half (as after a failure) through complete alone:
    under token latencies each ends with one first token, given before its answer; without them none is added."""
    import numpy as np

    lg = pytest.importorskip("mlperf_loadgen")
    from subtool.runner.harness import run_loadgen

    watched = WatchedLoadGen(lg)
    order: list[tuple[str, int]] = []

    def issue(samples):
        for s in samples:
            two = np.array([7, 8], dtype=np.int32)
            if s.index % 2 == 0 and token_latencies:
                loadgen_watch.first_token(watched, [lg.QuerySampleResponse(s.id, two.ctypes.data, 4)])
                order.append(("first", s.id))
            loadgen_watch.complete(watched, [lg.QuerySampleResponse(s.id, two.ctypes.data, two.nbytes, 2)])
            order.append(("done", s.id))

    sut = loadgen_watch.construct_sut(lg, issue, lambda: None)
    qsl = lg.ConstructQSL(16, 16, lambda s: None, lambda s: None)
    settings = lg.TestSettings()
    settings.scenario, settings.use_token_latencies = lg.TestScenario.Offline, token_latencies
    settings.offline_expected_qps, settings.min_duration_ms, settings.min_query_count = 320, 100, 1
    try:
        run = run_loadgen(sut, qsl, settings, scenario="Offline", mode="performance", outdir=tmp_path)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    assert not run.errors and len(watched.answered) >= 16 and len(set(watched.answered)) == len(watched.answered)
    if token_latencies:
        assert sorted(watched.first) == sorted(watched.answered)  # each one first token, none twice
        given = [i for i in watched.first if ("first", i) not in order]  # the ones complete() added
        assert given and len(given) < len(watched.first)
    else:
        assert watched.first == []
