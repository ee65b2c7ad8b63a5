"""Submission trees for the checker's tests, built from real LoadGen logs.

`generate_runs(cache)` runs mlperf_loadgen once per benchmark/scenario with an instant SUT (100 ms minimum
duration, official seeds from the installed LoadGen) and keeps the logs; `TreeBuilder` lays them out as an
official tree by hand (this module does not use subtool.package), and the mutators break one rule each.

One stand-in: a 600 s run cannot be part of a fast test suite, so `full_duration=True` rewrites the
`effective_min_duration_ms` entry of a copied log to 600000 (everything else is what LoadGen wrote). Results
laid out with `full_duration=False` are honest short runs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # bench/ scripts import this module too
    sys.path.append(str(Path(__file__).resolve().parents[1]))
from support.loadgen_trees import (  # noqa: E402
    MEASUREMENTS,
    TOKEN_ANSWER,
    ZERO_ANSWER,
    LoadGenJob,
    run_loadgen,
    system_json,
)

# benchmark → how LoadGen knows it, QSL sizes, token answers, scenarios we generate, compliance tests, accuracy.txt
# line (what the benchmark's accuracy script prints)
BENCHMARKS = {
    "bert-99": dict(
        conf_model="bert",
        total=10833,
        perf=10833,
        tokens=False,
        scenarios=("Offline", "SingleStream"),
        compliance=("TEST01",),
        accuracy='{"exact_match": 83.65, "f1": 90.874}',
    ),
    "llama2-70b-99.9": dict(
        conf_model="llama2-70b",
        total=24576,
        perf=24576,
        tokens=True,
        scenarios=("Offline", "Server"),
        compliance=("TEST06",),
        accuracy="{'rouge1': 44.4312, 'rouge2': 22.0352, 'rougeL': 28.6162, "
        "'rougeLsum': 42.0, 'gen_len': 7239872, 'gen_num': 24576, "
        "'tokens_per_sample': 294.6}",
    ),
    "llama3.1-8b": dict(
        conf_model="llama3_1-8b",
        total=13368,
        perf=13368,
        tokens=True,
        scenarios=("Offline", "Server"),
        compliance=("TEST06",),
        accuracy="{'rouge1': 38.7792, 'rouge2': 15.9075, 'rougeL': 24.4957, "
        "'rougeLsum': 35.793, 'gen_len': 8167644, 'gen_num': 13368}",
    ),
    # the one edge benchmark with MultiStream: 50,000 images for accuracy, 1024 in performance runs
    "resnet": dict(
        conf_model="resnet50",
        total=50000,
        perf=1024,
        tokens=False,
        answer=ZERO_ANSWER,
        scenarios=("SingleStream", "MultiStream", "Offline"),
        compliance=("TEST01", "TEST04"),
        accuracy="accuracy=76.456%, good=38228, total=50000",
    ),
}
# LoadGen pre-generates queries for the latency it expects: an instant SUT answers in microseconds
EXPECTED_LATENCY = {
    "SingleStream": {"single_stream_expected_latency_ns": 1000},
    "MultiStream": {"multi_stream_expected_latency_ns": 1000},
}
V50_SEEDS = {
    "qsl_rng_seed": 6023615788873153749,
    "sample_index_rng_seed": 15036839855038426416,
    "schedule_rng_seed": 9933818062894767841,
}

SYSTEM = system_json(
    division="closed",
    system_name="Test box (2 CPU)",
    accelerator_model_name="N/A (CPU only)",
    framework="PyTorch 2.13",
    host_processor_frequency="2.0 GHz",
    host_processor_caches="N/A",
    host_memory_configuration="1x24GB",
    host_processor_interconnect="",
    accelerator_frequency="",
    accelerator_interconnect_topology="",
    **{"accelerator_on-chip_memories": ""},
)


@dataclass(frozen=True)
class Run:
    """The logs of one benchmark/scenario: performance/ and accuracy/ folders as LoadGen wrote them."""

    benchmark: str
    scenario: str
    perf: Path
    acc: Path
    user_conf: Path


def _user_conf(conf_model: str, scenario: str, target_qps: float, min_duration_ms: int = 100) -> str:
    lines = [f"{conf_model}.{scenario}.min_duration = {min_duration_ms}"]
    if scenario == "Offline":
        lines.append(f"{conf_model}.Offline.target_qps = {target_qps}")
    if scenario == "Server":
        lines += [f"{conf_model}.Server.target_qps = 20000", f"{conf_model}.Server.min_query_count = 100"]
    return "\n".join(lines) + "\n"


def _generate(
    cache: Path,
    name: str,
    benchmark: str,
    scenario: str,
    *,
    seeds: dict | None = None,
    target_qps: float | None = None,
    offline_delay: float = 0.15,
    min_duration_ms: int = 100,
    modes=("performance", "accuracy"),
    tokens: bool | None = None,
) -> Run:
    spec_b = BENCHMARKS[benchmark]
    folder = cache / name
    conf = folder / "user.conf"
    done = folder / ".done"
    run = Run(benchmark, scenario, folder / "performance", folder / "accuracy", conf)
    if done.exists():
        return run
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    # samples per query = qps × min_duration × 1.1 ≥ perf count (1.32 × perf count whatever min_duration)
    qps = target_qps or spec_b["perf"] * 1.2 * 1000 / min_duration_ms
    qps = int(qps) if qps == int(qps) else round(qps, 3)
    conf.write_text(_user_conf(spec_b["conf_model"], scenario, qps, min_duration_ms))
    # Only the Offline performance query waits (to outlast min_duration): accuracy mode issues the data set in
    # queries of performance-sample-count samples, 49 of them for resnet.
    delay = offline_delay if scenario == "Offline" else 0.0
    run_loadgen(
        [
            LoadGenJob(
                conf_model=spec_b["conf_model"],
                scenario=scenario,
                user_conf=conf,
                total=spec_b["total"],
                perf_count=spec_b["perf"],
                tokens=spec_b["tokens"] if tokens is None else tokens,
                answer=spec_b.get("answer", TOKEN_ANSWER),
                settings=EXPECTED_LATENCY.get(scenario, {}),
                seeds=seeds or {},
                runs=tuple((mode, folder / mode, delay if mode == "performance" else 0.0) for mode in modes),
            )
        ]
    )
    done.write_text("ok\n")
    return run


def generate_runs(cache: Path) -> dict[str, Run]:
    """Every LoadGen run the test trees use, generated once per cache folder."""
    cache.mkdir(parents=True, exist_ok=True)
    runs: dict[str, Run] = {}
    for benchmark, spec in BENCHMARKS.items():
        for scenario in spec["scenarios"]:
            runs[f"{benchmark}/{scenario}"] = _generate(cache, f"{benchmark}-{scenario}", benchmark, scenario)
    for scenario in ("Offline", "SingleStream"):
        runs[f"v5.0/bert-99/{scenario}"] = _generate(
            cache, f"v50-bert-99-{scenario}", "bert-99", scenario, seeds=V50_SEEDS
        )
    # LoadGen's own INVALID verdict (Offline answered before min_duration), whatever the machine's load: answered at
    # once against a minimum of 10 minutes (the query holds as many samples as the others'); a performance-only run
    # whose accuracy folder is the valid Offline run's.
    invalid = _generate(
        cache,
        "invalid-bert-99-Offline",
        "bert-99",
        "Offline",
        offline_delay=0.0,
        min_duration_ms=600_000,
        modes=("performance",),
    )
    runs["invalid/bert-99/Offline"] = replace(invalid, acc=runs["bert-99/Offline"].acc)
    return runs


# ------------------------------------------------------------------------------------------- tree layout
def truncate_accuracy_log(full: Path, dest: Path) -> str:
    """Keep the first and last 4096 bytes (as the official truncation does); return the full file's sha256."""
    data = full.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if len(data) > 4096:
        data = data[:4096] + b"\n\n...\n\n" + data[-4096:]
    dest.write_bytes(data)
    return digest


