"""`subtool all` end to end on real files and real LoadGen, and resuming after a kill at every stage."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("mlperf_loadgen")

STAGES_BEFORE_PUBLISH = ("run", "package", "check", "pack")


def _all(out: Path, *extra: str, env: dict | None = None, timeout: int = 600):
    """`subtool all` on the embedded demo (the official sample count, so the checker can pass it)."""
    cmd = [sys.executable, "-m", "subtool.cli", "all", "--submitter", "TeamX", "--out", str(out), *extra]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)


def _artifact_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "artifacts").iterdir())}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One uninterrupted `subtool all`, the baseline every resumed run is compared with."""
    out = tmp_path_factory.mktemp("all") / "out"
    proc = _all(out, "--json")
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout), proc.stderr


def test_all_produces_tree_check_and_five_artifacts(reference_run):
    out, doc, stderr = reference_run
    assert doc["check_ok"] is True and doc["exit_code"] == 0
    assert {f["rule"] for f in doc["findings"] if f["severity"] == "waived"} == {"perf.min_duration"}
    names = {Path(p).name for p in doc["artifacts"].values()}
    for suffix in (".tar.gz", "_summary.json", ".run", ".tstamps", ".md"):
        assert f"mlperf_submission_short{suffix}" in names
    state = json.loads((out / "state.json").read_text())
    assert all(state["stages"][s]["status"] == "done" for s in STAGES_BEFORE_PUBLISH)
    tree = out / "submission" / "open" / "TeamX"
    assert (tree / "systems").is_dir() and list((tree / "results").iterdir())
    # the one-screen summary names the verdict and the waived rule
    assert "PASS" in stderr and "perf.min_duration" in stderr
    tstamps = (out / "artifacts" / "mlperf_submission_short.tstamps").read_text().splitlines()
    assert len(tstamps) == 2 and all(line.endswith(time.strftime("%Y")) for line in tstamps)


def test_rerun_skips_every_finished_stage(reference_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference_run[0], out)
    before = _artifact_bytes(out)
    run_json = (out / "runs/bert-99/Offline/run.json").read_bytes()
    proc = _all(out, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert all(doc["stages"][s] == "skipped (unchanged)" for s in STAGES_BEFORE_PUBLISH), doc["stages"]
    assert (out / "runs/bert-99/Offline/run.json").read_bytes() == run_json
    assert _artifact_bytes(out) == before


@pytest.mark.parametrize("stage", ["package", "check", "pack"])
@pytest.mark.parametrize("point,action", [("start", "kill"), ("end", "kill"), ("start", "int")])
def test_interrupted_stage_resumes_to_the_same_artifacts(reference_run, tmp_path,
                                                        stage, point, action):
    """A kill after the benchmark ran never re-runs it, and the resumed artifacts equal an uninterrupted run's."""
    ref_out = reference_run[0]
    out = tmp_path / "out"
    shutil.copytree(ref_out, out)
    # forget every stage after run, as if this were the first time they ran
    state = json.loads((out / "state.json").read_text())
    for s in ("package", "check", "pack"):
        state["stages"].pop(s, None)
    (out / "state.json").write_text(json.dumps(state))
    for sub in ("submission", "full_logs", "check", "artifacts"):
        shutil.rmtree(out / sub, ignore_errors=True)
    run_json = (out / "runs/bert-99/Offline/run.json").read_bytes()

    killed = _all(out, env={"SUBTOOL_FAILPOINT": f"{stage}:{point}:{action}"})
    assert killed.returncode == (-9 if action == "kill" else 130), killed.stderr
    if action == "int":
        assert "run the same command again" in killed.stderr or "resume" in killed.stderr
    leftovers = [p for p in out.rglob(".*") if p.name.endswith(".staging") or ".tmp" in p.name]
    if action == "int":
        assert leftovers == []

    resumed = _all(out, "--json")
    assert resumed.returncode == 0, resumed.stderr
    doc = json.loads(resumed.stdout)
    assert doc["stages"]["run"] == "skipped (unchanged)"
    assert (out / "runs/bert-99/Offline/run.json").read_bytes() == run_json
    assert _artifact_bytes(out).keys() == _artifact_bytes(ref_out).keys()
    ref_tar = (ref_out / "artifacts/mlperf_submission_short.tar.gz")
    # The tree records its own location in the summary, so compare the tarball, which holds only the tree.
    assert (out / "artifacts/mlperf_submission_short.tar.gz").read_bytes() == ref_tar.read_bytes()
    assert not [p for p in out.rglob("*.staging")]


def test_killed_during_the_benchmark_resumes_and_leaves_no_partial_run(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "subtool.cli", "all", "--submitter", "TeamX", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    runs = out / "runs" / "bert-99"
    while time.time() < deadline:
        if runs.is_dir() and any(p.name.endswith(".staging") and (p / "user.conf").exists()
                                 for p in runs.iterdir()):
            break
        time.sleep(0.05)
    time.sleep(1.0)   # inside the LoadGen run
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (runs / "Offline").exists()      # no half-written run directory
    state = json.loads((out / "state.json").read_text())
    assert state["stages"]["run"]["status"] == "running"
    resumed = _all(out, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert (runs / "Offline" / "run.json").is_file()
    assert [p.name for p in runs.iterdir()] == ["Offline"]   # the abandoned staging directory is gone


def test_bad_submitter_and_stage_names_are_one_line_errors(tmp_path):
    for args, words in ((["--submitter", "Team X"], "submitter"), (["--submitter", "a/b"], "submitter"),
                        (["--submitter", "T", "--only", "bake"], "not a stage")):
        proc = subprocess.run([sys.executable, "-m", "subtool.cli", "all", *args, "--out", str(tmp_path / "o")],
                              capture_output=True, text=True)
        assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "submission").exists()


def test_official_checker_reports_only_the_short_run_duration(reference_run, tmp_path, official_checker):
    tree = tmp_path / "tree"
    shutil.copytree(reference_run[0] / "submission", tree)
    proc = subprocess.run([sys.executable, "-m", "submission_checker.main", "--input", str(tree),
                           "--version", "v6.1"], cwd=official_checker, capture_output=True, text=True)
    errors = [line for line in proc.stderr.splitlines() if " ERROR]" in line]
    duration = [e for e in errors if "Test duration less than 600s" in e]
    others = [e for e in errors if e not in duration and "NoResults" not in e and "SUMMARY" not in e
              and "Some performance checks" not in e]
    assert duration and not others, errors
