"""No traceback anywhere: every command on garbage input ends in one error line and a non-zero exit (or, for
`score`, refuses the bad hand-in by name), and an unexpected exception is reported as a bug in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

JUNK = bytes(range(256)) * 8 + b"\x00\xff\xfe" * 100


def subtool(*args: str, cwd: Path, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "subtool.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


@pytest.fixture()
def garbage(tmp_path):
    """Garbage of every kind a command may be pointed at: binary junk, empty files, directories where files
    are expected, files where directories are expected, and a tree whose every file is junk."""
    g = tmp_path
    (g / "junk.bin").write_bytes(JUNK)
    for name in ("junk.json", "junk.toml", "junk.tar.gz"):
        (g / name).write_bytes(JUNK)
    (g / "empty").write_bytes(b"")
    (g / "empty.tar.gz").write_bytes(b"")
    (g / "dir").mkdir()
    (g / "dir.json").mkdir()
    res = g / "tree/open/TeamX/results/sys/bert-99/Offline"
    for sub in ("performance/run_1", "accuracy"):
        (res / sub).mkdir(parents=True)
    (res / "performance/run_1/mlperf_log_detail.txt").write_bytes(JUNK)
    (res / "performance/run_1/mlperf_log_summary.txt").mkdir()  # a directory where a log belongs
    (res / "accuracy/mlperf_log_accuracy.json").write_bytes(b"")
    (res / "accuracy/accuracy.txt").write_bytes(JUNK)
    (g / "tree/open/TeamX/systems").mkdir(parents=True)
    (g / "tree/open/TeamX/systems/sys.json").write_bytes(JUNK)
    (g / "run/run.json").parent.mkdir()
    (g / "run/run.json").write_bytes(JUNK)
    (g / "run-dir-json/run.json").mkdir(parents=True)
    (g / "mlc/sys/bert-99/Offline/performance/run_1").mkdir(parents=True)
    (g / "mlc/sys/system_meta.json").write_bytes(JUNK)
    (g / "mlc/sys/bert-99/Offline/performance/run_1/mlperf_log_detail.txt").write_bytes(JUNK)
    (g / "state-out").mkdir()
    (g / "state-out/state.json").write_bytes(JUNK)
    return g


PERF = "tree/open/TeamX/results/sys/bert-99/Offline/performance/run_1"
ACC = "tree/open/TeamX/results/sys/bert-99/Offline/accuracy"
COMMANDS = {
    "check": [
        ["check", "junk.bin"],
        ["check", "empty"],
        ["check", "tree"],
        ["check", "tree", "--version", "v5.0"],
        ["check", "tree", "--csv", "dir"],
        ["check", "tree", "--report", "junk.bin/r.json"],
    ],
    "pack": [
        ["pack", "junk.bin", "--out", "o"],
        ["pack", "dir", "--out", "o"],
        ["pack", "tree", "--out", "o"],
        ["pack", "--verify", "junk.tar.gz"],
        ["pack", "--verify", "empty"],
        ["pack", "--verify", "dir"],
        ["pack", "tree", "--out", "junk.bin"],
    ],
    "package": [
        ["package", "--from", "junk.bin", "--submitter", "T", "--out", "o"],
        ["package", "--from", "dir", "--submitter", "T", "--out", "o"],
        ["package", "--from", "run", "--submitter", "T", "--out", "o"],
        ["package", "--from", "run-dir-json", "--submitter", "T", "--out", "o"],
        ["package", "--from", "mlc", "--submitter", "T", "--out", "o"],
        [
            "package",
            "--perf",
            PERF,
            "--acc",
            ACC,
            "--model",
            "bert-99",
            "--scenario",
            "Offline",
            "--submitter",
            "T",
            "--out",
            "o",
        ],
        ["package", "--perf", "junk.bin", "--acc", "empty", "--model", "bert-99", "--submitter", "T", "--out", "o"],
        ["package", "--from", "run", "--submitter", "T", "--out", "o", "--system-file", "junk.toml"],
    ],
    "system": [
        ["system", "--validate", "junk.json"],
        ["system", "--validate", "dir"],
        ["system", "--validate", "empty"],
        ["system", "--file", "junk.toml"],
        ["system", "--file", "dir"],
        ["system", "--out", "dir"],
    ],
    "score": [["score", "dir", "--out", "o"], ["score", "junk.tar.gz", "--out", "junk.bin"]],
    "ci": [["ci", "dir", "--base-ref", "x"], ["ci", "junk.bin", "--base-ref", "x"]],
    "publish": [
        ["publish", "junk.bin", "--fork", "file:///nonexistent", "--dry-run"],
        ["publish", "dir", "--fork", "file:///nonexistent", "--dry-run"],
        ["publish", "tree", "--fork", "junk.bin", "--dry-run", "--cache", "junk.bin/c"],
    ],
    "all": [
        ["all", "--submitter", "T", "--out", "state-out", "--only", "package"],
        ["all", "--submitter", "T", "--out", "junk.bin"],
        ["all", "--submitter", "T", "--out", "o", "--system-file", "junk.toml", "--from-stage", "package"],
    ],
    "run": [
        ["run", "--dataset-path", "junk.json", "--model-path", "dir", "--out", "o"],
        ["run", "--dataset-path", "dir", "--model-path", "dir", "--out", "o"],
    ],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_on_garbage_ends_in_one_line(garbage, command):
    for args in COMMANDS[command]:
        proc = subtool(*args, cwd=garbage)
        both = proc.stdout + proc.stderr
        assert "Traceback" not in both, (args, both)
        assert proc.returncode in (1, 2, 3), (args, proc.returncode, both)  # never 0, never 70 (a bug)
        if proc.returncode != 1:  # 1 = the checker's findings, printed as a report
            assert len(error_lines(proc.stderr)) == 1, (args, proc.stderr)


def test_score_refuses_garbage_hand_ins_by_name(garbage):
    out = garbage / "board"
    proc = subtool("score", "junk.tar.gz", "empty.tar.gz", "--out", out, cwd=garbage)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("not ranked") == 2 and "2 refused" in proc.stderr


BUG = """\
import sys
import subtool.checker.api as api
def broken(*a, **k):
    raise ValueError("an internal invariant broke\\nsecond line")
