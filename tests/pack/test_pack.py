"""`subtool pack` and `subtool pack --verify`, end to end on a tree laid out by hand from real LoadGen logs.

The logs come from mlperf_loadgen driving an instant SUT for 50 ms (a short run), each LoadGen run in its own
process (LoadGen counts conf files per process). The tree is an open-division bert-99 edge submission whose only
problem for the checker is the short duration, which `--waive perf.min_duration` waives.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from support.loadgen_trees import MEASUREMENTS, ZERO_ANSWER, LoadGenJob, run_loadgen, system_json
from typer.testing import CliRunner

from subtool.cli import app
from subtool.errors import SubtoolError

NAME = "mlperf_submission_short"
ARTIFACTS = [
    f"{NAME}.tar.gz",
    f"{NAME}_summary.json",
    f"{NAME}_summary.csv",
    f"{NAME}.run",
    f"{NAME}.tstamps",
    f"{NAME}.md",
    f"{NAME}.sha256",
]
DATE_U = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 123]\d "
    r"\d\d:\d\d:\d\d UTC \d{4}$"
)

SYSTEM = system_json(host_processor_model_name="Test CPU 9000")
MEASUREMENTS = {**MEASUREMENTS, "starting_weights_filename": "bert.pt"}
SCENARIOS = ("Offline", "SingleStream")
WAIVE_SHORT = ["--waive", "perf.min_duration"]


# -------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def loadgen_logs(tmp_path_factory) -> Path:
    pytest.importorskip("mlperf_loadgen", reason="the pack tests lay out real LoadGen logs (pip install .[run])")
    root = tmp_path_factory.mktemp("loadgen")
    jobs = []
    for sc in SCENARIOS:
        for mode in ("performance", "accuracy"):
            out = root / sc / mode
            out.mkdir(parents=True)
            (out / "user.conf").write_text(
                f"bert.{sc}.min_duration = 50\nbert.{sc}.target_qps = 100000\n"
                f"bert.{sc}.target_latency = 0.04\nbert.{sc}.min_query_count = 1024\n"
            )
            # Offline sleeps past min_duration so the result is VALID
            delay = (0.07 if sc == "Offline" else 5e-5) if mode == "performance" else 0.0
            jobs.append(
                LoadGenJob(
                    conf_model="bert",
                    scenario=sc,
                    user_conf=out / "user.conf",
                    answer=ZERO_ANSWER,
                    runs=((mode, out, delay),),
                )
            )
    run_loadgen(jobs, timeout=120)
    return root


def _truncate(src: Path, dst: Path) -> str:
    data = src.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    dst.write_bytes(data[:4096] + b"\n\n...\n\n" + data[-4096:] if len(data) > 8192 else data)
    return digest


@pytest.fixture(scope="module")
def template_tree(loadgen_logs, tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("template") / "tree"
    sub = tree / "open" / "TeamX"
    for folder, text in (("documentation", "# How we ran it\n"), ("src", "# The code\n")):
        (sub / folder).mkdir(parents=True)
        (sub / folder / "README.md").write_text(text)
    (sub / "systems").mkdir()
    (sub / "systems" / "box.json").write_text(json.dumps(SYSTEM, indent=2))
    for sc in SCENARIOS:
        res = sub / "results" / "box" / "bert-99" / sc
        (res / "performance" / "run_1").mkdir(parents=True)
        (res / "accuracy").mkdir()
        for fname in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
            shutil.copy(loadgen_logs / sc / "performance" / fname, res / "performance" / "run_1" / fname)
            shutil.copy(loadgen_logs / sc / "accuracy" / fname, res / "accuracy" / fname)
        digest = _truncate(
            loadgen_logs / sc / "accuracy" / "mlperf_log_accuracy.json", res / "accuracy" / "mlperf_log_accuracy.json"
        )
        (res / "accuracy" / "accuracy.txt").write_text(f'{{"exact_match": 0.5, "f1": 1.5}}\n\nhash={digest}\n')
        (res / "measurements.json").write_text(json.dumps(MEASUREMENTS, indent=2))
        shutil.copy(loadgen_logs / sc / "performance" / "user.conf", res / "user.conf")
        (res / "README.md").write_text(f"# bert-99 {sc}\n")
    return tree


@pytest.fixture
def tree(template_tree, tmp_path) -> Path:
    copy = tmp_path / "submission"
    shutil.copytree(template_tree, copy)
    return copy


def _pack(tree: Path, out: Path, *extra: str):
    return CliRunner().invoke(app, ["pack", str(tree), "--out", str(out), *extra, "--json"])


def _verify(tarball: Path):
    return CliRunner().invoke(app, ["pack", "--verify", str(tarball), "--json"])


def _stdout_json(result) -> dict:
    return json.loads(result.stdout)


def _read_bytes(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in ARTIFACTS}


# ------------------------------------------------------------------------------------- reproducibility
def test_two_packs_of_the_same_tree_give_identical_bytes(tree, tmp_path, monkeypatch):
    out = tmp_path / "artifacts"
    first = _pack(tree, out, *WAIVE_SHORT)
    assert first.exit_code == 0, first.output
    before = _read_bytes(out)
    # The second pack runs a day and an hour later by the clock, so that nothing clock-dependent (a member's
    # mtime, the gzip header's time) can pass by both packs falling within the same second.
    real_time, real_time_ns = time.time, time.time_ns
    monkeypatch.setattr(time, "time", lambda: real_time() + 90_000)
    monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() + 90_000 * 10**9)
    second = _pack(tree, out, *WAIVE_SHORT)
    assert second.exit_code == 0, second.output
    assert _read_bytes(out) == before
    assert sorted(p.name for p in out.iterdir()) == sorted(ARTIFACTS)  # no staging leftovers
    assert "replacing the artifacts" not in second.output  # the same bytes: nothing was replaced


def test_packing_another_tree_into_the_same_out_says_it_replaces_the_earlier_artifacts(tree, tmp_path):
    # found by probing: a different tree's pack silently replaced the earlier hand-in's artifacts
    out = tmp_path / "artifacts"
    assert _pack(tree, out, *WAIVE_SHORT).exit_code == 0
    old = hashlib.sha256((out / "mlperf_submission_short.tar.gz").read_bytes()).hexdigest()
    (tree / "open" / "TeamX" / "documentation").mkdir(parents=True, exist_ok=True)
    (tree / "open" / "TeamX" / "documentation" / "notes.md").write_text("changed\n")
    second = _pack(tree, out, *WAIVE_SHORT)
    said = " ".join(second.output.split())
    assert second.exit_code == 0 and "replacing the artifacts of an earlier, different pack" in said, said
    assert f"sha256 {old[:12]}…" in said


def test_tarball_ignores_owners_times_modes_and_location(tree, tmp_path):
    assert _pack(tree, tmp_path / "a", *WAIVE_SHORT).exit_code == 0
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(tree, moved)
    readme = moved / "open" / "TeamX" / "src" / "README.md"
    os.utime(readme, (1_000_000, 1_000_000))
    readme.chmod(0o600)
    assert _pack(moved, tmp_path / "b", *WAIVE_SHORT).exit_code == 0
    assert (tmp_path / "a" / f"{NAME}.tar.gz").read_bytes() == (tmp_path / "b" / f"{NAME}.tar.gz").read_bytes()


def test_tarball_members_are_normalised_and_only_divisions(tree, tmp_path):
    (tree / "notes.txt").write_text("not part of the submission\n")
    script = tree / "open" / "TeamX" / "src" / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o750)
    assert _pack(tree, tmp_path / "out", *WAIVE_SHORT).exit_code == 0
    tarball = tmp_path / "out" / f"{NAME}.tar.gz"
    raw = tarball.read_bytes()
    assert raw[:4] == b"\x1f\x8b\x08\x00"  # gzip, no FNAME flag: the temp file's name is not recorded
    assert raw[4:8] == b"\x00\x00\x00\x00"  # no timestamp in the gzip header
    with tarfile.open(tarball, "r:gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[0] == "open" and "notes.txt" not in names
    on_disk = sorted(p.relative_to(tree).as_posix() for p in (tree / "open").rglob("*"))
    assert sorted(names) == sorted(["open", *on_disk])
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0)
        assert m.mode == (0o755 if m.isdir() or m.name.endswith("run.sh") else 0o644), m.name
    # parents come before children and siblings are sorted
    assert names == sorted(names, key=lambda n: n.split("/"))


# ----------------------------------------------------------------------------------- verify + tampering
def test_verify_passes_and_uses_the_recorded_waivers(tree, tmp_path):
    out = tmp_path / "out"
    packed = _pack(tree, out, *WAIVE_SHORT)
    assert packed.exit_code == 0, packed.output
    doc = _stdout_json(packed)
    assert doc["ok"] and doc["verdict"] == "PASS" and doc["waived"] >= 2 and doc["errors"] == 0
    verified = _verify(out / f"{NAME}.tar.gz")  # no --waive: it comes from the manifest
    assert verified.exit_code == 0, verified.output
    report = _stdout_json(verified)
    assert report["ok"] and report["verdict"] == "PASS" and report["waive"] == ["perf.min_duration"]
    assert report["members_checked"] == sum(1 for p in (tree / "open").rglob("*") if p.is_file())


def _rewrite_tarball(src: Path, dst: Path, change) -> None:
    """Re-create the tarball with one member's bytes changed (what a careless re-pack by hand would do)."""
    with (
        tarfile.open(src, "r:gz") as old,
        gzip.GzipFile(dst, "wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as new,
    ):
        for member in old.getmembers():
            data = old.extractfile(member).read() if member.isfile() else None
            if data is not None:
                data = change(member.name, data)
                member.size = len(data)
            new.addfile(member, None if data is None else io.BytesIO(data))


def test_tampered_tarball_fails_verify(tree, tmp_path):
    out = tmp_path / "out"
    assert _pack(tree, out, *WAIVE_SHORT).exit_code == 0
    tarball = out / f"{NAME}.tar.gz"
    target = "open/TeamX/results/box/bert-99/Offline/accuracy/accuracy.txt"
    tampered = tmp_path / "tampered.tar.gz"
    _rewrite_tarball(
        tarball, tampered, lambda name, data: data.replace(b'"f1": 1.5', b'"f1": 91.5') if name == target else data
    )
    shutil.move(tampered, tarball)
    result = _verify(tarball)
    assert result.exit_code == 1
    problems = _stdout_json(result)["problems"]
    assert any(p.startswith(f"{NAME}.tar.gz: sha256 differs") for p in problems)
    assert any(p.startswith(target) and "sha256 differs" in p for p in problems)


def test_tarball_rebuilt_with_a_matching_manifest_line_still_fails(tree, tmp_path):
    """Someone edits a file, re-packs, and updates the tarball's hash in the manifest: the member hashes catch it."""
    out = tmp_path / "out"
    assert _pack(tree, out, *WAIVE_SHORT).exit_code == 0
    tarball, manifest = out / f"{NAME}.tar.gz", out / f"{NAME}.sha256"
    target = "open/TeamX/systems/box.json"
    _rewrite_tarball(
        tarball,
        tmp_path / "t.tar.gz",
        lambda name, data: data.replace(b"Test CPU 9000", b"Test CPU 9999") if name == target else data,
    )
    old_hash = hashlib.sha256(tarball.read_bytes()).hexdigest()
    shutil.move(tmp_path / "t.tar.gz", tarball)
    new_hash = hashlib.sha256(tarball.read_bytes()).hexdigest()
    manifest.write_text(manifest.read_text().replace(old_hash, new_hash))
    result = _verify(tarball)
    assert result.exit_code == 1
    problems = _stdout_json(result)["problems"]
    assert f"{target}: sha256 differs from the manifest" in problems
    assert not any(p.startswith(f"{NAME}.tar.gz") for p in problems)


def test_edited_companion_and_extra_member_fail_verify(tree, tmp_path):
    out = tmp_path / "out"
    assert _pack(tree, out, *WAIVE_SHORT).exit_code == 0
    md = out / f"{NAME}.md"
    md.write_text(md.read_text().replace("PASS", "PASS!"))
    result = _verify(out / f"{NAME}.tar.gz")
    assert result.exit_code == 1
    assert f"{NAME}.md: sha256 differs from the manifest (changed after packing)" in _stdout_json(result)["problems"]


def test_verify_without_manifest_is_a_usage_error(tree, tmp_path):
    out = tmp_path / "out"
    assert _pack(tree, out, *WAIVE_SHORT).exit_code == 0
    (out / f"{NAME}.sha256").unlink()
    result = _verify(out / f"{NAME}.tar.gz")
    assert result.exit_code == 2
    assert "no manifest beside the tarball" in result.output and "[pack.verify]" in result.output


def test_manifest_is_checkable_with_sha256sum(tree, tmp_path):
    out = tmp_path / "out"
    assert _pack(tree, out, *WAIVE_SHORT).exit_code == 0
    lines = (out / f"{NAME}.sha256").read_text().splitlines()
    assert "# waive: perf.min_duration" in lines and "# rules: v6.1" in lines
    members = [ln for ln in lines if ln.startswith("# member ")]
    assert len(members) == sum(1 for p in (tree / "open").rglob("*") if p.is_file())
    listed = {ln.split("  ", 1)[1] for ln in lines if not ln.startswith("#")}
    assert listed == set(ARTIFACTS) - {f"{NAME}.sha256"}
    if shutil.which("sha256sum") is None:
        pytest.skip("sha256sum (coreutils) not installed")
    check = subprocess.run(["sha256sum", "--strict", "-c", f"{NAME}.sha256"], cwd=out, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


# ------------------------------------------------------------------------------------------- verdicts
def test_tree_with_errors_is_packed_but_says_fail(tree, tmp_path):
    out = tmp_path / "out"
    result = _pack(tree, out)  # short run, perf.min_duration not waived
    assert result.exit_code == 1, result.output
    doc = _stdout_json(result)
    assert doc["ok"] is False and doc["verdict"] == "FAIL" and doc["errors"] >= 2
    assert sorted(p.name for p in out.iterdir()) == sorted(ARTIFACTS)
    md = (out / f"{NAME}.md").read_text()
    assert md.splitlines()[2].startswith("**Verdict: FAIL**")
    assert "perf.min_duration" in md
    summary = json.loads((out / f"{NAME}_summary.json").read_text())
    assert summary["subtool"]["verdict"] == "FAIL"
    assert {e["rule"] for e in summary["subtool"]["errors"]} >= {"perf.min_duration"}
    assert "# verdict: FAIL" in (out / f"{NAME}.sha256").read_text()
    assert _verify(out / f"{NAME}.tar.gz").exit_code == 1  # verify re-runs the checker: still FAIL


# ------------------------------------------------------------------------------------------ summary
def test_summary_json_is_mlc_form_plus_subtool_block(tree, tmp_path):
    import pandas

    out = tmp_path / "out"
    assert _pack(tree, out, *WAIVE_SHORT).exit_code == 0
    text = (out / f"{NAME}_summary.json").read_text()
    mlc = pandas.read_csv(out / f"{NAME}_summary.csv").T.to_json(orient="columns", indent=4)
    assert text.startswith(mlc[:-2].rstrip("\n"))  # the rows are byte-for-byte pandas' output
    data = json.loads(text)
    block = data.pop("subtool")
    assert data == json.loads(mlc)
    assert sorted(data) == [str(i) for i in range(len(data))] and len(data) == 2
    assert {row["Scenario"] for row in data.values()} == set(SCENARIOS)
    assert block["verdict"] == "PASS" and block["waivers"] == ["perf.min_duration"] and block["run_style"] == "short"
    hashes = {
        name: hashlib.sha256((out / name).read_bytes()).hexdigest()
        for name in (f"{NAME}.tar.gz", f"{NAME}_summary.csv", f"{NAME}.run", f"{NAME}.tstamps", f"{NAME}.md")
    }
    assert block["artifacts"] == hashes
    assert block["versions"]["loadgen_in_logs"][0].startswith("6.")


# ----------------------------------------------------------------------------------- .run / .tstamps
def _run_dir(path: Path, **overrides) -> Path:
    record = {
        "schema": "subtool.run/1",
        "subtool_version": "0.1.0",
        "model": "bert-99",
        "scenario": "Offline",
        "run_style": "short",
        "demo": True,
        "versions": {"loadgen": "6.0.17", "torch": "2.13.0"},
        "settings": {"target_qps": 100000, "min_duration_ms": 50},
        "tstamps": ["Thu Nov 26 01:52:06 UTC 2026", "Thu Nov 26 01:55:10 UTC 2026"],
        "command": ["subtool", "run", "--model", "bert-99", "--scenario", "Offline", "--out", "my runs"],
        "env": {"CUDA_VISIBLE_DEVICES": "0", "OMP_NUM_THREADS": "2", "HF_TOKEN": "hf_notarealtoken"},
    }
    record.update(overrides)
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps(record))
    return path


def _pack_two_runs(tree, tmp_path):
    """The tree packed with --runs of two run directories: Offline, and SingleStream with its own times and command."""
    run_a = _run_dir(tmp_path / "runs" / "Offline")
    run_b = _run_dir(
        tmp_path / "runs" / "SingleStream",
        scenario="SingleStream",
        tstamps=["Wed Nov 25 23:00:00 UTC 2026", "Wed Nov 25 23:10:00 UTC 2026"],
        command=["subtool", "run", "--scenario", "SingleStream"],
    )
    out = tmp_path / "out"
    return run_a, run_b, out, _pack(tree, out, "--runs", str(run_a), "--runs", str(run_b), *WAIVE_SHORT)


def test_run_script_and_tstamps_from_run_directories(tree, tmp_path):
    run_a, run_b, out, result = _pack_two_runs(tree, tmp_path)
    assert result.exit_code == 0, result.output
    script = (out / f"{NAME}.run").read_text()
    assert script.startswith("#!/usr/bin/env bash\n")
    assert "subtool run --model bert-99 --scenario Offline --out 'my runs'" in script
    assert "export CUDA_VISIBLE_DEVICES=0" in script and "export OMP_NUM_THREADS=2" in script
    assert "HF_TOKEN" not in script and "hf_notarealtoken" not in script
    assert "hf_notarealtoken" not in (out / f"{NAME}.md").read_text()
    assert f"subtool pack {tree} --out {out} --runs {run_a} --runs {run_b} --waive perf.min_duration" in script
    assert f"date -u >> {NAME}.tstamps" in script
    if shutil.which("bash"):
        assert subprocess.run(["bash", "-n", str(out / f"{NAME}.run")]).returncode == 0
    # oldest run first, one before/after pair per run; these run directories hold none of the tree's logs, so the
    # packed results get a pair of their own LoadGen times (else the .tstamps would not cover what was packed)
    lines = (out / f"{NAME}.tstamps").read_text().splitlines()
    assert lines[:4] == [
        "Wed Nov 25 23:00:00 UTC 2026",
        "Wed Nov 25 23:10:00 UTC 2026",
        "Thu Nov 26 01:52:06 UTC 2026",
        "Thu Nov 26 01:55:10 UTC 2026",
    ]
    assert len(lines) in (6, 8) and all(DATE_U.match(line) for line in lines[4:])  # one pair, or one per result
    from subtool.pack.inputs import scan_tree
    from subtool.scoring.integrity import check_tstamps

    windows = [(r.rel_dir, r.window.begin, r.window.end) for r in scan_tree(tree).results]
    assert check_tstamps(str(out / f"{NAME}.tstamps"), windows, slack_s=0) == []  # the scorer's own test
    assert "commands are unknown" in script and "bert.Offline.min_duration = 50" in script
    md = (out / f"{NAME}.md").read_text()
    assert "embedded demo" in md and "short run" in md


def test_tstamps_from_loadgen_logs_without_run_directories(tree, tmp_path):
    out = tmp_path / "out"
    assert _pack(tree, out, *WAIVE_SHORT).exit_code == 0
    lines = (out / f"{NAME}.tstamps").read_text().splitlines()
    assert len(lines) == 2 and all(DATE_U.match(line) for line in lines), lines
    begins = []
    for detail in (tree / "open").rglob("mlperf_log_detail.txt"):
        for line in detail.read_text().splitlines():
            if '"key": "power_begin"' in line:
                begins.append(json.loads(line.split(":::MLLOG ", 1)[1])["value"])
    from datetime import datetime

    first = min(datetime.strptime(b, "%m-%d-%Y %H:%M:%S.%f") for b in begins)
    assert lines[0] == first.strftime("%a %b ") + f"{first.day:2d}" + first.strftime(" %H:%M:%S UTC %Y")
    script = (out / f"{NAME}.run").read_text()
    assert "The benchmark commands are unknown" in script and "bert.Offline.min_duration = 50" in script
    assert f"subtool pack {tree} --out {out} --waive perf.min_duration" in script


def test_date_u_pads_the_day_with_a_space():
    from datetime import datetime, timezone

    from subtool.pack.inputs import date_u

    assert date_u(datetime(2026, 11, 6, 1, 2, 3, tzinfo=timezone.utc)) == "Fri Nov  6 01:02:03 UTC 2026"
    assert date_u(datetime(2023, 11, 13, 15, 4, 5, tzinfo=timezone.utc)) == "Mon Nov 13 15:04:05 UTC 2023"


# --------------------------------------------------------------------------------------- bad input
def test_failure_leaves_previous_artifacts_and_no_partial_files(tree, tmp_path):
    out = tmp_path / "out"
    assert _pack(tree, out, *WAIVE_SHORT).exit_code == 0
    before = _read_bytes(out)
    (tree / "open" / "TeamX" / "src" / "link").symlink_to(tree / "open" / "TeamX" / "src" / "README.md")
    result = _pack(tree, out, *WAIVE_SHORT)
    assert result.exit_code == 2
    assert "[tree.symlink]" in result.output and "link" in result.output
    assert _read_bytes(out) == before
    assert sorted(p.name for p in out.iterdir()) == sorted(ARTIFACTS)


def test_out_inside_the_tree_is_refused(tree):
    result = _pack(tree, tree / "open" / "artifacts")
    assert result.exit_code == 2 and "[pack.out_inside_tree]" in result.output
    assert not (tree / "open" / "artifacts").exists()


def test_not_a_tree_and_bad_run_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _pack(tmp_path / "empty", tmp_path / "out")
    assert result.exit_code == 2 and "[pack.empty_tree]" in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    from subtool.pack.inputs import read_run_dir

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{not json")
    with pytest.raises(SubtoolError) as err:
        read_run_dir(tmp_path / "run")
    assert err.value.rule == "pack.run_dir" and "run.json" in err.value.one_line()


def test_truncated_tarball_fails_verify(tree, tmp_path):
    out = tmp_path / "out"
    assert _pack(tree, out, *WAIVE_SHORT).exit_code == 0
    tarball = out / f"{NAME}.tar.gz"
    tarball.write_bytes(tarball.read_bytes()[: tarball.stat().st_size // 2])
    result = _verify(tarball)
    assert result.exit_code == 1
    doc = _stdout_json(result)
    assert doc["verdict"] == ""  # nothing trustworthy to re-check
    assert any("cannot be read to the end" in p for p in doc["problems"])


def test_unknown_waiver_fails_before_anything_is_written(tree, tmp_path):
    result = _pack(tree, tmp_path / "out", "--waive", "perf.no_such_rule")
    assert result.exit_code == 2 and "perf.no_such_rule" in result.output
    assert not (tmp_path / "out").exists()


def test_a_tree_that_changes_between_check_and_tarball_is_refused():
    from subtool.pack.api import _ensure_unchanged

    _ensure_unchanged(Path("t"), {"open/a": "1" * 64}, {"open/a": "1" * 64})
    for packed in ({"open/a": "2" * 64}, {"open/a": "1" * 64, "open/b": "3" * 64}, {}):
        with pytest.raises(SubtoolError) as err:
            _ensure_unchanged(Path("t"), {"open/a": "1" * 64}, packed)
        assert err.value.rule == "pack.tree_changed"


def test_official_checker_reads_the_unpacked_tarball_like_the_tree(tree, tmp_path, official_checker):
    """The tarball is a tree the official checker accepts: unpacked, it finds only the short duration."""
    official = official_checker
    out = tmp_path / "out"
    assert _pack(tree, out, *WAIVE_SHORT).exit_code == 0
    unpacked = tmp_path / "unpacked"
    with tarfile.open(out / f"{NAME}.tar.gz", "r:gz") as tar:
        tar.extractall(unpacked, filter="data")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "submission_checker.main",
            "--input",
            str(unpacked),
            "--version",
            "v6.1",
            "--csv",
            str(tmp_path / "official.csv"),
        ],
        cwd=official,
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [ln for ln in (run.stdout + run.stderr).splitlines() if " ERROR] " in ln]
    specific = [
        ln for ln in errors if not re.search(r"Some .* failed for|SUMMARY: submission has errors|NoResults", ln)
    ]
    assert len(specific) == 2 and all("Test duration less than 600s" in ln for ln in specific), errors


def test_run_script_for_subtool_all_has_the_one_command(tree, tmp_path):
    argv = ["subtool", "all", "--submitter", "TeamX", "--out", "subtool-out"]
    run = _run_dir(tmp_path / "runs" / "Offline", command=argv, env={})
    out = tmp_path / "out"
    assert _pack(tree, out, "--runs", str(run), *WAIVE_SHORT).exit_code == 0
    script = (out / f"{NAME}.run").read_text()
    assert script.count("subtool all --submitter TeamX --out subtool-out") == 1
    assert "subtool package" not in script and "\n# subtool pack " in script


def test_demo_systems_are_recognised_without_run_directories():
    from subtool.pack.api import _marked_demo
    from subtool.pack.inputs import SystemInfo

    assert _marked_demo(SystemInfo("open", "T", "1xCPU-demo", "open/T/systems/1xCPU-demo.json", {}))
    assert _marked_demo(SystemInfo("open", "T", "box", "p", {"hw_notes": "DEMO: embedded demo run"}))
    assert not _marked_demo(SystemInfo("open", "T", "box", "p", {"system_name": "TeamX box", "hw_notes": ""}))


# ------------------------------------------------------------------- several runs, one hand-in (issue 20)
def _producing_run(tree: Path, root: Path, scenario: str, **overrides) -> Path:
    """A run directory that holds the tree's own performance log of `scenario` (so it produced that result),
    with a before/after pair around the result's LoadGen times."""
    from subtool.pack.inputs import scan_tree

    [result] = [r for r in scan_tree(tree).results if r.scenario == scenario]
    pair = result.window.lines()
    overrides.setdefault("command", ["subtool", "all", "--submitter", "TeamX", "--scenario", scenario])
    run = _run_dir(root / "bert-99" / scenario, scenario=scenario, tstamps=pair, **overrides)
    (run / "performance" / "run_1").mkdir(parents=True)
    shutil.copy(
        tree / result.rel_dir / "performance" / "run_1" / "mlperf_log_detail.txt",
        run / "performance" / "run_1" / "mlperf_log_detail.txt",
    )
    return run


def test_a_folder_of_runs_contributes_those_the_tree_holds_and_tstamps_cover_every_result(tree, tmp_path):
    from subtool.pack.inputs import scan_tree
    from subtool.scoring.integrity import check_tstamps

    runs = tmp_path / "runs"
    _producing_run(tree, runs, "Offline")
    _run_dir(runs / "bert-99" / "Server", scenario="Server", command=["subtool", "all", "--scenario", "Server"])
    _run_dir(runs / ".hidden" / "x", command=["subtool", "all", "--hidden"])
    out = tmp_path / "out"
    result = _pack(tree, out, "--runs", str(runs), *WAIVE_SHORT)
    assert result.exit_code == 0, result.output
    script = (out / f"{NAME}.run").read_text()
    assert "subtool all --submitter TeamX --scenario Offline" in script
    assert "--scenario Server" not in script and "--hidden" not in script  # not in this tree
    assert "packed as open/TeamX/results/box/bert-99/Offline" in script
    # SingleStream came from no run directory given: its settings are quoted and its LoadGen times kept
    assert "commands are unknown" in script and "bert.SingleStream.min_duration = 50" in script
    stamps = (out / f"{NAME}.tstamps").read_text().splitlines()
    # the run's pair, and SingleStream's own LoadGen times unless that pair already holds them
    assert len(stamps) in (2, 4) and all(DATE_U.match(s) for s in stamps)
    windows = [(r.rel_dir, r.window.begin, r.window.end) for r in scan_tree(tree).results]
    assert check_tstamps(str(out / f"{NAME}.tstamps"), windows, slack_s=0) == []  # the scorer's own test


def test_a_runs_folder_with_no_run_directory_is_one_line_error(tree, tmp_path):
    (tmp_path / "empty").mkdir()
    result = _pack(tree, tmp_path / "out", "--runs", str(tmp_path / "empty"))
    assert result.exit_code == 2 and "[pack.run_dir]" in result.output
    assert not (tmp_path / "out").exists()


def test_all_under_another_submitter_gets_its_package_step(tree, tmp_path):
    run = _producing_run(
        tree, tmp_path / "runs", "Offline", command=["subtool", "all", "--submitter", "OldTeam", "--out", "o"]
    )
    out = tmp_path / "out"
    assert _pack(tree, out, "--runs", str(run), *WAIVE_SHORT).exit_code == 0
    script = (out / f"{NAME}.run").read_text()
    assert f"\nsubtool package --from {run} --submitter TeamX --division open --system box --out {tree}\n" in script
    assert "`subtool all` above also packs" not in script and f"\nsubtool pack {tree} " in script


def test_latency_percentiles_reach_md_summary_and_json(tree, tmp_path):
    out = tmp_path / "out"
    result = _pack(tree, out, *WAIVE_SHORT)
    assert result.exit_code == 0, result.output
    lat = _stdout_json(result)["latency_percentiles"]
    assert set(lat) == {f"open/TeamX/results/box/bert-99/{sc}" for sc in SCENARIOS}
    assert all(set(v["latency_ms"]) >= {"p50", "p90", "p99"} and v["latency_ms"]["p50"] >= 0 for v in lat.values())
    assert json.loads((out / f"{NAME}_summary.json").read_text())["subtool"]["latency_percentiles"] == lat
    md = (out / f"{NAME}.md").read_text()
    assert "## Latency percentiles" in md and "| bert-99 SingleStream | query latency |" in md
    # Location is the tree's, not the packer's folders
    summary = (out / f"{NAME}_summary.csv").read_text()
    assert str(tree) not in summary and '"open/TeamX/results/box/bert-99/Offline/performance/run_1"' in summary


def test_latency_percentiles_of_token_runs_and_lying_values():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from subtool.mlperf.logs import latency_percentiles

    values = {
        "result_first_token_50.00_percentile_latency_ns": 12_500_000,
        "result_first_token_99.00_percentile_latency_ns": 1.9e9,
        "result_time_per_output_token_99.90_percentile_ns": 4_000_000,
        "result_99.00_percentile_latency_ns": float("nan"),
        "result_90.00_percentile_latency_ns": -5,
        "result_50.00_percentile_latency_ns": True,
        "result_95.00_percentile_latency_ns": "7",
    }
    assert latency_percentiles(values) == {"ttft_ms": {"p50": 12.5, "p99": 1900.0}, "tpot_ms": {"p99.9": 4.0}}

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.dictionaries(
            st.sampled_from(
                ["result_first_token_50.00_percentile_latency_ns", "result_99.00_percentile_latency_ns", "other"]
            ),
            st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), st.text(max_size=5)),
        )
    )
    def never_garbage(values):
        for found in latency_percentiles(values).values():
            assert all(isinstance(v, float) and v == v and 0 <= v < float("inf") for v in found.values())

    never_garbage()


