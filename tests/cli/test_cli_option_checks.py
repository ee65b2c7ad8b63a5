"""Every option is checked before anything runs (a typo must not cost the benchmark), and output in a CI log
(no terminal) is not wrapped at 80 columns nor cut."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from support.cli_child import BLOCK_HEAVY

BAD = [
    (["all", "--submitter", "T", "--division", "closd"], "--division", "closed"),
    (["all", "--submitter", "T", "--run-style", "vaild"], "--run-style", "valid"),
    (["all", "--submitter", "T", "--scenario", "Offlne"], "scenario", None),
    (["all", "--submitter", "T", "--model", "bert99"], "--model", "bert-99"),
    (["all", "--submitter", "T", "--backend", "torch-gpu"], "--backend", None),
    (["all", "--submitter", "T", "--version", "v6.2"], "round", None),
    (["all", "--submitter", "T", "--engine", "contiuous"], "--engine", "continuous"),
    (["all", "--submitter", "T", "--only", "packge"], "stage", "did you mean --only package?"),
    (["all", "--submitter", "T", "--from-stage", "chek"], "stage", "did you mean --from-stage check?"),
    (["all", "--submitter", "T", "--model", "BERT-99"], "--model", "did you mean --model bert-99?"),
    (["all", "--submitter", "T", "--scenario", "Ofline"], "scenario", "did you mean Offline?"),
    (["all", "--submitter", "Équipe"], "submitter", "'Equipe'"),
    (["all", "--submitter", "x" * 300], "too long", None),
    (["run", "--precision", "fp9"], "--precision", None),
    (["run", "--mode", "perf"], "--mode", None),
    (["run", "--run-style", "vaild"], "--run-style", "valid"),
    (["run", "--model", "llama3-8b"], "--model", None),
    (["run", "--backend", "cuda"], "--backend", None),
    (["run", "--threads", "-3"], "--threads", None),
    (["run", "--target-qps", "nan"], "--target-qps", None),
    (["run", "--target-qps", "-5"], "--target-qps", None),
    (["run", "--min-duration-ms", "-1"], "--min-duration-ms", None),
    (["run", "--batch-size", "0"], "--batch-size", None),
    # absurdly large: LoadGen would lay out (and allocate) a schedule no machine holds, or a run would never end
    (["run", "--target-qps", "1e300"], "--target-qps", "at most 1e+07"),
    (["run", "--min-duration-ms", "9" * 400], "--min-duration-ms", "at most 6.048e+08"),
    (["run", "--target-qps", "9e6", "--min-duration-ms", "3600000"], "schedule", "lower one of them"),
    (["run", "--threads", "100000"], "--threads", None),
    # absurdly small: a Server run paced at 1e-9 queries/s never ended
    (["run", "--target-qps", "0.000000001"], "--target-qps", "at least 0.01"),
    (["all", "--submitter", "T", "--target-latency-ms", "1e-9"], "--target-latency-ms", "at least 0.001"),
    (["all", "--submitter", "T", "--target-latency-ms", "1e12"], "--target-latency-ms", None),
    (["all", "--submitter", "T", "--target-latency-ms", "-1"], "--target-latency-ms", None),
    (["package", "--from", "x", "--submitter", "T", "--out", "o", "--division", "closd"], "--division", "closed"),
    (["package", "--from", "x", "--submitter", "T", "--out", "o", "--version", "6.1"], "round", None),
    (["package", "--from", "x", "--submitter", "T", "--out", "o", "--model-path", "m"], "--dataset-path", None),
]


@pytest.mark.parametrize("argv,names,suggests", BAD, ids=[" ".join(b[0][:1] + b[0][-2:])[:40] for b in BAD])
def test_a_bad_option_is_refused_before_anything_runs(tmp_path, argv, names, suggests):
    """Refused at once: one line, exit 2, the model stack never imported, nothing created in --out."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_HEAVY, *argv, *(["--out", "o"] if "--out" not in argv else [])],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, proc.stderr
    assert len(errors) == 1 and names in errors[0], proc.stderr
    assert "blocked heavy import" not in proc.stderr and "Traceback" not in proc.stderr
    assert "nothing fetched" not in proc.stderr  # the typo is said before the inputs are looked for
    if suggests:
        assert suggests in proc.stderr
    assert not (tmp_path / "o").exists()
    assert time.monotonic() - t0 < 30


def test_ci_log_summary_table_keeps_whole_paths(monkeypatch):
    """The `all` summary table in a CI log: artifact paths longer than 80 columns appear whole."""
    import io

    from subtool.cli import _console

    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a CI log: not a terminal
    from subtool.pipeline_outcome import Outcome, print_summary

    long_path = "/scratch/cluster/teams/" + "x" * 120 + "/subtool-out/artifacts/mlperf_submission_short.tar.gz"
    outcome = Outcome(
        out=None,
        stages={"run": "done"},
        run={"model": "bert-99", "scenario": "Offline"},
        artifacts={"tarball": long_path},
    )
    console = _console()
    with console.capture() as cap:
        print_summary(outcome, console, 1.0)
    text = cap.get()
    assert long_path in text and "…" not in text  # on one line, whole: a CI log can be searched for it


