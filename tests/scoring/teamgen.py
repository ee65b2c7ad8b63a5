"""Competition inputs for the scoring tests and bench/score_many.py, built from real LoadGen logs.

`generate_logs(cache)` runs mlperf_loadgen (one process per benchmark, an instant SUT, 50 ms minimum duration)
and keeps the logs: several bert-99 and llama2-70b Offline performance runs that differ only in how long the
SUT waits before answering (so teams get different, honest throughputs) plus one accuracy run each.
`build_team_tree` lays them out as an open-division submission (the SCC way: short runs, open division) by
hand, and `pack_team` turns the tree into the competition artifacts with the real pack stage.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # bench/score_many.py imports this module too
    sys.path.append(str(Path(__file__).resolve().parents[1]))
from support.loadgen_trees import MEASUREMENTS, TOKEN_ANSWER, LoadGenJob, run_loadgen, system_json  # noqa: E402

# benchmark folder → LoadGen's model name, QSL size, token answers, the accuracy script's line
BENCHMARKS = {
    "bert-99": dict(
        conf_model="bert",
        total=10833,
        tokens=False,
        target_qps=100000,
        accuracy='{"exact_match": 83.65, "f1": 90.874}',
        failing_accuracy='{"exact_match": 61.2, "f1": 72.5}',
    ),
    "llama2-70b-99.9": dict(
        conf_model="llama2-70b",
        total=24576,
        tokens=True,
        target_qps=200000,
        accuracy="{'rouge1': 44.4312, 'rouge2': 22.0352, 'rougeL': 28.6162, 'rougeLsum': 42.0, "
        "'gen_len': 7239872, 'gen_num': 24576, 'tokens_per_sample': 294.6}",
        failing_accuracy="{'rouge1': 30.1, 'rouge2': 12.0, 'rougeL': 20.5, 'rougeLsum': 28.0, "
        "'gen_len': 7239872, 'gen_num': 24576, 'tokens_per_sample': 294.6}",
    ),
}
# Seconds the SUT waits before answering the one Offline query; longer than min_duration keeps LoadGen VALID.
DELAYS = (0.06, 0.08, 0.11, 0.15, 0.2, 0.25)
# One more performance run, answered at once long before its min_duration: LoadGen calls it INVALID.
INVALID_RUN = len(DELAYS)

SYSTEM = system_json(
    system_name="Team box",
    host_processor_model_name="AMD EPYC 9654",
    host_processors_per_node="2",
    host_processor_core_count="96",
    host_memory_capacity="768 GB",
    host_storage_capacity="4 TB",
    host_storage_type="NVMe SSD",
    accelerators_per_node="4",
    accelerator_model_name="NVIDIA H100-SXM-80GB",
    accelerator_memory_capacity="80 GB",
    system_type="datacenter",
    other_software_stack="CUDA 12.4",
    host_processor_frequency="2.4 GHz",
    host_processor_caches="384 MB",
    host_memory_configuration="24x32GB",
    host_networking="Infiniband",
    accelerator_host_interconnect="PCIe 5.0",
    accelerator_interconnect="NVLink",
    accelerator_memory_configuration="HBM3",
    system_type_detail="cluster",
)
CPU_ONLY = {
    "accelerators_per_node": "0",
    "accelerator_model_name": "N/A",
    "accelerator_memory_capacity": "N/A",
    "accelerator_host_interconnect": "N/A",
    "accelerator_interconnect": "N/A",
    "accelerator_memory_configuration": "N/A",
    "host_processor_model_name": "Intel Xeon Platinum 8480+",
}
AMD_GPU = {
    "accelerator_model_name": "AMD Instinct MI300X",
    "accelerator_memory_capacity": "192 GB",
    "accelerator_interconnect": "Infinity Fabric",
}
MEASUREMENTS = {**MEASUREMENTS, "weight_data_types": "fp16"}


@dataclass(frozen=True)
class Logs:
    """LoadGen output folders: perf[benchmark][i] (one per delay, then INVALID_RUN), acc[benchmark], user_conf."""

    perf: dict
    acc: dict
    user_conf: dict


def generate_logs(cache: Path) -> Logs:
    cache.mkdir(parents=True, exist_ok=True)
    jobs, plan = [], {}
    for bench, spec in BENCHMARKS.items():
        folder = cache / bench
        conf = folder / "user.conf"
        # a first run to warm up (kept apart): on a busy machine the first run of a process is the slowest
        runs = [("performance", folder / "warmup", 0.0)]
        runs += [("performance", folder / f"perf{i}", d) for i, d in enumerate(DELAYS)]
        runs.append(("accuracy", folder / "acc", 0.0))
        plan[bench] = (folder, conf)
        if (folder / ".done").exists():
            continue
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        conf.write_text(
            f"{spec['conf_model']}.Offline.min_duration = 50\n"
            f"{spec['conf_model']}.Offline.target_qps = {spec['target_qps']}\n"
        )
        jobs.append(
            LoadGenJob(
                conf_model=spec["conf_model"],
                scenario="Offline",
                user_conf=conf,
                total=spec["total"],
                tokens=spec["tokens"],
                answer=TOKEN_ANSWER,
                runs=tuple(runs),
            )
        )
        # The INVALID run: a few samples answered at once against a 60 s min_duration, so LoadGen calls it
        # INVALID however slow the machine is (an instant answer to the whole data set could take 50 ms).
        invalid_conf = folder / "invalid.conf"
        invalid_conf.write_text(
            f"{spec['conf_model']}.Offline.min_duration = 60000\n{spec['conf_model']}.Offline.target_qps = 0.1\n"
        )
        jobs.append(
            LoadGenJob(
                conf_model=spec["conf_model"],
                scenario="Offline",
                user_conf=invalid_conf,
                total=spec["total"],
                tokens=spec["tokens"],
                answer=TOKEN_ANSWER,
                runs=(("performance", folder / f"perf{INVALID_RUN}", 0.0),),
            )
        )
    run_loadgen(jobs)
    for folder, _conf in plan.values():
        (folder / ".done").write_text("ok\n")
    return Logs(
        perf={b: [f / f"perf{i}" for i in range(len(DELAYS) + 1)] for b, (f, _) in plan.items()},
        acc={b: f / "acc" for b, (f, _) in plan.items()},
        user_conf={b: c for b, (_, c) in plan.items()},
    )


# The test competition: team → (the category the default rules must put it in, how its hand-in is built)
COMPETITION = {
    "Alpha": ("NVIDIA GPUs", dict(results={"bert-99": 0, "llama2-70b-99.9": 1})),
    "Beta": ("AMD GPUs", dict(overrides=AMD_GPU, results={"bert-99": 2})),
    "Gamma": ("CPUs", dict(overrides=CPU_ONLY, results={"bert-99": 3})),
    "Delta": ("NVIDIA GPUs", dict(results={"bert-99": 1, "llama2-70b-99.9": 3}, failing_accuracy=("llama2-70b-99.9",))),
    # LoadGen judged its performance run INVALID
    "Eta": ("AMD GPUs", dict(overrides=AMD_GPU, results={"bert-99": INVALID_RUN})),
    "Epsilon": (
        "NVIDIA GPUs",
        dict(
            overrides={"accelerator_model_name": "NVIDIA GeForce RTX 4090", "accelerators_per_node": "2"},
            results={"bert-99": 4},
        ),
    ),
    # fails the checker as a whole: an invalid status in its system description
    "Zeta": (
        "Intel GPUs and accelerators",
        dict(
            overrides={"accelerator_model_name": "Intel Data Center GPU Max 1550", "status": "sometime"},
            results={"bert-99": 5},
        ),
    ),
}


@dataclass
class TeamSpec:
    team: str
    system: str = "cluster"
    overrides: dict = field(default_factory=dict)  # system JSON fields (the hardware category)
    results: dict = field(default_factory=lambda: {"bert-99": 0})  # benchmark → index into DELAYS
    failing_accuracy: tuple[str, ...] = ()  # benchmarks whose accuracy misses the threshold


def _truncate(full: Path, dest: Path) -> str:
    data = full.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    dest.write_bytes(data[:4096] + b"\n\n...\n\n" + data[-4096:] if len(data) > 8192 else data)
    return digest


def build_team_tree(root: Path, logs: Logs, spec: TeamSpec) -> Path:
    """An open-division tree under `root` (root/open/<team>/…) with one Offline result per benchmark."""
    sub = root / "open" / spec.team
    for folder, text in (("documentation", "# How we ran it\n"), ("src", "# Our harness\n")):
        (sub / folder).mkdir(parents=True, exist_ok=True)
        (sub / folder / "README.md").write_text(text)
    (sub / "systems").mkdir(exist_ok=True)
    system = {**SYSTEM, "submitter": spec.team, "system_name": f"{spec.team} {spec.system}", **spec.overrides}
    (sub / "systems" / f"{spec.system}.json").write_text(json.dumps(system, indent=2))
    for bench, variant in spec.results.items():
        bspec = BENCHMARKS[bench]
        res = sub / "results" / spec.system / bench / "Offline"
        perf, acc = res / "performance" / "run_1", res / "accuracy"
        perf.mkdir(parents=True, exist_ok=True)
        acc.mkdir(parents=True, exist_ok=True)
        for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
            shutil.copyfile(logs.perf[bench][variant] / name, perf / name)
            shutil.copyfile(logs.acc[bench] / name, acc / name)
        digest = _truncate(logs.acc[bench] / "mlperf_log_accuracy.json", acc / "mlperf_log_accuracy.json")
        line = bspec["failing_accuracy"] if bench in spec.failing_accuracy else bspec["accuracy"]
        (acc / "accuracy.txt").write_text(f"{line}\n\nhash={digest}\n")
        (res / "measurements.json").write_text(json.dumps(MEASUREMENTS, indent=2))
        shutil.copyfile(logs.user_conf[bench], res / "user.conf")
        (res / "README.md").write_text(f"# {bench} Offline\n")
    return root


def pack_team(tree: Path, out: Path, name: str = "mlperf_submission_short") -> dict[str, Path]:
    """The competition artifacts through the real pack stage (short runs: perf.min_duration waived)."""
    from subtool.pack.api import PackOptions, pack_tree

    result = pack_tree(PackOptions(tree=tree, out=out, name=name, waive=frozenset({"perf.min_duration"})))
    return dict(result.artifacts)


def make_team(workdir: Path, logs: Logs, spec: TeamSpec, name: str = "mlperf_submission_short") -> dict[str, Path]:
    """Tree in workdir/<team>/tree, artifacts in workdir/<team>/handin; returns the artifact paths."""
    base = workdir / spec.team
    tree = build_team_tree(base / "tree", logs, spec)
    return pack_team(tree, base / "handin", name)