def test_numbers_have_one_notation():
    from subtool.pack.report import format_number

    assert [format_number(v) for v in (13368.0, 13368, 7350879.6, 1437911, 0.001262, 90.874, 12.3456789)] == [
        "13368",
        "13368",
        "7350879.6",
        "1437911",
        "0.001262",
        "90.874",
        "12.3457",
    ]
    assert "e" not in format_number(2.5e-5) and format_number(float("nan")) == "nan"


@pytest.mark.parametrize("shape, rule", [("deep", "extract.bad_name"), ("bomb", "extract.ratio")])
def test_a_tree_verify_would_refuse_is_not_packed(tree, tmp_path, shape, rule):
    # found by probing: pack said PASS and wrote a tarball that its own --verify (and score) then refused
    src = tree / "open" / "TeamX" / "src"
    if shape == "deep":
        deep = src.joinpath(*["d"] * 33)
        deep.mkdir(parents=True)
        (deep / "f.py").write_text("x = 1\n")
    else:
        with open(src / "weights.bin", "wb") as fh:  # 64 MiB of zeros in a ~0.2 MB tarball: a ratio above 200
            fh.truncate(64 << 20)
    out = tmp_path / "out"
    result = _pack(tree, out, *WAIVE_SHORT)
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and f"[{rule}]" in said and "would refuse this tarball" in said, said
    assert not out.exists() or not any(out.iterdir())


