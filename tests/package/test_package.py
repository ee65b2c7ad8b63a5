"""`subtool package` from subtool run directories: the v6.1 tree, the system JSON, truncation, demo labels,
bad names and output directories, and what the official checker says about the produced tree."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.official import official_errors
from typer.testing import CliRunner

from subtool.cli import app
from subtool.errors import SubtoolError
from subtool.package.api import PackageOptions, package_results
from subtool.package.system import validation_errors

runner = CliRunner()


def pkg_opts(out: Path, *from_dirs: Path, **kw) -> PackageOptions:
    base = dict(
        from_dirs=list(from_dirs),
        perf=None,
        acc=None,
        compliance=[],
        model=None,
        scenario=None,
        submitter="TeamX",
        division=None,
        system="box1",
        system_file=None,
        out=out,
    )
    base.update(kw)
    return PackageOptions(**base)


def tree_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------ happy path
def test_run_dir_to_v61_tree(pkg_lg, tmp_path):
    out = tmp_path / "tree"
    res = package_results(pkg_opts(out, pkg_lg["Offline"]))
    assert [(r.division, r.system, r.model, r.scenario, r.run_style) for r in res.results] == [
        ("closed", "box1", "bert-99", "Offline", "short")
    ]
    sub = out / "closed" / "TeamX"
    result = sub / "results" / "box1" / "bert-99" / "Offline"
    expected = {
        "README.md",
        "measurements.json",
        "user.conf",
        "performance/run_1/mlperf_log_summary.txt",
        "performance/run_1/mlperf_log_detail.txt",
        "performance/run_1/mlperf_log_accuracy.json",
        "accuracy/mlperf_log_summary.txt",
        "accuracy/mlperf_log_detail.txt",
        "accuracy/accuracy.txt",
        "accuracy/mlperf_log_accuracy.json",
        "TEST01/verify_accuracy.txt",
        "TEST01/verify_performance.txt",
        "TEST01/performance/run_1/mlperf_log_summary.txt",
        "TEST01/performance/run_1/mlperf_log_detail.txt",
        "TEST01/accuracy/mlperf_log_accuracy.json",
        "TEST01/accuracy/accuracy.txt",
    }
    assert {str(p.relative_to(result)) for p in result.rglob("*") if p.is_file()} == expected
    # the performance logs are byte-identical copies
    src = pkg_lg["Offline"] / "performance" / "run_1" / "mlperf_log_detail.txt"
    assert (result / "performance/run_1/mlperf_log_detail.txt").read_bytes() == src.read_bytes()
    # user.conf is the one LoadGen loaded, measurements from run.json
    assert (result / "user.conf").read_text() == (pkg_lg["Offline"] / "user.conf").read_text()
    meas = json.loads((result / "measurements.json").read_text())
    assert meas["weight_data_types"] == "fp32" and meas["starting_weights_filename"] == "model.pytorch"
    # system JSON: valid against the schema, matching the folder
    sysjson = json.loads((sub / "systems" / "box1.json").read_text())
    assert validation_errors(sysjson, division="closed", submitter="TeamX") == []
    assert sysjson["system_type"] == "edge" and sysjson["system_name"] == "box1"
    # documentation/ and src/ (with the subtool source, no caches)
    assert (sub / "documentation" / "README.md").is_file() and (sub / "documentation" / "calibration.md").is_file()
    copied = sub / "src" / "subtool-0.1.0" / "subtool"
    assert (copied / "package" / "api.py").is_file()
    assert not [p for p in (sub / "src").rglob("*") if p.name == "__pycache__" or p.name.startswith(".")]
    assert (sub / "src" / "bert-99" / "README.md").is_file()
    readme = (result / "README.md").read_text()
    assert "Run style: short — not submittable: min_duration waived" in readme
    assert "subtool run --model bert-99 --scenario Offline" in readme
    # nothing but the tree (and the hidden full logs) at the root; no staging left behind
    assert sorted(p.name for p in out.iterdir()) == [".full_logs", "closed"]


def test_accuracy_log_truncated_officially_and_full_log_kept(pkg_lg, tmp_path, pkg_accuracy_line):
    out = tmp_path / "tree"
    res = package_results(pkg_opts(out, pkg_lg["Offline"]))
    acc = out / "closed/TeamX/results/box1/bert-99/Offline/accuracy"
    original = (pkg_lg["Offline"] / "accuracy" / "mlperf_log_accuracy.json").read_bytes()
    sha = hashlib.sha256(original).hexdigest()
    truncated = (acc / "mlperf_log_accuracy.json").read_bytes()
    assert len(original) > 100_000
    assert truncated == original[:4096] + b"\n\n...\n\n" + original[-4096:]
    assert len(truncated) <= 10240
    # accuracy.txt: what the harness wrote, a blank line, the hash of the full log
    assert (acc / "accuracy.txt").read_text() == f"{pkg_accuracy_line}\n\nhash={sha}\n"
    full = res.full_logs / "closed/TeamX/box1/bert-99/Offline/accuracy/mlperf_log_accuracy.json"
    assert full.read_bytes() == original
    # kept inside what the user named (hidden: never packed or published), nothing written beside it; on one
    # filesystem the full log is a second name of the run's file, not a second copy of its bytes
    assert res.full_logs == out / ".full_logs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]
    assert full.stat().st_ino == (pkg_lg["Offline"] / "accuracy" / "mlperf_log_accuracy.json").stat().st_ino
    # TEST01's sampled accuracy log: truncated too, with its own hash
    t01 = out / "closed/TeamX/results/box1/bert-99/Offline/TEST01/accuracy"
    t01_src = (pkg_lg["Offline"] / "TEST01/accuracy/mlperf_log_accuracy.json").read_bytes()
    assert (t01 / "accuracy.txt").read_text() == f"\nhash={hashlib.sha256(t01_src).hexdigest()}\n"
    # the source run directory is untouched
    assert (pkg_lg["Offline"] / "accuracy" / "accuracy.txt").read_text() == pkg_accuracy_line + "\n"


def test_cli_package_json_and_demo_labels(pkg_lg, tmp_path):
    out = tmp_path / "tree"
    r = runner.invoke(
        app, ["package", "--from", str(pkg_lg["demo_Offline"]), "--submitter", "TeamX", "--out", str(out), "--json"]
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    [res] = doc["results"]
    assert res["division"] == "open" and res["demo"] is True and "demo" in res["system"].lower()
    sub = out / "open" / "TeamX"
    result = Path(res["path"])
    assert "DEMO" in (result / "README.md").read_text()
    assert "DEMO" in (sub / "documentation" / "README.md").read_text()
    sysjson = json.loads((sub / "systems" / f"{res['system']}.json").read_text())
    assert "demo" in sysjson["system_name"].lower() and "DEMO" in sysjson["hw_notes"]
    assert sysjson["division"] == "open" and validation_errors(sysjson) == []


def test_demo_refuses_closed(pkg_lg, tmp_path):
    with pytest.raises(SubtoolError, match="demo run cannot go to the closed division"):
        package_results(pkg_opts(tmp_path / "t", pkg_lg["demo_Offline"], division="closed"))
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("name", ["Team X", "team/x", "", ".hidden"])
def test_bad_submitter_name_one_line_error(pkg_lg, tmp_path, name):
    out = tmp_path / "tree"
    r = runner.invoke(app, ["package", "--from", str(pkg_lg["Offline"]), "--submitter", name, "--out", str(out)])
    assert r.exit_code == 2
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "submitter" in err[0] and "[tree.bad_name]" in err[0]
    assert not out.exists()


def test_unwritable_out_dir(pkg_lg, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    r = runner.invoke(
        app, ["package", "--from", str(pkg_lg["Offline"]), "--submitter", "TeamX", "--out", str(blocker / "tree")]
    )
    assert r.exit_code == 2
    assert "--out cannot be written" in r.stderr and "[io.enotdir]" in r.stderr  # refused before anything runs
    assert blocker.read_text() == "not a directory"


def test_system_overrides_file_and_invalid_value(pkg_lg, tmp_path):
    good = tmp_path / "sys.toml"
    good.write_text(
        'cooling = "air"\nhost_memory_configuration = "2x12 GB"\nstatus = "preview"\n'
        '[measurements]\nweight_data_types = "bf16"\n'
    )
    out = tmp_path / "tree"
    package_results(pkg_opts(out, pkg_lg["Offline"], system_file=good))
    sysjson = json.loads((out / "closed/TeamX/systems/box1.json").read_text())
    assert (sysjson["cooling"], sysjson["status"]) == ("air", "preview")
    meas = json.loads((out / "closed/TeamX/results/box1/bert-99/Offline/measurements.json").read_text())
    assert meas["weight_data_types"] == "bf16"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"status": "sold", "accelerators_per_node": 0}))
    with pytest.raises(SubtoolError) as exc:
        package_results(pkg_opts(tmp_path / "t2", pkg_lg["Offline"], system_file=bad))
    msg = exc.value.one_line()
    assert "field 'status' is 'sold'; allowed values: available, preview, rdi" in msg
    assert "field 'accelerators_per_node' is 0" in msg and "[system.invalid]" in msg
    assert not (tmp_path / "t2").exists()


# ------------------------------------------------------------------------------ the official checker
# What the official checker said about these trees, recorded as data: only the 600 s minimum duration (the rule a
# short run waives) and its roll-up lines.
VERDICTS = json.loads((Path(__file__).parents[1] / "fixtures" / "package" / "official_verdicts.json").read_text())


@pytest.mark.parametrize(
    "case,inputs,kw",
    [
        ("closed_v6.1", ["Offline", "SingleStream"], dict(division="closed")),
        ("closed_v5.1", ["v51_Offline", "v51_SingleStream"], dict(division="closed", version="v5.1")),
        ("open_demo_v6.1", ["demo_Offline", "Server"], dict(division="open", system="box1-demo")),
    ],
)
def test_official_checker_verdicts(pkg_lg, pkg_official, tmp_path, case, inputs, kw):
    out = tmp_path / "tree"
    package_results(pkg_opts(out, *[pkg_lg[i] for i in inputs], **kw))
    if kw.get("version") == "v5.1":
        sub = out / "closed/TeamX"
        assert sorted(p.name for p in sub.iterdir()) == [
            "code",
            "compliance",
            "documentation",
            "measurements",
            "results",
            "systems",
        ]
        assert (sub / "measurements/box1/bert-99/Offline/box1_Offline.json").is_file()
    expected = VERDICTS["cases"][case]
    errors, _ = official_errors(pkg_official, out, expected["version"], tmp_path)
    assert sorted(errors) == expected["errors"]
    assert all(
        "Test duration less than 600s" in e or re.match(r"^(Some .*[Cc]hecks failed|NoResults|SUMMARY)", e)
        for e in errors
    )


def test_subtool_check_passes_the_tree_with_the_short_run_waived(pkg_lg, tmp_path):
    out = tmp_path / "tree"
    package_results(pkg_opts(out, pkg_lg["Offline"], pkg_lg["SingleStream"], division="closed"))
    r = runner.invoke(app, ["check", str(out), "--json"])
    assert r.exit_code == 1
    rules = {f["rule"] for f in json.loads(r.stdout)["findings"] if f["severity"] == "error"}
    assert rules == {"perf.min_duration"}
    r = runner.invoke(app, ["check", str(out), "--waive", "perf.min_duration"])
    assert r.exit_code == 0, r.output


def test_a_run_packaged_for_another_round_than_its_seeds_is_said_at_package_time(pkg_lg, tmp_path):
    """`subtool package --from RUN --version v5.1` of a run LoadGen 6.0.17 made with the v6.1 seeds packaged
    silently, and every check of the tree then failed perf.seeds: package says so, naming both ways out."""
    res = package_results(pkg_opts(tmp_path / "v51", pkg_lg["Offline"], division="closed", version="v5.1"))
    [note] = [n for n in res.results[0].notes if "seeds" in n]
    assert "v6.1 seeds" in note and "perf.seeds" in note and "--version v6.1" in note and "--version v5.1" in note
    r = runner.invoke(app, ["check", str(tmp_path / "v51"), "--version", "v5.1", "--json"])
    assert "perf.seeds" in {f["rule"] for f in json.loads(r.stdout)["findings"] if f["severity"] == "error"}
    # the run's own round, and a v5.1 run packaged for v5.1: nothing to say
    res = package_results(pkg_opts(tmp_path / "v61", pkg_lg["Offline"], division="closed"))
    assert not [n for n in res.results[0].notes if "seeds" in n]
    res = package_results(pkg_opts(tmp_path / "v51b", pkg_lg["v51_Offline"], division="closed", version="v5.1"))
    assert not [n for n in res.results[0].notes if "seeds" in n]


def test_from_the_runs_parent_directory(pkg_lg, tmp_path):
    """`subtool run --out OUT/runs` writes OUT/runs/<model>/<scenario>; --from OUT/runs packages all of them."""
    runs = tmp_path / "out" / "runs"
    shutil.copytree(pkg_lg["demo_Offline"], runs / "bert-99" / "Offline")
    shutil.copytree(pkg_lg["Server"], runs / "bert-99" / "Server")
    res = package_results(pkg_opts(tmp_path / "tree", runs, system=None, division="open"))
    assert sorted((r.scenario, r.demo) for r in res.results) == [("Offline", True), ("Server", False)]
    assert all(Path(r.source).parent == runs / "bert-99" for r in res.results)
    assert all("demo" in r.system for r in res.results if r.demo)
    readme = (res.results[0].path / "README.md").read_text()
    assert "Imported from a subtool run directory" in readme and "MLC" not in readme


# ------------------------------------------------------------------ a second benchmark joins (issue 20 item 9)
def test_system_type_widens_to_list_every_benchmark_never_narrows():
    from subtool.mlperf.benchmarks import BENCHMARKS
    from subtool.package.system_merge import merged_system_type

    bert, llama = BENCHMARKS["bert-99"], BENCHMARKS["llama3.1-8b"]
    assert merged_system_type("edge", [llama]) == "datacenter,edge"
    assert merged_system_type("datacenter", [bert]) == "datacenter,edge"
    assert merged_system_type("edge", [bert]) == "edge"
    assert merged_system_type("edge,datacenter", [bert, llama]) == "datacenter,edge"
    assert merged_system_type("", [bert, llama]) == "datacenter,edge"  # a new system: from its results
    assert merged_system_type(None, [llama]) == "datacenter"
    assert merged_system_type("mainframe", [bert]) == "edge"  # garbage: as for a new system


def test_nodes_come_from_the_runs_workers_and_lying_records_count_one():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from subtool.package.system_merge import run_nodes

    def imp(run):
        return type("Imp", (), {"run": run})()

    assert run_nodes(imp({"sut": {"per_worker": [{"node": "a"}, {"node": "b"}, {"node": "a"}]}})) == 2
    assert run_nodes(imp({"sut": {"workers": 4}})) == 1
    assert run_nodes(imp(None)) == 1

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=4),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=8,
    )

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.dictionaries(st.sampled_from(["sut", "per_worker", "node"]), json_values, max_size=2))
    def never_raises(run):
        assert run_nodes(imp(run)) >= 1

    never_raises()


def test_all_commands_name_the_tree_they_were_packaged_into():
    from subtool.mlperf.layout import ResultKey
    from subtool.package.documents import _retarget

    key = ResultKey("open", "TeamY", "box", "bert-99", "Offline")
    assert _retarget(["subtool", "all", "--submitter", "TeamX", "--out", "o"], key) == [
        "subtool",
        "all",
        "--submitter",
        "TeamY",
        "--out",
        "o",
    ]
    assert _retarget(["subtool", "all", "--submitter=TeamX", "--system", "old"], key) == [
        "subtool",
        "all",
        "--submitter=TeamY",
        "--system",
        "box",
    ]
    assert _retarget(["subtool", "run", "--model", "bert-99"], key) == ["subtool", "run", "--model", "bert-99"]


def test_source_pyproject_carries_the_installed_extras():
    import tomllib

    from subtool.package.documents import source_pyproject

    doc = tomllib.loads(source_pyproject())
    assert doc["project"]["name"] == "mlperf-subtool" and doc["project"]["version"] == "0.1.0"
    assert any(r.startswith("torch") for r in doc["project"]["optional-dependencies"]["run"])
    assert any(r.startswith("tomli") and "python_version" in r for r in doc["project"]["dependencies"])
    assert doc["project"]["scripts"] == {"subtool": "subtool.cli:main"}


def test_documents_of_a_tree_name_the_results_that_join_it_and_keep_the_submitters_words(pkg_lg, tmp_path):
    out = tmp_path / "tree"
    package_results(pkg_opts(out, pkg_lg["Offline"]))
    sub = out / "closed" / "TeamX"
    doc, src = sub / "documentation" / "README.md", sub / "src" / "README.md"
    doc.write_text(doc.read_text().replace("## Reproduce", "Our notes stay.\n\n## Reproduce"))
    package_results(pkg_opts(out, pkg_lg["SingleStream"]))
    text = doc.read_text()
    assert "- box1 / bert-99 / Offline — short run" in text and "- box1 / bert-99 / SingleStream — short run" in text
    assert "Our notes stay." in text and text.count("## Reproduce") == 1
    listed = [ln for ln in src.read_text().splitlines() if ln.startswith("- bert-99 ")]
    assert [ln.split(":")[0] for ln in listed] == ["- bert-99 Offline", "- bert-99 SingleStream"]
    # the source copy installs from the tree: `pip install './src/subtool-0.1.0[run]'`
    assert (sub / "src" / "subtool-0.1.0" / "pyproject.toml").is_file()
    readme = (sub / "results" / "box1" / "bert-99" / "SingleStream" / "README.md").read_text()
    assert "pip install './src/subtool-0.1.0[run]'" in readme and "mlperf-subtool==" not in readme


def _package_child(run: Path, out: Path, system: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "subtool.cli", "package", "--from", str(run), "--submitter", "TeamX"]
    cmd += ["--out", str(out), "--system", system]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_second_package_into_a_tree_waits_for_the_first(pkg_lg, tmp_path):
    """Deterministic: while the tree is held, a package into it waits and says so; released, it adds its result."""
    import fcntl
    import os

    out = tmp_path / "tree"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    child = _package_child(pkg_lg["demo_Offline"], out, "Held")
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(child.stderr), daemon=True)
    reader.start()
    try:
        # it says so once it finds the tree held, seconds after its start (no fixed 8 s sleep for a loaded machine)
        deadline = time.monotonic() + 120
        while "waiting for another subtool" not in "".join(said) and child.poll() is None:
            assert time.monotonic() < deadline, "".join(said)
            time.sleep(0.05)
        time.sleep(1)  # the line comes just before the wait: still waiting a second later, nothing written
        assert child.poll() is None, "".join(said)
        assert not (out / "open").exists()
    finally:
        os.close(fd)
    child.wait(timeout=120)
    reader.join(10)
    err = "".join(said)
    assert child.returncode == 0 and "waiting for another subtool" in " ".join(err.split()), err
    assert [p.name.split("-")[0] for p in (out / "open" / "TeamX" / "systems").glob("*.json")] == ["Held"]


def test_packages_into_one_tree_at_once_lose_nothing(pkg_lg, tmp_path):
    # found by probing: two at once deleted a result already in the tree and left half-written ones, both exit 0
    out = tmp_path / "tree"
    assert (
        runner.invoke(
            app,
            [
                "package",
                "--from",
                str(pkg_lg["demo_Offline"]),
                "--submitter",
                "TeamX",
                "--out",
                str(out),
                "--system",
                "Seed",
            ],
        ).exit_code
        == 0
    )
    children = [_package_child(pkg_lg["demo_Offline"], out, f"C{i}") for i in range(3)]
    for child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
    systems = sorted(p.stem for p in (out / "open" / "TeamX" / "systems").glob("*.json"))
    assert len(systems) == 4 and [s.split("-")[0] for s in systems] == ["C0", "C1", "C2", "Seed"], systems
    report = runner.invoke(app, ["check", str(out), "--waive", "perf.min_duration", "--json"])
    assert report.exit_code == 0, report.output


@pytest.mark.parametrize("where", [".", "tree"])
def test_a_tree_inside_its_own_input_is_refused(pkg_lg, tmp_path, where):
    run = tmp_path / "run"
    shutil.copytree(pkg_lg["demo_Offline"], run)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    out = run if where == "." else run / where
    r = runner.invoke(app, ["package", "--from", str(run), "--submitter", "TeamX", "--out", str(out)])
    assert r.exit_code == 2 and "[package.out_inside_input]" in " ".join(r.output.split()), r.output
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
