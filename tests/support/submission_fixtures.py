"""Fixtures shared by tests/package/, tests/pack/ and the pipeline tests (a pytest plugin: tests/conftest.py).
Each helper's fixtures carry its prefix (package: `pkg_`)."""

from __future__ import annotations

# ============================================================================ package (pkg_) fixtures
# Real LoadGen runs of an instant SUT (bert-99 shaped: 10833 samples), each in its own process (LoadGen counts
# conf files per process and reads audit.config from its working directory), laid out as the three inputs
# `subtool package` takes: subtool run directories, an MLC raw-results tree, and loose log directories.
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from support.once import once_per_session

PKG_LOADGEN_SCRIPT = r"""
import array, json, sys, time
from pathlib import Path
import mlperf_loadgen as lg
spec = json.loads(sys.argv[1])
out = Path(spec["out"]); out.mkdir(parents=True, exist_ok=True)
scenario, mode, conf_name = spec["scenario"], spec["mode"], spec["conf_name"]
conf = Path(spec["user_conf"])
settings = lg.TestSettings()
settings.FromConfig(str(conf), conf_name, scenario)
settings.scenario = getattr(lg.TestScenario, scenario)
settings.mode = lg.TestMode.PerformanceOnly if mode == "performance" else lg.TestMode.AccuracyOnly
for key, value in (spec.get("seeds") or {}).items():
    setattr(settings, key, value)
payload = array.array("B", bytes(range(32)))
addr, size = payload.buffer_info()
def issue(queries):
    if spec.get("sleep_s") and mode == "performance":
        time.sleep(spec["sleep_s"])     # slower than LoadGen expects, so that the short run is VALID
    lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, addr, size) for q in queries])
sut = lg.ConstructSUT(issue, lambda: None)
qsl = lg.ConstructQSL(spec["total"], spec["total"], lambda s: None, lambda s: None)
log = lg.LogSettings()
log.log_output.outdir = str(out)
log.log_output.copy_summary_to_stdout = False
log.enable_trace = False
lg.StartTestWithLogSettings(sut, qsl, settings, log)
lg.DestroyQSL(qsl)
lg.DestroySUT(sut)
trace = out / "mlperf_log_trace.json"
if trace.exists() and trace.stat().st_size == 0:
    trace.unlink()
"""

# Seeds of the v5.1 round (LoadGen 6.0.17 carries v6.1's); set on TestSettings to make v5.1-layout fixtures.
PKG_V51_SEEDS = {
    "qsl_rng_seed": 1780908523862526354,
    "sample_index_rng_seed": 14771362308971278857,
    "schedule_rng_seed": 18209322760996052031,
}
PKG_ACCURACY_LINE = '{"exact_match": 83.412, "f1": 90.502}'
PKG_MEASUREMENTS = {
    "input_data_types": "int32",
    "retraining": "No",
    "starting_weights_filename": "model.pytorch",
    "weight_data_types": "fp32",
    "weight_transformations": "none",
}
# Short but VALID runs of an instant SUT on 2 cores.
PKG_CONF = {
    "Offline": {"target_qps": 100000, "min_duration": 200},
    "Server": {"target_qps": 20000, "min_duration": 300, "min_query_count": 300},
    "SingleStream": {"target_latency": 0.02, "min_duration": 200},
}
PKG_TEST01_AUDIT = (
    "*.*.mode = 2\n*.*.accuracy_log_rng_seed = 720381539243781796\n*.*.accuracy_log_sampling_target = 64\n"
)


def pkg_user_conf(conf_name: str, scenario: str) -> str:
    return "".join(f"{conf_name}.{scenario}.{k} = {v}\n" for k, v in PKG_CONF[scenario].items())