# ------------------------------------------------- what the companions say, number by number (mutation probe)
# Each test below fails on a mutant of subtool/pack that the tests above let through (a mutation probe).
def test_a_tree_changed_while_the_checker_reads_it_is_refused_end_to_end(tree, tmp_path, monkeypatch):
    import subtool.pack.api as pack_api

    real = pack_api._run_checker
    victim = tree / "open" / "TeamX" / "documentation" / "README.md"

    def checker_then_edit(*args, **kwargs):
        report = real(*args, **kwargs)
        victim.write_text("# edited after the checker read it\n")  # the tarball would hold unchecked bytes
        return report

    monkeypatch.setattr(pack_api, "_run_checker", checker_then_edit)
    out = tmp_path / "out"
    result = _pack(tree, out, *WAIVE_SHORT)
    assert result.exit_code == 2 and "[pack.tree_changed]" in result.output, result.output
    assert not out.exists() or not any(out.iterdir())


def test_summary_block_counts_the_waived_findings_and_lists_them(tree, tmp_path):
    out = tmp_path / "out"
    result = _pack(tree, out, *WAIVE_SHORT)
    assert result.exit_code == 0, result.output
    doc = _stdout_json(result)
    block = json.loads((out / f"{NAME}_summary.json").read_text())["subtool"]
    assert doc["waived"] >= 2  # one short-duration finding per result
    assert block["counts"] == {"error": 0, "warning": doc["warnings"], "waived": doc["waived"]}
    assert len(block["waived"]) == doc["waived"] and {w["rule"] for w in block["waived"]} == {"perf.min_duration"}