def set_log_value(detail: Path, key: str, value: object) -> None:
    """Rewrite one key's value in a detail log (mutations and the full-duration stand-in)."""
    out = []
    for line in detail.read_text().splitlines(keepends=True):
        if line.startswith(":::MLLOG ") and f'"key": "{key}"' in line[:80]:
            entry = json.loads(line[len(":::MLLOG ") :])
            if entry["key"] == key:
                entry["value"] = value
                line = ":::MLLOG " + json.dumps(entry) + "\n"
        out.append(line)
    detail.write_text("".join(out))


def _copy_logs(src: Path, dest: Path, *, accuracy_json: bool) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
        shutil.copyfile(src / name, dest / name)
    if accuracy_json:
        shutil.copyfile(src / "mlperf_log_accuracy.json", dest / "mlperf_log_accuracy.json")


class TreeBuilder:
    """Writes one submission tree; every method is one piece of the official layout."""

    def __init__(self, root: Path, runs: dict[str, Run], *, layout: str = "v6") -> None:
        self.root = root
        self.runs = runs
        self.layout = layout

    def submitter_dir(self, division: str, submitter: str) -> Path:
        return self.root / division / submitter

    def system(self, division: str, submitter: str, system: str, overrides: dict | None = None) -> Path:
        sub = self.submitter_dir(division, submitter)
        data = {**SYSTEM, "division": division, "submitter": submitter, **(overrides or {})}
        path = sub / "systems" / f"{system}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")
        code = sub / ("src" if self.layout == "v6" else "code")
        code.mkdir(parents=True, exist_ok=True)
        (code / "README.md").write_text("Instant test SUT driven by mlperf_loadgen.\n")
        doc = sub / "documentation"
        doc.mkdir(parents=True, exist_ok=True)
        (doc / "README.md").write_text("Test submission.\n")
        return path

    def result(
        self,
        division: str,
        submitter: str,
        system: str,
        benchmark: str,
        scenario: str,
        *,
        run_key: str | None = None,
        folder: str | None = None,
        full_duration: bool = True,
        compliance: bool | None = None,
    ) -> Path:
        run = self.runs[run_key or f"{benchmark}/{scenario}"]
        spec = BENCHMARKS[benchmark]
        model_folder = folder or benchmark
        sub = self.submitter_dir(division, submitter)
        res = sub / "results" / system / model_folder / scenario
        perf = res / "performance" / "run_1"
        _copy_logs(run.perf, perf, accuracy_json=False)
        if full_duration:
            set_log_value(perf / "mlperf_log_detail.txt", "effective_min_duration_ms", 600000)
        acc = res / "accuracy"
        _copy_logs(run.acc, acc, accuracy_json=False)
        digest = truncate_accuracy_log(run.acc / "mlperf_log_accuracy.json", acc / "mlperf_log_accuracy.json")
        (acc / "accuracy.txt").write_text(spec["accuracy"] + f"\n\nhash={digest}\n")
        meas = res if self.layout == "v6" else sub / "measurements" / system / model_folder / scenario
        meas.mkdir(parents=True, exist_ok=True)
        name = "measurements.json" if self.layout == "v6" else f"{system}_{scenario}.json"
        (meas / name).write_text(json.dumps(MEASUREMENTS, indent=2) + "\n")
        shutil.copyfile(run.user_conf, meas / "user.conf")
        (meas / "README.md").write_text(f"{benchmark} {scenario}: instant SUT, LoadGen 6.0.17.\n")
        if compliance if compliance is not None else division in ("closed", "network"):
            for test in spec["compliance"]:
                self.compliance(
                    division, submitter, system, model_folder, scenario, test, run, full_duration=full_duration
                )
        return res

    def compliance_dir(self, division: str, submitter: str, system: str, model_folder: str, scenario: str) -> Path:
        sub = self.submitter_dir(division, submitter)
        if self.layout == "v6":
            return sub / "results" / system / model_folder / scenario
        return sub / "compliance" / system / model_folder / scenario

    def compliance(
        self,
        division: str,
        submitter: str,
        system: str,
        model_folder: str,
        scenario: str,
        test: str,
        run: Run,
        *,
        full_duration: bool = True,
    ) -> Path:
        base = self.compliance_dir(division, submitter, system, model_folder, scenario) / test
        base.mkdir(parents=True, exist_ok=True)
        # HAND-WRITTEN: the verify_*.txt files below are fixed text, not the output of the official compliance
        # scripts on these runs. They test how a verification file is read (place, PASS/FAIL line), not that the
        # audit passes; see tests/fixtures/README.md.
        if test in ("TEST01", "TEST04"):  # the audit's own performance run: here the main run's logs
            perf = base / "performance" / "run_1"
            _copy_logs(run.perf, perf, accuracy_json=False)
            if full_duration:
                set_log_value(perf / "mlperf_log_detail.txt", "effective_min_duration_ms", 600000)
            if test == "TEST01":
                (base / "verify_accuracy.txt").write_text(
                    "Reading accuracy mode results...\nReading performance mode results...\nTEST PASS\n"
                )
            (base / "verify_performance.txt").write_text(
                "reference score: 1.0\ntest score: 1.0\ndeviation: 0.0\nTEST PASS\n"
            )
        elif test == "TEST06":
            (base / "verify_accuracy.txt").write_text(
                "First token check pass: True\nEOS check pass: True\nSample length check pass: True\n"
                "TEST06 verification complete\n"
            )
        return base
