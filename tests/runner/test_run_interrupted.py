"""A run stopped after a LoadGen mode keeps what it finished: the same command runs only the rest.

Real LoadGen on the tiny checkpoint; the session process is ended right after a mode finishes
(SUBTOOL_SESSION_FAILPOINT, as a crash or Slurm's SIGTERM would end it)."""

from __future__ import annotations

import json
import os

from support.procs import alive, children
from typer.testing import CliRunner

from subtool.cli import app
from subtool.runner.interrupted import KEPT_NAME

runner = CliRunner()


def _run(tiny_checkpoint, small_squad, runs, *extra):
    argv = ["run", "--model-path", str(tiny_checkpoint), "--dataset-path", str(small_squad), "--out", str(runs)]
    result = runner.invoke(app, [*argv, "--run-style", "short", *extra])
    return result, " ".join(result.output.split())


def test_finished_modes_are_kept_reused_by_the_same_settings_only_and_gone_once_the_run_is_complete(
    tmp_path, monkeypatch, tiny_checkpoint, small_squad, instant_backend
):
    """Through the CLI's own path with the instant SUT (tests/runner/instant_sut.py): what is kept and reused is
    the session's and the run's doing, whichever SUT answered; the torch-cpu SUT's short Offline query (the official
    10,833 samples, ~10 s on a CI core) took two of them here, three quarters of this test's time."""
    runs = tmp_path / "runs"
    final = runs / "bert-99" / "Offline"
    kept = runs / "bert-99" / ".Offline.interrupted"
    detail = ("performance", "run_1", "mlperf_log_detail.txt")

    # 1. ended after its performance run: that run is kept (with the short run's sized settings), nothing else
    monkeypatch.setenv("SUBTOOL_SESSION_FAILPOINT", "performance")
    backend = ("--backend", instant_backend)
    first, said = _run(tiny_checkpoint, small_squad, runs, *backend)
    assert first.exit_code != 0 and "run.crashed" in said and "kept the finished performance run" in said, said
    assert not final.exists()
    one = json.loads((kept / KEPT_NAME).read_text())
    assert list(one["modes"]) == ["performance"] and one["settings"]

    # 2. other settings (a batch size): nothing reused; ended after both modes, its own two replace the first's
    monkeypatch.setenv("SUBTOOL_SESSION_FAILPOINT", "accuracy")
    second, said = _run(tiny_checkpoint, small_squad, runs, *backend, "--batch-size", "7")
    assert second.exit_code != 0 and "other settings: not reused" in said, said
    two = json.loads((kept / KEPT_NAME).read_text())
    assert list(two["modes"]) == ["performance", "accuracy"] and two["fingerprint"] != one["fingerprint"]
    performance_log = kept.joinpath(*detail).read_bytes()

    # 3. the same command as 2: both modes reused, no LoadGen run; a complete run directory, the kept folder gone
    monkeypatch.delenv("SUBTOOL_SESSION_FAILPOINT")
    third, said = _run(tiny_checkpoint, small_squad, runs, *backend, "--batch-size", "7")
    assert third.exit_code == 0, said
    assert "reusing the performance and accuracy run" in said and "no LoadGen mode left to run" in said
    assert final.joinpath(*detail).read_bytes() == performance_log
    run = json.loads((final / "run.json").read_text())
    assert run["modes"] == two["modes"] and run["tstamps"][0] == two["started"]
    assert not kept.exists()