def test_summary_block_tarball_figures_are_the_tarballs(tree, tmp_path):
    out = tmp_path / "out"
    assert _pack(tree, out, *WAIVE_SHORT).exit_code == 0
    figures = json.loads((out / f"{NAME}_summary.json").read_text())["subtool"]["tarball"]
    tarball = out / f"{NAME}.tar.gz"
    with tarfile.open(tarball, "r:gz") as tar:
        members = tar.getmembers()
    files = [m for m in members if m.isfile()]
    assert figures == {
        "files": len(files),
        "folders": sum(1 for m in members if m.isdir()),
        "bytes": tarball.stat().st_size,
        "content_bytes": sum(m.size for m in files),
    }


def test_run_script_is_executable_and_brackets_each_command_with_date_pairs(tree, tmp_path):
    _, _, out, result = _pack_two_runs(tree, tmp_path)
    assert result.exit_code == 0, result.output
    script_path = out / f"{NAME}.run"
    assert os.access(script_path, os.X_OK)
    lines = script_path.read_text().splitlines()
    stamp = f"date -u >> {NAME}.tstamps"
    for command in ("subtool run --scenario SingleStream", "subtool run --model bert-99 --scenario Offline"):
        i = next(i for i, line in enumerate(lines) if line.startswith(command))
        assert lines[i - 1] == stamp and lines[i + 1] == stamp, lines[i - 1 : i + 2]
    assert sum(1 for line in lines if line == stamp) == 4