def _pkg_loadgen(
    out: Path,
    scenario: str,
    mode: str,
    *,
    conf_name: str = "bert",
    total: int = 10833,
    seeds: dict | None = None,
    audit: str | None = None,
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".work-{out.name}-{mode}"
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "user.conf"
    conf.write_text(pkg_user_conf(conf_name, scenario))
    if audit:
        (work / "audit.config").write_text(audit)
    spec = {
        "out": str(out),
        "scenario": scenario,
        "mode": mode,
        "conf_name": conf_name,
        "user_conf": str(conf),
        "total": total,
        "seeds": seeds,
        "sleep_s": {"Offline": 0.25, "SingleStream": 5e-5}.get(scenario, 0),
    }
    proc = subprocess.run(
        [sys.executable, "-c", PKG_LOADGEN_SCRIPT, json.dumps(spec)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"LoadGen fixture run failed: {proc.stderr[-2000:]}")
    shutil.rmtree(work)
    return out


def _pkg_make_run_dir(
    run_dir: Path,
    scenario: str,
    *,
    seeds: dict | None,
    test01: bool,
    conf_name: str = "bert",
    total: int = 10833,
    model: str = "bert-99",
    demo: bool = False,
) -> Path:
    jobs = [(run_dir / "performance" / "run_1", "performance", None), (run_dir / "accuracy", "accuracy", None)]
    if test01:
        jobs.append((run_dir / "TEST01" / "performance" / "run_1", "performance", PKG_TEST01_AUDIT))
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(
            pool.map(
                lambda j: _pkg_loadgen(j[0], scenario, j[1], conf_name=conf_name, total=total, seeds=seeds, audit=j[2]),
                jobs,
            )
        )
    (run_dir / "user.conf").write_text(pkg_user_conf(conf_name, scenario))
    (run_dir / "accuracy" / "accuracy.txt").write_text(PKG_ACCURACY_LINE + "\n")
    compliance = {}
    if test01:
        t = run_dir / "TEST01"
        # The TEST01 audit run logs sampled accuracy in performance mode; run_verification.py moves that log to
        # TEST01/accuracy and writes the two verdict files. HAND-WRITTEN here: the two verdict files are fixed
        # text, not run_verification.py's output on this run (see tests/fixtures/README.md).
        (t / "accuracy").mkdir(parents=True, exist_ok=True)
        shutil.move(
            str(t / "performance" / "run_1" / "mlperf_log_accuracy.json"), t / "accuracy" / "mlperf_log_accuracy.json"
        )
        (t / "verify_accuracy.txt").write_text("Reading accuracy mode results...\nTEST PASS\n")
        (t / "verify_performance.txt").write_text("reference score : 1\ntest score : 1\nTEST PASS\n")
        compliance["TEST01"] = {"dir": "TEST01", "passed": True}
    detail = (run_dir / "performance" / "run_1" / "mlperf_log_detail.txt").read_text()
    validity = "VALID" if '"result_validity", "value": "VALID"' in detail else "INVALID"
    run = {
        "schema": "subtool.run/1",
        "subtool_version": "0.1.0",
        "model": model,
        "scenario": scenario,
        "run_style": "short",
        "demo": demo,
        "division_hint": "open" if demo else "closed",
        "backend": "instant-test-sut",
        "precision": "fp32",
        "model_path": None,
        "dataset_path": None,
        "versions": {"loadgen": "6.0.17", "python": sys.version.split()[0]},
        "settings": PKG_CONF[scenario],
        "tstamps": ["Thu Nov 26 01:52:06 UTC 2026", "Thu Nov 26 01:55:10 UTC 2026"],
        "command": ["subtool", "run", "--model", model, "--scenario", scenario, "--run-style", "short"],
        "env": {},
        "modes": {
            "performance": {"dir": "performance/run_1", "result_validity": validity},
            "accuracy": {"dir": "accuracy", "metrics": {"exact_match": 83.412, "f1": 90.502}},
        },
        "compliance": compliance,
        "measurements": dict(PKG_MEASUREMENTS),
    }
    (run_dir / "run.json").write_text(json.dumps(run, indent=2))
    return run_dir


@pytest.fixture(scope="session")
def pkg_lg(tmp_path_factory) -> dict[str, Path]:
    """Pristine inputs built once per session; tests copy what they modify (see `pkg_copy`)."""
    base = tmp_path_factory.mktemp("pkg_lg")
    specs = {
        "Offline": dict(scenario="Offline", seeds=None, test01=True),
        "SingleStream": dict(scenario="SingleStream", seeds=None, test01=True),
        "Server": dict(scenario="Server", seeds=None, test01=False),
        "v51_Offline": dict(scenario="Offline", seeds=PKG_V51_SEEDS, test01=True),
        "v51_SingleStream": dict(scenario="SingleStream", seeds=PKG_V51_SEEDS, test01=True),
        "llama_Offline": dict(
            scenario="Offline", seeds=None, test01=False, conf_name="llama2-70b", total=24576, model="llama2-70b-99"
        ),
    }
    dirs = {}
    for name, spec in specs.items():
        dirs[name] = _pkg_make_run_dir(base / "runs" / name, **spec)
    demo = base / "runs" / "demo_Offline"
    shutil.copytree(dirs["Offline"], demo)
    run = json.loads((demo / "run.json").read_text())
    run.update(demo=True, division_hint="open")
    run["measurements"]["starting_weights_filename"] = "subtool embedded demo: random weights"
    (demo / "run.json").write_text(json.dumps(run, indent=2))
    dirs["demo_Offline"] = demo
    dirs["mlc"] = _pkg_make_mlc_tree(base / "mlc_results", dirs)
    dirs["loose"] = _pkg_make_loose(base / "nvidia_logs", dirs["Offline"])
    dirs["base"] = base
    return dirs


def _pkg_make_mlc_tree(root: Path, dirs: dict[str, Path]) -> Path:
    """MLC's raw results: <system>/system_meta.json, <model>/<scenario>/{performance/run_1,accuracy,TEST01}."""
    system = root / "mlc_box-reference-cpu-pytorch"
    meta = {
        "division": "open",
        "submitter": "MLCommons",
        "status": "available",
        "system_name": "MLC test box",
        "system_type": "edge",
        "number_of_nodes": "1",
        "host_processor_model_name": "Test CPU 9000",
        "host_processors_per_node": "1",
        "host_processor_core_count": "2",
        "host_memory_capacity": "24 GB",
        "host_storage_capacity": "100 GB",
        "host_storage_type": "SSD",
        "accelerators_per_node": "0",
        "accelerator_model_name": "N/A",
        "framework": "pytorch",
        "operating_system": "Ubuntu 22.04",
        "cooling": "air",
        "hw_notes": "",
        "sw_notes": "Automated by MLCommons CM v2.3.9.",
    }
    system.mkdir(parents=True)
    (system / "system_meta.json").write_text(json.dumps(meta, indent=2))
    for scenario in ("Offline", "SingleStream"):
        src = dirs[scenario]
        scen = system / "bert-99" / scenario
        shutil.copytree(src / "performance", scen / "performance")
        shutil.copytree(src / "accuracy", scen / "accuracy")
        shutil.copytree(src / "TEST01", scen / "TEST01")
        perf = scen / "performance" / "run_1"
        # what MLC writes beside the logs (only some of it belongs in the tree)
        (perf / "measurements.json").write_text(json.dumps(PKG_MEASUREMENTS, indent=2))
        shutil.copy(src / "user.conf", perf / "user.conf")
        (perf / "README.md").write_text("*Check [MLC MLPerf docs](https://docs.mlcommons.org/inference).*\n")
        (perf / "mlc-host-info.json").write_text('{"os_version": "Linux"}\n')
        (perf / "model_mapping.json").write_text('{"bert-99": "bert-99"}\n')
        (scen / "accuracy" / "accuracy.txt").write_text(
            "Reading examples...\nEvaluating predictions...\n" + PKG_ACCURACY_LINE + "\n"
        )
    return root


def _pkg_make_loose(root: Path, run_dir: Path) -> Path:
    """NVIDIA-harness-like loose dirs: LoadGen files only (plus the harness's accuracy.txt), no user.conf."""
    shutil.copytree(run_dir / "performance" / "run_1", root / "Offline_performance")
    shutil.copytree(run_dir / "accuracy", root / "Offline_accuracy")
    shutil.copytree(run_dir / "TEST01", root / "Offline_TEST01" / "TEST01")
    return root


@pytest.fixture()
def pkg_copy(tmp_path):
    """Copy a pristine fixture input into this test's tmp dir (for tests that damage it)."""

    def copy(src: Path, name: str | None = None) -> Path:
        dst = tmp_path / "inputs" / (name or src.name)
        shutil.copytree(src, dst)
        return dst

    return copy


@pytest.fixture()
def pkg_official(official_checker):
    """The official checker's directory (`tools/submission`), or skip (CI has no copy of it)."""
    return official_checker


@pytest.fixture(scope="session")
def pkg_accuracy_line() -> str:
    return PKG_ACCURACY_LINE


# ======================================================================== end of package (pkg_) fixtures


# ======================================================================== two demos (two_) fixtures
# One team, two benchmarks, one --out: the README's bert demo, then the llama3.1-8b demo, each a real
# `subtool all` (run → package → check → pack) in its own process. Made once per session: several tests read it.
TWO_DEMO_COMMANDS = (["--submitter", "TeamX"], ["--submitter", "TeamX", "--model", "llama3.1-8b", "--demo"])


def _demo_all(out: Path, args: list[str], cache: Path) -> dict:
    """One `subtool all ARGS --out OUT --json` in its own process: its JSON document, stderr and argv."""
    argv = ["all", *args, "--out", str(out), "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "subtool.cli", *argv],
        capture_output=True,
        text=True,
        timeout=1500,
        env={**os.environ, "SUBTOOL_CACHE": str(cache)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"doc": json.loads(proc.stdout), "stderr": proc.stderr, "argv": ["subtool", *argv]}


def copy_out(src: Path, dst: Path) -> Path:
    """Copy a `subtool all` --out as it is: links stay links and hard links stay one file (full_logs/ holds the
    run's 65 MB accuracy log under a second name, and a test checks that it is stored once)."""
    seen: dict[tuple[int, int], str] = {}

    def copy(s: str, d: str) -> None:
        st = os.stat(s)
        if st.st_nlink > 1 and (st.st_dev, st.st_ino) in seen:
            os.link(seen[st.st_dev, st.st_ino], d)
        else:
            shutil.copy2(s, d)
            seen[st.st_dev, st.st_ino] = d

    shutil.copytree(src, dst, symlinks=True, copy_function=copy)
    return dst


@pytest.fixture(scope="session")
def bert_demo_all(tmp_path_factory, subtool_cache) -> tuple[Path, dict]:
    """The README's bert demo, `subtool all --submitter TeamX --out OUT --json`, run once per session (by the first
    xdist worker that needs it: support/once.py): the pipeline tests' uninterrupted reference run and the first of
    the two demos. Pristine: tests copy what they change (`all` on a copy of its --out resumes like the original:
    test_pipeline.py proves it)."""
    pytest.importorskip("torch")
    pytest.importorskip("mlperf_loadgen")

    def build(work: Path) -> dict:
        out = work / "out"
        return {"out": str(out), **_demo_all(out, TWO_DEMO_COMMANDS[0], subtool_cache)}

    made = once_per_session(tmp_path_factory, "bert_demo_all", build)
    return Path(made.pop("out")), made


@pytest.fixture(scope="session")
def two_demos(tmp_path_factory, subtool_cache, bert_demo_all):
    """A copy of the session's bert demo run (its argv names the --out it ran in), then the llama demo into it;
    once per session as bert_demo_all is."""

    def build(work: Path) -> dict:
        out = copy_out(bert_demo_all[0], work / "out")
        return {"out": str(out), "docs": [bert_demo_all[1], _demo_all(out, TWO_DEMO_COMMANDS[1], subtool_cache)]}

    made = once_per_session(tmp_path_factory, "two_demos", build)
    return Path(made["out"]), made["docs"]


# ==================================================================== end of two demos (two_) fixtures
