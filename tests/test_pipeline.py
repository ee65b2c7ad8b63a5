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
from support.cli_child import write_fault_script

pytest.importorskip("torch")
pytest.importorskip("mlperf_loadgen")

STAGES_BEFORE_PUBLISH = ("run", "package", "check", "pack")


def _all(out: Path, *extra: str, env: dict | None = None, timeout: int = 600):
    """`subtool all` on the embedded demo (the official sample count, so the checker can pass it) unless `extra`
    names a checkpoint and data set."""
    cmd = [sys.executable, "-m", "subtool.cli", "all", "--submitter", "TeamX", "--out", str(out), *extra]
    full_env = {**os.environ, **(env or {})}
    # Ctrl-C as a terminal gives it: a test run started in the background (`pytest … &`) has SIGINT ignored,
    # which its children inherit and Python then keeps, and the SIGINT cases would see no interrupt at all
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=full_env, preexec_fn=_default_sigint
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _artifact_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "artifacts").iterdir())}


@pytest.fixture(scope="module")
def reference_run(bert_demo_all):
    """One uninterrupted `subtool all --json`, the baseline every resumed run is compared with: the session's bert
    demo run (tests/support/submission_fixtures.py), which the two-benchmark tests build on too. Read-only: tests
    copy it before they change anything."""
    out, run = bert_demo_all
    return out, run["doc"], run["stderr"]


def test_all_produces_tree_check_and_five_artifacts(reference_run):
    out, doc, stderr = reference_run
    assert doc["check_ok"] is True and doc["exit_code"] == 0 and doc["ok"] is True
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
    # the pack command in .run names the runs folder once (it listed this run's folder and its parent)
    script = (out / "artifacts" / "mlperf_submission_short.run").read_text()
    assert script.count("--runs ") == 1 and "runs/bert-99/Offline --runs" not in script, script


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