def test_run_script_records_a_non_default_rules_version_in_every_command(tree, tmp_path):
    run = _producing_run(
        tree, tmp_path / "runs", "Offline", command=["subtool", "all", "--submitter", "OldTeam", "--out", "o"]
    )
    out = tmp_path / "out"
    result = _pack(tree, out, "--runs", str(run), "--version", "v6.0", *WAIVE_SHORT)
    assert result.exit_code in (0, 1), result.output
    script = (out / f"{NAME}.run").read_text()
    assert f"\nsubtool pack {tree} --out {out} --runs {run} --version v6.0 --waive perf.min_duration\n" in script
    assert (
        f"\nsubtool package --from {run} --submitter TeamX --division open --system box --version v6.0 --out {tree}\n"
        in script
    )


def test_one_command_that_made_several_run_directories_is_run_once(tree, tmp_path):
    argv = ["subtool", "all", "--submitter", "TeamX", "--out", "subtool-out"]
    runs = tmp_path / "runs"
    _producing_run(tree, runs, "Offline", command=argv, env={})
    _producing_run(tree, runs, "SingleStream", command=argv, env={})
    out = tmp_path / "out"
    assert _pack(tree, out, "--runs", str(runs), *WAIVE_SHORT).exit_code == 0
    script = (out / f"{NAME}.run").read_text()
    assert script.count(" ".join(argv)) == 1, script


