"""How the benchmark process ends. Ctrl-C reaches it too (a terminal signals the whole process group): in its
first seconds, while it imports torch and loads the model, it printed a Python traceback before the parent's
one-line report. LoadGen's errors, one per sample, come back as one readable line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import asdict

from subtool.runner.session import SessionSpec


def test_ctrl_c_while_the_benchmark_process_starts_is_exit_130_without_a_traceback(
    tiny_checkpoint, small_squad, tmp_path
):
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "user.conf").write_text("*.Offline.target_qps = 1\n")
    spec = SessionSpec(
        "bert-99",
        "Offline",
        ["performance"],
        str(tiny_checkpoint),
        str(small_squad),
        str(stage / "user.conf"),
        str(stage),
        str(tmp_path / "cache"),
        str(tmp_path / "result.json"),
    )
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(asdict(spec)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "subtool.runner.session", str(spec_file)],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(1.0)  # past the interpreter's start, inside the session: importing torch, reading the checkpoint
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err


def test_loadgen_errors_are_said_once_each_with_their_count():
    """LoadGen logs one error per sample: the line held the same message 8 times over (49 kB for 8 samples)."""
    from subtool.runner.session import loadgen_errors

    said = loadgen_errors(["Number of tokens need to be greater than 1"] * 8 + ["other"])
    assert said == "Number of tokens need to be greater than 1 (×8); other"
    many = loadgen_errors([f"e{i}" for i in range(9)])
    assert many == "e0; e1; e2; e3; e4; and 4 other messages"