@pytest.mark.parametrize(
    "argv,says",
    [
        (["all", "--submitter", "T", "--divison", "closed"], "No such option: --divison"),
        (["run", "--batch-size", "x"], "--batch-size"),
        (["score", "--jobs", "two", "x", "--out", "o"], "--jobs"),
        (["check"], "Missing argument"),
        (["frobnicate"], "No such command"),
    ],
)
def test_a_bad_command_line_is_one_line_not_a_box(tmp_path, argv, says):
    proc = subprocess.run(
        [sys.executable, "-m", "subtool.cli", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, proc.stderr
    assert len(errors) == 1 and says in errors[0] and "[cli.usage]" in errors[0], proc.stderr
    assert "╭" not in proc.stderr and "Traceback" not in proc.stderr


def test_help_and_version_still_exit_0(tmp_path):
    for argv in (["--help"], ["all", "--help"], ["--version"]):
        proc = subprocess.run(
            [sys.executable, "-m", "subtool.cli", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0 and proc.stdout.strip(), (argv, proc.stderr)
    bare = subprocess.run([sys.executable, "-m", "subtool.cli"], cwd=tmp_path, capture_output=True, text=True)
    assert bare.returncode == 2 and "Usage" in bare.stdout + bare.stderr


@pytest.mark.parametrize("argv", [["run"], ["all", "--submitter", "TeamX"]])
def test_without_the_run_extra_run_and_all_say_what_to_install_in_one_line(tmp_path, argv):
    """A `pip install -e .` (no `run` extra) runs check/package/pack; `run` and `all` stop before the benchmark
    process starts, with the install command, not its traceback and a 're-run the same command' hint."""
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_HEAVY, *argv, "--out", "o"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "[run.missing_extra]" in errors[0], proc.stderr
    assert "torch" in errors[0] and 'pip install -e ".[run]"' in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "runs").exists()


@pytest.mark.parametrize(
    "extra, rule",
    [
        (["--fork", "no-such-fork.git"], "publish.fork_missing"),
        (["--fork", "https://github.com/someone/inference_results_v6.1", "--upstream", "mlcommons/x"], "no_token"),
    ],
)
def test_all_with_a_fork_it_cannot_publish_to_stops_before_the_run(tmp_path, extra, rule):
    """A missing local fork, or a pull request with no token to open it, is known before the benchmark runs: one
    line at once, not after the run, package, check and pack stages."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_TOKEN", "GH_TOKEN")}
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_HEAVY, "all", "--submitter", "TeamX", "--out", "o", *extra],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and rule in errors[0], proc.stderr
    assert not (tmp_path / "o").exists() and "loadgen" not in proc.stderr


def test_all_refuses_a_tree_that_holds_another_submitter_before_the_run(tmp_path):
    """A team that re-runs `all` under a corrected name on the same --out: the old name's results would be packed
    and scored as a second team, unchecked. Refused at once, naming the folder; nothing is written."""
    other = tmp_path / "o" / "submission" / "open" / "TeamX" / "results"
    other.mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, "-m", "subtool.cli", "all", "--submitter", "TeamY", "--out", "o"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "[all.other_submitter]" in errors[0], proc.stderr
    assert "open/TeamX" in errors[0] and "loadgen" not in proc.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["submission"]  # no state.json, no runs/


@pytest.mark.parametrize(
    "extra, said",
    [
        ([], "DEMO"),
        (["--run-style", "valid"], "DEMO"),
        (["--run-style", "valid", "--demo", "--min-duration-ms", "1000"], "--min-duration-ms 1000"),
    ],
)
def test_all_with_a_fork_and_a_short_run_stops_before_the_run(tmp_path, extra, said):
    """`subtool all --submitter TeamX --fork URL` on the demo (or any short run) ran the benchmark, package, check
    and pack, then publish refused the tree (publish.short_run, exit 2): known before the run, so said at once."""
    fork = tmp_path / "fork.git"
    subprocess.run(["git", "init", "-q", "--bare", str(fork)], check=True)
    base = ["all", "--submitter", "TeamX", "--out", "o", "--fork", str(fork), *extra]
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_HEAVY, *base], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "[publish.short_run]" in errors[0], proc.stderr
    assert said in errors[0] and "--allow-short" in proc.stderr
    assert not (tmp_path / "o").exists() and "loadgen" not in proc.stderr
    # with --allow-short the run may go on: here it stops at the next check (this child has no `run` extra)
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_HEAVY, *base, "--allow-short"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "publish.short_run" not in proc.stderr and "[run.missing_extra]" in proc.stderr