def test_an_environment_variable_only_one_run_had_is_exported_for_that_run_only(tree, tmp_path):
    run_a = _run_dir(tmp_path / "runs" / "Offline", env={"OMP_NUM_THREADS": "2", "ONLY_A": "yes"})
    run_b = _run_dir(
        tmp_path / "runs" / "SingleStream",
        scenario="SingleStream",
        tstamps=["Thu Nov 26 02:00:00 UTC 2026", "Thu Nov 26 02:10:00 UTC 2026"],
        command=["subtool", "run", "--scenario", "SingleStream"],
        env={"OMP_NUM_THREADS": "2"},
    )
    out = tmp_path / "out"
    assert _pack(tree, out, "--runs", str(run_a), "--runs", str(run_b), *WAIVE_SHORT).exit_code == 0
    lines = (out / f"{NAME}.run").read_text().splitlines()
    common = lines.index("# Environment variables the runs used (no secrets)")
    first = next(i for i, line in enumerate(lines) if line.startswith("# 1. "))
    second = next(i for i, line in enumerate(lines) if line.startswith("# 2. "))
    assert "export OMP_NUM_THREADS=2" in lines[common:first] and "export ONLY_A=yes" not in lines[common:first]
    assert "export ONLY_A=yes" in lines[first:second]  # run 1 (the Offline one, oldest) had it


def test_tstamps_without_run_directories_span_every_result(tree, tmp_path):
    from subtool.pack.inputs import TimeWindow, scan_tree
    from subtool.scoring.integrity import check_tstamps

    out = tmp_path / "out"
    assert _pack(tree, out, *WAIVE_SHORT).exit_code == 0
    results = scan_tree(tree).results
    windows = [(r.rel_dir, r.window.begin, r.window.end) for r in results]
    assert check_tstamps(str(out / f"{NAME}.tstamps"), windows, slack_s=0) == []  # the scorer's own test
    last = max(r.window.end for r in results)
    assert (out / f"{NAME}.tstamps").read_text().splitlines()[1] == TimeWindow(last, last).lines()[1]