api.check_tree = broken
from subtool.cli import main
sys.argv = ["subtool", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_exception_is_one_line_saying_it_is_a_bug(tmp_path, debug):
    (tmp_path / "tree/open/TeamX/results").mkdir(parents=True)
    env = (
        {**os.environ, "SUBTOOL_DEBUG": "1"} if debug else {k: v for k, v in os.environ.items() if k != "SUBTOOL_DEBUG"}
    )
    proc = subprocess.run(
        [sys.executable, "-c", BUG, "check", "tree"], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 70, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "bug" in lines[0] and "ValueError" in lines[0] and "subtool check" in lines[0]
    assert "second line" not in lines[0]
    if debug:
        assert "Traceback" in proc.stderr  # asked for: the developer gets it
    else:
        assert "Traceback" not in proc.stderr and "SUBTOOL_DEBUG=1" in proc.stderr


WATCHDOG = """\
import ctypes, sys
from subtool import cli_signals, fsutil
cli_signals.SIGNAL_GRACE_S = 0.5
cli_signals._install_signal_handlers()
import subprocess
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
with fsutil.staged_directory(sys.argv[1]) as d:
    (d / "half").write_text("half written")
    print(d, child.pid, flush=True)
    mutex = ctypes.create_string_buffer(64)          # PTHREAD_MUTEX_INITIALIZER is all zeros
    libc = ctypes.CDLL(None)
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)                   # blocks in native code, as LoadGen's StartTest does
"""


def test_sigterm_while_the_main_thread_is_stuck_in_native_code(tmp_path):
    """Python runs the SIGTERM handler only when the main thread runs Python code: the watchdog exits 143 and
    removes the staging directory even while the main thread never returns from native code."""
    final = tmp_path / "result"
    proc = subprocess.Popen(
        [sys.executable, "-c", WATCHDOG, str(final)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    staging, child = proc.stdout.readline().split()
    assert Path(staging).is_dir()
    time.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert time.monotonic() - t0 < 10
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # neither the staging directory nor the result
    _wait_gone(int(child))  # the child (LoadGen's session) does not write on


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return  # a zombie: dead, waiting for init to reap it
        except FileNotFoundError:
            return
        time.sleep(0.05)
    raise AssertionError(f"child {pid} still running")


@pytest.mark.parametrize(
    "args, rule",
    [
        (["all", "--submitter", "a/b", "--out", "o"], "tree.bad_name"),
        (["package", "--from", "nowhere", "--submitter", "T", "--out", "o"], "import.not_found"),
        (["check", "nowhere"], "layout.tree"),
        (["run", "--threads", "-1"], "cli.usage"),
        (["publish", "nowhere", "--fork", "https://x:t@github.com/a/b"], None),
        (["run", "--no-such-option"], "cli.usage"),
    ],
)
def test_json_asked_gets_a_json_error_object_on_stdout(tmp_path, args, rule):
    # found by probing: with --json, stdout was empty on every error, so a script's json.loads(stdout) failed
    import json

    proc = subtool(*args, "--json", cwd=tmp_path)
    assert proc.returncode != 0
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["exit_code"] == proc.returncode and doc["error"]["message"]
    assert rule is None or doc["error"]["rule"] == rule
    assert len(error_lines(proc.stderr)) == 1 and "Traceback" not in proc.stderr


NAP = """\
import sys, time
import typer
from subtool import cli

@cli.app.command("nap")
def nap(json_out: bool = typer.Option(False, "--json")) -> None:
    print("ready", file=sys.stderr, flush=True)
    time.sleep(60)

sys.argv = ["subtool", "nap", "--json"]
cli.main()
"""


# serial: the command's main thread has the signal watchdog's 5 s grace (cli_signals.SIGNAL_GRACE_S) to print its
# JSON; in CI at b0bf983, beside the other workers' load, the watchdog ended it first (exit 143, nothing on stdout)
@pytest.mark.serial
@pytest.mark.parametrize(
    ("sig", "code", "said"),
    [(signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGINT, 130, "interrupted (Ctrl-C)")],
)
def test_json_after_a_signal_says_what_ended_the_command(sig, code, said):
    """--json printed {"ok": false, "exit_code": 143, "error": null}: a script reading it learnt nothing."""
    proc = subprocess.Popen(  # SIGINT as a terminal gives it (a test run in the background has it ignored)
        [sys.executable, "-c", NAP],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr.readline().strip() == "ready"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code and out.strip(), f"stdout {out!r}, stderr {err!r}"
    error = json.loads(out)["error"]
    assert error["rule"] == "cli.interrupted" and error["message"].startswith(said)