@pytest.mark.parametrize("artifact", ["mlperf_submission_short.tar.gz", "mlperf_submission_short.md"])
def test_an_artifact_damaged_since_is_packed_again_never_handed_in(reference_run, tmp_path, artifact):
    """Only the files' presence was tested: a tarball cut to 1,000 bytes was listed as the hand-in, exit 0."""
    out = tmp_path / "out"
    shutil.copytree(reference_run[0], out)
    with open(out / "artifacts" / artifact, "r+b") as f:
        f.truncate(1000)
    proc = _all(out, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["stages"]["pack"].startswith("done") and doc["stages"]["run"] == "skipped (unchanged)", doc["stages"]
    verify = subprocess.run(
        [sys.executable, "-m", "subtool.cli", "pack", "--verify", doc["artifacts"]["tarball"]],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_an_out_copied_elsewhere_reports_its_own_artifacts(reference_run, tmp_path):
    """state.json held absolute paths: the copy's --json named the original folder's tarball."""
    moved = tmp_path / "moved"
    shutil.copytree(reference_run[0], moved)
    proc = _all(moved, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert all(doc["stages"][s] == "skipped (unchanged)" for s in STAGES_BEFORE_PUBLISH), doc["stages"]
    assert doc["artifacts"] and all(Path(p).parent == moved / "artifacts" for p in doc["artifacts"].values())


def _only_entry(state: dict, stage: str) -> dict:
    [entry] = state["finished"][stage].values()  # one tree in the reference run
    return entry


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s["finished"].update(run=[1]),
        lambda s: s["finished"].update(pack="x"),
        lambda s: _only_entry(s, "pack")["outputs"].update(files=["a"], names=["b"], artifacts=["c"]),
        lambda s: _only_entry(s, "check").pop("outputs"),
        lambda s: _only_entry(s, "check").pop("at"),  # KeyError 'at'
        lambda s: _only_entry(s, "package")["outputs"].update(result_dirs=[1]),  # TypeError
    ],
    ids=["run-a-list", "pack-a-string", "outputs-lists", "no-outputs", "no-time", "result-dirs-numbers"],
)
def test_a_state_json_of_the_wrong_shape_runs_stages_again_instead_of_failing(reference_run, tmp_path, damage):
    """Each of these ended every later `all` with an internal error (exit 70) until state.json was deleted."""
    out = tmp_path / "out"
    shutil.copytree(reference_run[0], out)
    state = json.loads((out / "state.json").read_text())
    damage(state)
    (out / "state.json").write_text(json.dumps(state))
    proc = _all(out, "--json")
    assert proc.returncode == 0, proc.stderr
    assert "[internal]" not in proc.stderr


def test_a_state_json_that_cannot_be_read_is_said_before_every_stage_runs_again(reference_run, tmp_path):
    """Cut short, it was passed over without a word and the benchmark ran again."""
    out = tmp_path / "out"
    shutil.copytree(reference_run[0], out)
    (out / "state.json").write_bytes((out / "state.json").read_bytes()[:100])
    proc = _all(out, "--only", "check")
    assert "state.json is cut short or damaged: every stage runs again" in " ".join((proc.stdout + proc.stderr).split())


@pytest.mark.parametrize("stage", ["package", "check", "pack"])
@pytest.mark.parametrize("point,action", [("start", "kill"), ("end", "kill"), ("start", "int")])
def test_interrupted_stage_resumes_to_the_same_artifacts(reference_run, tmp_path, stage, point, action):
    """A kill after the benchmark ran never re-runs it, and the resumed artifacts equal an uninterrupted run's."""
    ref_out = reference_run[0]
    out = tmp_path / "out"
    shutil.copytree(ref_out, out)
    # forget every stage after run, as if this were the first time they ran
    state = json.loads((out / "state.json").read_text())
    for s in ("package", "check", "pack"):
        state["stages"].pop(s, None)
        state.get("finished", {}).pop(s, None)
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
    ref_tar = ref_out / "artifacts/mlperf_submission_short.tar.gz"
    # The tree records its own location in the summary, so compare the tarball, which holds only the tree.
    assert (out / "artifacts/mlperf_submission_short.tar.gz").read_bytes() == ref_tar.read_bytes()
    assert not [p for p in out.rglob("*.staging")]


def test_killed_during_the_benchmark_resumes_and_leaves_no_partial_run(tmp_path, tiny_checkpoint, small_squad):
    """SIGKILL inside LoadGen's performance run, then the same command again. On the small checkpoint and data
    set, SingleStream with a fixed minimum duration: the performance run lasts at least 2 s whatever the
    machine's speed, so the kill (as soon as LoadGen has opened its log in the staging folder) lands inside it,
    and the resumed run takes seconds rather than a whole demo."""
    out = tmp_path / "out"
    conf = tmp_path / "user.conf"
    conf.write_text(
        "bert.SingleStream.target_latency = 0.1\nbert.SingleStream.min_duration = 2000\n"
        "bert.SingleStream.min_query_count = 64\n"
    )
    args = ["--model-path", str(tiny_checkpoint), "--dataset-path", str(small_squad), "--division", "open"]
    args += ["--scenario", "SingleStream", "--user-conf", str(conf)]
    cmd = [sys.executable, "-m", "subtool.cli", "all", "--submitter", "TeamX", "--out", str(out), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    runs = out / "runs" / "bert-99"
    _wait_for(
        lambda: any((p / "performance/run_1/mlperf_log_detail.txt").exists() for p in _run_staging(runs)),
        120,
        "LoadGen's performance run",
    )
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (runs / "SingleStream").exists()  # no half-written run directory
    state = json.loads((out / "state.json").read_text())
    assert state["stages"]["run"]["status"] == "running"
    resumed = _all(out, *args, "--json")
    doc = json.loads(resumed.stdout)
    assert all(doc["stages"][s].startswith("done") for s in STAGES_BEFORE_PUBLISH), doc["stages"]
    # the 45-sample data set is not bert-99's 10,833: that is the checker's one error, so the exit code is 1
    errors = {f["rule"] for f in doc["findings"] if f["severity"] == "error"}
    assert resumed.returncode == 1 and errors == {"acc.dataset_size"}, resumed.stderr
    assert (runs / "SingleStream" / "run.json").is_file()
    assert [p.name for p in runs.iterdir()] == ["SingleStream"]  # the abandoned staging directory is gone


def test_bad_submitter_and_stage_names_are_one_line_errors(tmp_path):
    for args, words in (
        (["--submitter", "Team X"], "submitter"),
        (["--submitter", "a/b"], "submitter"),
        (["--submitter", "T", "--only", "bake"], "not a stage"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "subtool.cli", "all", *args, "--out", str(tmp_path / "o")],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "submission").exists()


@pytest.mark.parametrize(
    "args, rule",
    [
        (["--name", "../x"], "tree.bad_name"),
        (["--system-file", "/nonexistent/system.toml"], "system.bad_overrides"),
        (["--fork", "file:///srv/fork.git", "--upstream", "a/b/c"], "publish.upstream"),
        (["--division", "closed"], "package.demo_closed"),
        (["--fork", "https://github.com/a/b?access_token=ghp_SECRET"], "publish.fork_url"),
    ],
)
def test_options_later_stages_read_are_refused_before_the_run(tmp_path, args, rule):
    # each was only found after minutes of benchmark (a token in --fork was written into run.json, the .run
    # file, the READMEs and the tarball, then pushed)
    out = tmp_path / "o"
    proc = subprocess.run(
        [sys.executable, "-m", "subtool.cli", "all", "--submitter", "TeamX", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and f"[{rule}]" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "loadgen" not in proc.stderr and not (out / "runs").exists() and "ghp_SECRET" not in proc.stderr


def test_official_checker_reports_only_the_short_run_duration(reference_run, tmp_path, official_checker):
    tree = tmp_path / "tree"
    shutil.copytree(reference_run[0] / "submission", tree)
    proc = subprocess.run(
        [sys.executable, "-m", "submission_checker.main", "--input", str(tree), "--version", "v6.1"],
        cwd=official_checker,
        capture_output=True,
        text=True,
    )
    errors = [line for line in proc.stderr.splitlines() if " ERROR]" in line]
    duration = [e for e in errors if "Test duration less than 600s" in e]
    others = [
        e
        for e in errors
        if e not in duration and "NoResults" not in e and "SUMMARY" not in e and "Some performance checks" not in e
    ]
    assert duration and not others, errors


# ------------------------------------------------------------------ one writer per --out, SIGTERM, leftovers
def _wait_for(predicate, timeout: float = 300, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _run_staging(runs: Path) -> list[Path]:
    return [p for p in runs.iterdir() if p.name.endswith(".staging")] if runs.is_dir() else []


def _leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*") if p.name.endswith((".staging", ".tmp")) or "staging-" in p.name]


def test_a_second_command_on_one_out_stops_or_waits_and_sigterm_cleans_up(tmp_path):
    """Two real `subtool all` on one --out: the second stops at once naming the first's pid (or queues with
    --wait); SIGTERM (Slurm's time limit) to the first records the stage as interrupted, leaves nothing, 143."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "subtool.cli", "all", "--submitter", "TeamX", "--out", str(out)]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    runs = out / "runs" / "bert-99"
    _wait_for(lambda: any((p / "user.conf").exists() for p in _run_staging(runs)), what="the first run's staging")
    assert (out / ".subtool.lock").read_text().strip() == str(first.pid)

    t0 = time.time()
    second = _all(out)
    errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert second.returncode == 2 and len(errors) == 1 and f"pid {first.pid}" in errors[0], second.stderr
    assert time.time() - t0 < 30
    assert _run_staging(runs), "the second command touched the first one's staging folder"

    waiter_log = tmp_path / "waiter.err"
    with open(waiter_log, "w") as err:
        waiter = subprocess.Popen(cmd + ["--wait", "--only", "check"], stdout=subprocess.DEVNULL, stderr=err)
    _wait_for(lambda: f"waiting for subtool pid {first.pid}" in waiter_log.read_text(), 60, "--wait to queue")

    t0 = time.time()
    first.send_signal(signal.SIGTERM)
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 143, first_err
    assert time.time() - t0 < 30
    assert "terminated (SIGTERM) in run" in first_err and "Traceback" not in first_err
    assert json.loads((out / "state.json").read_text())["stages"]["run"]["status"] == "interrupted"
    assert not (runs / "Offline").exists() and _leftovers(out) == []

    assert waiter.wait(timeout=120) == 2  # it got OUT once the first was gone: there is no finished run
    assert "no finished run" in waiter_log.read_text()


def test_resume_is_keyed_by_model_and_scenario(reference_run, tmp_path):
    """Another benchmark run (here interrupted) in the same --out does not make the finished one run again."""
    out = tmp_path / "out"
    shutil.copytree(reference_run[0], out)
    run_json = (out / "runs/bert-99/Offline/run.json").read_bytes()
    other = subprocess.Popen(
        [sys.executable, "-m", "subtool.cli", "all", "--submitter", "TeamX", "--out", str(out), "--model", "bert-99.9"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for(lambda: _run_staging(out / "runs" / "bert-99.9"), what="the bert-99.9 run")
    other.send_signal(signal.SIGTERM)
    assert other.wait(timeout=120) == 143
    assert json.loads((out / "state.json").read_text())["stages"]["run"]["for"] == "bert-99.9/Offline"

    proc = _all(out, "--json")
    assert proc.returncode == 0, proc.stderr
    stages = json.loads(proc.stdout)["stages"]
    assert all(stages[s] == "skipped (unchanged)" for s in STAGES_BEFORE_PUBLISH), stages
    assert (out / "runs/bert-99/Offline/run.json").read_bytes() == run_json


def test_the_next_run_removes_what_interrupted_writers_left(reference_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference_run[0], out)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = [
        out / "artifacts" / f".mlperf_submission_short.{dead.pid}.k2x9q_7a.staging" / "mlperf_submission_short.tar.gz",
        out / "submission" / f".subtool-staging-open--TeamX--{dead.pid}" / "open" / "TeamX" / "x",
        out / "full_logs" / "open" / f".mlperf_log_accuracy.json.{dead.pid}.tmp",
        out / f".state.json.{dead.pid}.a1b2c3.tmp",
    ]
    for path in left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half written")
    live = out / "check" / f".summary.csv.{os.getpid()}.zz.tmp"  # a writer that is still alive: kept
    live.write_text("being written")
    mine = out / "notes" / f".draft.{dead.pid}.tmp"  # the user's, in a folder subtool does not write: kept
    mine.parent.mkdir()
    mine.write_text("important")
    proc = _all(out, "--json")
    assert proc.returncode == 0, proc.stderr
    assert sorted(_leftovers(out)) == sorted([live, mine])
    assert (out / "artifacts" / "mlperf_submission_short.tar.gz").is_file()


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )


def test_package_on_a_full_disk_is_one_line_and_leaves_nothing(reference_run, tmp_path):
    mnt = tmp_path / "small"
    if not _tmpfs(mnt, "1m"):
        pytest.skip("cannot mount a tmpfs here (not root); test_package_write_faults covers it by injection")
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "subtool.cli",
                "package",
                "--from",
                str(reference_run[0] / "runs/bert-99/Offline"),
                "--submitter",
                "TeamX",
                "--out",
                str(mnt / "a" / "tree"),
            ],
            capture_output=True,
            text=True,
        )
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2 and len(errors) == 1 and "[io.enospc]" in errors[0], proc.stderr
        assert list(mnt.iterdir()) == []  # no empty folders, no partial copy of the 65 MB log
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


PACKAGE_FAULT = write_fault_script(exdev_into="tree")  # EXDEV only where the tree is renamed into place


@pytest.mark.parametrize("fault", ["ENOSPC", "EXDEV"])
def test_package_write_faults_are_one_line_and_leave_nothing(reference_run, tmp_path, fault):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            PACKAGE_FAULT,
            "package",
            "--from",
            str(reference_run[0] / "runs/bert-99/Offline"),
            "--submitter",
            "TeamX",
            "--out",
            str(tmp_path / "out" / "tree"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "FAULT": fault},
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and f"[io.{fault.lower()}]" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # the tree, its full logs and the folder above: all gone


def test_another_round_gets_its_own_tree_and_never_overwrites_artifacts(reference_run, tmp_path):
    """A result packed for another round goes to OUT/<round>/: the default round's tree and the artifacts that
    said PASS stay as they were, byte for byte."""
    out = tmp_path / "out"
    shutil.copytree(reference_run[0], out)
    before = _artifact_bytes(out)
    tree_before = {str(p.relative_to(out)): p.read_bytes() for p in (out / "submission").rglob("*") if p.is_file()}
    proc = _all(out, "--version", "v6.0", "--from-stage", "package", "--json")
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    assert all(Path(p).parent == out / "v6.0" / "artifacts" for p in doc["artifacts"].values())
    assert (out / "v6.0" / "submission" / "open" / "TeamX").is_dir()
    assert _artifact_bytes(out) == before
    assert {
        str(p.relative_to(out)): p.read_bytes() for p in (out / "submission").rglob("*") if p.is_file()
    } == tree_before

    # a tree state.json records under another round (an older subtool's default) is refused, not mixed
    state = json.loads((out / "state.json").read_text())
    state["trees"]["submission"] = "v6.0"
    (out / "state.json").write_text(json.dumps(state))
    proc = _all(out, "--from-stage", "package")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "pipeline.round_mismatch" in errors[0], proc.stderr
    assert _artifact_bytes(out) == before


@pytest.mark.parametrize("case", ["out-in-model", "out-in-data", "conf-in-out"])
def test_an_out_that_overlaps_the_runs_inputs_is_refused_before_anything_runs(
    tiny_checkpoint, small_squad, tmp_path, case
):
    """The run's inputs are fingerprinted by sizes and times: an OUT inside --model-path changed them with every
    run, so every retry ran the benchmark again (hours on a real workload)."""
    model, data = tmp_path / "model", tmp_path / "data"
    shutil.copytree(tiny_checkpoint, model)
    data.mkdir()
    shutil.copy(small_squad, data / "dev.json")
    out = {"out-in-model": model / "out", "out-in-data": data / "out", "conf-in-out": tmp_path / "out"}[case]
    args = ["--model-path", str(model), "--dataset-path", str(data / "dev.json"), "--division", "open"]
    if case == "out-in-data":
        args[3] = str(data)  # a data set given as its folder
    if case == "conf-in-out":
        out.mkdir()
        (out / "user.conf").write_text("bert.Offline.target_qps = 10\n")
        args += ["--user-conf", str(out / "user.conf")]
    proc = _all(out, *args)
    rule = "all.user_conf_inside_out" if case == "conf-in-out" else "all.out_inside_input"
    assert proc.returncode == 2 and f"[{rule}]" in proc.stderr, proc.stderr
    assert not (out / "runs").exists() and not (out / "state.json").exists()


@pytest.mark.parametrize("case", ["interactive", "conf-folder"])
def test_a_bad_run_option_is_refused_before_any_stage_starts(tmp_path, case):
    """They were found once `[1/5] run` had begun, leaving state.json at 'running' and a hint to rerun the same
    (failing) command."""
    out = tmp_path / "out"
    args = ["--scenario", "Interactive"] if case == "interactive" else ["--user-conf", str(tmp_path)]
    proc = _all(out, *args)
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "[run.scenario]" in said if case == "interactive" else "is a folder" in said, said
    assert "[1/5] run" not in said and not (out / "state.json").exists()


def test_a_stage_that_fails_is_recorded_failed_not_running(tmp_path, small_squad):
    out = tmp_path / "out"
    model = tmp_path / "model.bin"
    model.write_bytes(b"not a checkpoint folder")
    proc = _all(out, "--model-path", str(model), "--dataset-path", str(small_squad), "--division", "open")
    assert proc.returncode == 2, proc.stderr
    state = json.loads((out / "state.json").read_text())
    assert state["stages"]["run"]["status"] == "failed", state["stages"]
    assert "model.bin: is a file, not a checkpoint folder [model.missing]" in " ".join(proc.stderr.split())


def test_sighup_from_a_closed_terminal_cleans_up_like_sigterm(tmp_path):
    """SIGHUP (the terminal closed, the ssh link dropped) ended `all` as SIGKILL would: the staging folder and
    a 'running' state were left behind."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "subtool.cli", "all", "--submitter", "TeamX", "--out", str(out)]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    runs = out / "runs" / "bert-99"
    _wait_for(lambda: any((p / "user.conf").exists() for p in _run_staging(runs)), what="the run's staging")
    first.send_signal(signal.SIGHUP)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 143 and "terminated (SIGHUP) in run" in err and "Traceback" not in err, err
    assert json.loads((out / "state.json").read_text())["stages"]["run"]["status"] == "interrupted"
    assert not (runs / "Offline").exists() and _leftovers(out) == []


def test_an_earlier_result_of_the_benchmark_under_another_system_name_is_said(reference_run, tmp_path):
    """`all --system S2` after a run under the detected name handed both in, the earlier one without a word."""
    out = tmp_path / "out"
    shutil.copytree(reference_run[0], out)
    results = next((out / "submission").glob("open/TeamX/results"))
    (system,) = [p for p in results.iterdir() if p.is_dir()]
    shutil.copytree(system, results / "old-name")
    proc = _all(out, "--only", "package")
    said = " ".join((proc.stdout + proc.stderr).split())
    assert "the tree also holds open/TeamX/results/old-name/bert-99/Offline" in said, said