def test_a_run_whose_pair_starts_after_its_result_began_does_not_cover_it(tree, tmp_path):
    from datetime import timedelta

    from subtool.mlperf.run_record import date_u
    from subtool.pack.inputs import scan_tree
    from subtool.scoring.integrity import check_tstamps

    [offline] = [r for r in scan_tree(tree).results if r.scenario == "Offline"]
    late = offline.window.begin.replace(microsecond=0) + timedelta(seconds=1)
    run = _producing_run(tree, tmp_path / "runs", "Offline")
    record = json.loads((run / "run.json").read_text())
    record["tstamps"] = [date_u(late), record["tstamps"][1]]  # the `date -u` before the run came after it began
    (run / "run.json").write_text(json.dumps(record))
    out = tmp_path / "out"
    assert _pack(tree, out, "--runs", str(run), *WAIVE_SHORT).exit_code == 0
    windows = [(r.rel_dir, r.window.begin, r.window.end) for r in scan_tree(tree).results]
    assert check_tstamps(str(out / f"{NAME}.tstamps"), windows, slack_s=0) == []


def test_run_style_from_the_logs_and_from_several_runs():
    from subtool.pack.api import _run_style
    from subtool.pack.inputs import ResultInfo, RunInfo, TreeInfo

    def tree_of(*durations):
        results = [
            ResultInfo("open", "T", "box", "bert-99", sc, f"r/{sc}", perf={"effective_min_duration_ms": d})
            for sc, d in zip(("Offline", "SingleStream"), durations)
        ]
        return TreeInfo(Path("t"), [], results)

    assert _run_style([], None, tree_of(600_000, 600_000), frozenset()) == "valid"
    assert _run_style([], None, tree_of(300_000), frozenset()) == "short"  # 5 minutes is not the official 10
    assert _run_style([], None, tree_of(300_000, 600_000), frozenset()) == "short"  # one short run is enough

    def run(style):
        return RunInfo(Path(style), "bert-99", "Offline", style, False, [], [], {}, {}, {})

    assert _run_style([run("short"), run("valid")], None, tree_of(), frozenset()) == "mixed (short, valid)"


def test_tstamps_without_run_directories_is_one_pair_from_the_first_begin_to_the_last_end():
    from datetime import datetime, timezone

    from subtool.pack.inputs import ResultInfo, TimeWindow, TreeInfo
    from subtool.pack.runs import PackedRuns
    from subtool.pack.runscript import render_tstamps

    def at(hour, minute):
        return datetime(2026, 11, 26, hour, minute, 0, tzinfo=timezone.utc)

    results = [
        ResultInfo("open", "T", "box", "bert-99", "Offline", "r/Offline", window=TimeWindow(at(2, 0), at(2, 10))),
        ResultInfo("open", "T", "box", "bert-99", "Server", "r/Server", window=None),
        ResultInfo("open", "T", "box", "bert-99", "SingleStream", "r/SS", window=TimeWindow(at(1, 0), at(1, 5))),
    ]
    text = render_tstamps(PackedRuns(runs=[]), TreeInfo(Path("t"), [], results))
    assert text == "Thu Nov 26 01:00:00 UTC 2026\nThu Nov 26 02:10:00 UTC 2026\n"