def test_a_keep_that_fails_never_hides_the_error_the_run_stopped_on(tmp_path, monkeypatch):
    """Keeping the finished modes runs while the run's own error (a crash, Ctrl-C) propagates: a full disk there
    is a warning, and the error the user sees is still the run's."""
    import errno

    import pytest

    from subtool.errors import SubtoolError
    from subtool.runner import api, interrupted
    from subtool.runner.session import SessionSpec

    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "user.conf").write_text("*.Offline.target_qps = 1\n")
    spec = SessionSpec("bert-99", "Offline", ["performance"], str(tmp_path), str(tmp_path), "u", str(stage), "c", "r")
    crashed = SubtoolError("the benchmark process died", rule="run.crashed")

    def child(session, stage):
        raise crashed

    def full_disk(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(api, "_run_child", child)
    monkeypatch.setattr(interrupted, "keep", full_disk)
    said = []
    with pytest.raises(SubtoolError) as err:
        api._run_keeping_finished_modes(spec, stage, tmp_path / "runs" / "Offline", "mark", said.append)
    assert err.value is crashed
    assert any("could not be kept" in line and "No space left" in line for line in said)


def test_all_force_runs_every_mode_again_even_where_an_interrupted_run_kept_one(tmp_path, monkeypatch):
    """`fresh` (what `all --force` asks): the kept modes are dropped, not reused, and the child runs them all."""
    import shutil

    from kept_runs import write_mode

    from subtool.runner import api, interrupted
    from subtool.runner.session import SessionSpec

    stage, final = tmp_path / "stage", tmp_path / "runs" / "bert-99" / "Offline"
    inputs = tmp_path / "inputs"  # the checkpoint and data set: apart from what the run writes
    for folder in (stage, inputs, final.parent):
        folder.mkdir(parents=True)
    (stage / "user.conf").write_text("*.Offline.target_qps = 1\n")
    spec = SessionSpec(
        "bert-99", "Offline", ["performance", "accuracy"], str(inputs), str(inputs), "u", str(stage), "c", "r"
    )
    where = interrupted.kept_dir(final)
    write_mode(where, "performance")
    mark = interrupted.fingerprint(spec, stage, inputs, inputs)
    entry = {"dir": "x", "result": 1.0, "result_field": "result_samples_per_second"}
    (where / KEPT_NAME).write_text(
        json.dumps({"schema": interrupted.KEPT_SCHEMA, "fingerprint": mark, "modes": {"performance": entry}})
    )
    asked = []

    def child(session, stage):
        asked.append(list(session.modes))
        return {"modes": {m: {"dir": m} for m in session.modes}, "tstamps": ["a", "b"]}

    monkeypatch.setattr(api, "_run_child", child)
    reused = api._run_keeping_finished_modes(spec, stage, final, mark, lambda *a: None)
    assert asked == [["accuracy"]] and reused["modes"]["performance"] == entry  # not fresh: reused
    write_mode(where, "performance")
    (where / KEPT_NAME).write_text(
        json.dumps({"schema": interrupted.KEPT_SCHEMA, "fingerprint": mark, "modes": {"performance": entry}})
    )
    shutil.rmtree(stage / "performance", ignore_errors=True)  # the first call's copy of the kept run
    api._run_keeping_finished_modes(spec, stage, final, mark, lambda *a: None, fresh=True)
    assert asked[-1] == ["performance", "accuracy"] and not where.exists()


def _failing_checkpoint(tiny_checkpoint, tmp_path):
    """A checkpoint whose config asks transformers for tuples (return_dict: false): it passes the checks, and the
    SUT's every batch fails reading start_logits from one."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "return_dict": False}))
    return model


def test_a_mode_in_which_the_sut_failed_is_never_kept_nor_reused_as_a_result(tmp_path, tiny_checkpoint, small_squad):
    """The SUT answers LoadGen empty once it fails (or LoadGen waits forever), so the mode ends, VALID at an absurd
    rate: it was kept as finished, and the same command then exited 0 with ~700,000 samples/s from a model that
    answered nothing."""
    model = _failing_checkpoint(tiny_checkpoint, tmp_path)
    runs = tmp_path / "runs"
    for _ in range(2):
        result, said = _run(model, small_squad, runs)
        assert result.exit_code == 2 and "[run.sut_error]" in said, said
        assert "the SUT failed during the run" in said and "AttributeError" in said, said
        assert "kept the finished" not in said and "reusing" not in said, said
    assert not (runs / "bert-99" / "Offline").exists()
    assert not (runs / "bert-99" / ".Offline.interrupted").exists()


def _session_children(parent: int) -> list[int]:
    """The live LoadGen session processes `parent` started (Linux /proc)."""
    return children(parent, b"subtool.runner.session")


def test_the_session_process_dies_with_a_subtool_killed_by_sigkill(tmp_path, tiny_checkpoint, small_squad):
    """SIGKILL leaves subtool no way to end its children: the session lived on, writing into a staging folder the
    next run removed, beside the next run's own benchmark."""
    import os
    import signal
    import subprocess
    import sys
    import time

    argv = ["run", "--model-path", str(tiny_checkpoint), "--dataset-path", str(small_squad), "--out", str(tmp_path)]
    argv += ["--mode", "performance", "--min-duration-ms", "120000"]  # a session that would outlive the wait
    proc = subprocess.Popen(
        [sys.executable, "-m", "subtool.cli", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    sessions: list[int] = []
    while not sessions and time.monotonic() < deadline and proc.poll() is None:
        sessions = _session_children(proc.pid)
        time.sleep(0.05)
    assert sessions, "no session process was seen"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20
    while alive(sessions[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(sessions[0])


def test_a_command_the_mcp_server_started_ends_when_the_server_is_killed(tmp_path, tiny_checkpoint, small_squad):
    """The MCP server stops its command when a call is cancelled; killed itself (SIGKILL, the OOM killer, a client
    that took it down), it could not: the `subtool run` it started ran on, with its benchmark process, to the end
    (minutes of GPU time here, hours on a cluster), writing into a staging folder nobody would collect."""
    import signal
    import subprocess
    import sys
    import time

    argv = ["run", "--model-path", str(tiny_checkpoint), "--dataset-path", str(small_squad), "--out", str(tmp_path)]
    # SingleStream: once its run has started, the command writes nothing for the 120 s it lasts
    argv += ["--mode", "performance", "--scenario", "SingleStream", "--min-duration-ms", "120000"]
    server_code = "import anyio, sys\nfrom subtool.mcp_calls import run_child\n"
    server_code += "anyio.run(run_child, [sys.executable, '-m', 'subtool.cli', *sys.argv[1:]])\n"
    server = subprocess.Popen([sys.executable, "-c", server_code, *argv], start_new_session=True)
    cli: list[int] = []
    sessions: list[int] = []
    try:
        deadline = time.monotonic() + 120
        running = False  # LoadGen's run under way: the command writes nothing for a while
        while not running and time.monotonic() < deadline and server.poll() is None:
            cli = cli or children(server.pid, b"subtool.cli")
            sessions = sessions or (_session_children(cli[0]) if cli else [])
            running = bool(sessions) and bool(list(tmp_path.rglob("mlperf_log_detail.txt")))
            time.sleep(0.05)
        assert running, "no benchmark process was seen"
        time.sleep(1)
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        deadline = time.monotonic() + 20  # SIGTERM's clean-up: seconds; the run itself: 120 s
        while (alive(cli[0]) or alive(sessions[0])) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(cli[0]) and not alive(sessions[0]), "the command outlived the server that started it"
        assert not list((tmp_path / "bert-99").glob(".*staging*"))  # it cleaned up as on SIGTERM
    finally:
        for pid in cli + sessions:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