@pytest.mark.parametrize("change", ["drop", "add"])
def test_a_member_dropped_or_added_and_the_tarball_line_rehashed_fails_verify(tree, tmp_path, change):
    """Someone re-packs without a file (or with one more) and updates the tarball's hash in the manifest: the
    checker does not need open/TeamX/src/README.md, so only the member list can tell."""
    out = tmp_path / "out"
    assert _pack(tree, out, *WAIVE_SHORT).exit_code == 0
    tarball, manifest = out / f"{NAME}.tar.gz", out / f"{NAME}.sha256"
    target = "open/TeamX/src/README.md" if change == "drop" else "open/TeamX/src/extra.py"
    rebuilt = tmp_path / "t.tar.gz"
    with (
        tarfile.open(tarball, "r:gz") as old,
        gzip.GzipFile(rebuilt, "wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as new,
    ):
        for member in old.getmembers():
            if member.name != target:
                new.addfile(member, old.extractfile(member) if member.isfile() else None)
        if change == "add":
            info = tarfile.TarInfo(target)
            info.size = 6
            new.addfile(info, io.BytesIO(b"x = 1\n"))
    old_hash = hashlib.sha256(tarball.read_bytes()).hexdigest()
    shutil.move(rebuilt, tarball)
    manifest.write_text(manifest.read_text().replace(old_hash, hashlib.sha256(tarball.read_bytes()).hexdigest()))
    result = _verify(tarball)
    assert result.exit_code == 1
    problems = _stdout_json(result)["problems"]
    said = "in the manifest but not in the tarball" if change == "drop" else "in the tarball but not in the manifest"
    assert problems == [f"{target}: {said}"], problems


def test_a_tarball_renamed_or_missing_from_its_manifest_fails_verify(tree, tmp_path):
    out = tmp_path / "out"
    assert _pack(tree, out, "--name", "teamx", *WAIVE_SHORT).exit_code == 0
    (out / "teamx.tar.gz").rename(out / "other.tar.gz")
    (out / "teamx.sha256").rename(out / "other.sha256")
    result = _verify(out / "other.tar.gz")
    assert result.exit_code == 1
    assert any("the manifest is for teamx.tar.gz, not other.tar.gz" in p for p in _stdout_json(result)["problems"])
    out2 = tmp_path / "out2"
    assert _pack(tree, out2, *WAIVE_SHORT).exit_code == 0
    manifest = out2 / f"{NAME}.sha256"
    manifest.write_text("".join(ln for ln in manifest.read_text().splitlines(True) if not ln.endswith(".tar.gz\n")))
    result = _verify(out2 / f"{NAME}.tar.gz")
    assert result.exit_code == 1
    assert f"the manifest has no hash for {NAME}.tar.gz" in _stdout_json(result)["problems"]


def test_every_member_carries_source_date_epoch_as_its_mtime(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    out = tmp_path / "out"
    assert _pack(tree, out, *WAIVE_SHORT).exit_code == 0
    with tarfile.open(out / f"{NAME}.tar.gz", "r:gz") as tar:
        assert {m.mtime for m in tar.getmembers()} == {1700000000}


@pytest.mark.parametrize("value", ["-1", "soon"])
def test_a_source_date_epoch_that_is_not_seconds_since_1970_is_refused(tree, tmp_path, monkeypatch, value):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    result = _pack(tree, tmp_path / "out", *WAIVE_SHORT)
    assert result.exit_code == 2 and "[pack.mtime]" in result.output, result.output


def test_a_token_under_an_innocent_variable_name_stays_out_of_the_run_script(tree, tmp_path):
    env = {"OMP_NUM_THREADS": "2", "HUB": "hf_notarealtoken", "LLM": "sk-notarealkey", "CHAT": "xoxb-notreal"}
    run = _run_dir(tmp_path / "runs" / "Offline", env=env)
    out = tmp_path / "out"
    assert _pack(tree, out, "--runs", str(run), *WAIVE_SHORT).exit_code == 0
    for artifact in (f"{NAME}.run", f"{NAME}.md"):
        text = (out / artifact).read_text()
        assert "export OMP_NUM_THREADS=2" in text or artifact.endswith(".md")
        assert not any(secret in text for secret in ("hf_not", "sk-not", "xoxb-not")), artifact


def test_the_report_says_fail_on_each_result_the_checker_failed(tree, tmp_path):
    out = tmp_path / "out"
    assert _pack(tree, out).exit_code == 1  # short runs, perf.min_duration not waived
    rows = [ln for ln in (out / f"{NAME}.md").read_text().splitlines() if ln.startswith("| box | bert-99 |")]
    assert len(rows) == 2 and all("FAIL: `perf.min_duration`" in row for row in rows), rows


def test_a_division_folder_that_is_a_link_is_refused_by_the_tarball_walk_itself(tmp_path):
    """The checker reports the link first, but the tarball's own walk must refuse it too (pack's last line): a
    linked open/ skipped silently would make a tarball without the results it was meant to hold."""
    from subtool.errors import SubtoolError
    from subtool.pack.tarball import iter_tree

    real = tmp_path / "elsewhere" / "TeamX"
    real.mkdir(parents=True)
    (real / "README.md").write_text("x\n")
    tree = tmp_path / "tree"
    (tree / "closed" / "TeamX").mkdir(parents=True)
    (tree / "closed" / "TeamX" / "README.md").write_text("x\n")
    (tree / "open").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(SubtoolError) as err:
        list(iter_tree(tree))
    assert err.value.rule == "tree.symlink" and "open" in str(err.value)


def test_a_result_without_loadgen_times_needs_no_covering_pair_and_never_crashes():
    from subtool.pack.inputs import ResultInfo, TimeWindow
    from subtool.pack.runs import covered

    rel = "closed/TeamX/results/box/bert-99/Offline"
    timeless = ResultInfo("closed", "TeamX", "box", "bert-99", "Offline", rel)
    assert covered(timeless, []) and covered(timeless, [["garbage"]])
    from datetime import datetime, timezone

    moment = datetime(2026, 11, 26, 1, 52, 6, tzinfo=timezone.utc)
    timed = ResultInfo("closed", "TeamX", "box", "bert-99", "Offline", rel, window=TimeWindow(moment, moment))
    assert not covered(timed, [])
    assert covered(timed, [["Thu Nov 26 01:52:00 UTC 2026", "Thu Nov 26 01:53:00 UTC 2026"]])


@pytest.mark.parametrize(
    "lie",
    [
        ["Thu Nov 26 01:52:06 UTC 2026\nrm -rf ~", "Thu Nov 26 01:55:10 UTC 2026"],  # a line of its own in .tstamps
        ["Mon Feb 30 01:52:06 UTC 2026", "Thu Nov 26 01:55:10 UTC 2026"],  # the shape of a date, but none
        ["Thu Nov 26 01:55:10 UTC 2026", "Thu Nov 26 01:52:06 UTC 2026"],  # ends before it starts
        ["Thu Nov 26 01:52:06 UTC 2026"],  # a start with no end
        ["yesterday", "today"],
    ],
)
def test_run_json_tstamps_that_are_no_date_u_pairs_are_refused_and_nothing_is_written(tree, tmp_path, lie):
    """pack copies run.json's pair into `.tstamps`, which the scorer trusts to say when the runs happened."""
    run = _producing_run(tree, tmp_path / "runs", "Offline")
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "tstamps": lie}))
    out = tmp_path / "out"
    result = _pack(tree, out, "--runs", str(run), *WAIVE_SHORT)
    assert result.exit_code == 2 and "[pack.run_dir]" in result.output and "tstamps" in result.output, result.output
    lines = result.output.strip().splitlines()  # the line break in the lie is not printed as one
    assert lines[0].startswith("error: ") and all(line.startswith("  hint: ") for line in lines[1:]), lines
    assert not out.exists()


def test_a_system_description_written_as_html_or_links_is_text_in_the_md(tree, tmp_path):
    """The .md's platform section showed system_name raw in its heading and escaped only `|` in the table, so a
    team's `<img src=x onerror=...>` or `[a link](...)` reached the organisers' .md as live HTML and a link."""
    box = tree / "open" / "TeamX" / "systems" / "box.json"
    fields = json.loads(box.read_text())
    fields.update(system_name="<img src=x onerror=alert(1)>", host_processor_model_name="[CPU](https://evil.example)")
    box.write_text(json.dumps(fields, indent=2))
    out = tmp_path / "out"
    _pack(tree, out, *WAIVE_SHORT)
    md = (out / f"{NAME}.md").read_text()
    assert "### &lt;img src=x onerror=alert(1)&gt;" in md, md
    assert "<img" not in md, [line for line in md.splitlines() if "<img" in line]
    assert "| `[CPU](https://evil.example)` |" in md  # a code span: no renderer links it


def test_a_system_description_holding_a_lone_surrogate_is_packed_with_its_replacement_not_a_crash(tree, tmp_path):
    """JSON may spell a lone surrogate (\\ud800), which Python reads into a string no UTF-8 writer takes: check
    passed the tree (as the official checker does) and pack then ended in a UnicodeEncodeError writing the summary
    CSV. Written as U+FFFD now, as score's leaderboards write it."""
    box = tree / "open" / "TeamX" / "systems" / "box.json"
    box.write_text(box.read_text().replace('"Test CPU 9000"', '"Test CPU \\ud800"'))
    out = tmp_path / "out"
    result = _pack(tree, out, *WAIVE_SHORT)
    assert result.exit_code == 0, result.output
    assert _stdout_json(result)["verdict"] == "PASS"
    assert "Test CPU \ufffd" in (out / f"{NAME}_summary.csv").read_text(encoding="utf-8")
    assert "Test CPU \ufffd" in (out / f"{NAME}.md").read_text(encoding="utf-8")
