"""Samples/s of one LoadGen Offline run spread over 1, 2, 4 … Ray workers (the `ray` backend), on whatever this
machine has: CPU workers here, one GPU per worker with `--device cuda`.

Each point is a real LoadGen Offline performance run in this process over the embedded demo's 10,833 SQuAD
features, with `RayBertSUT` dispatching chunks to the workers of one local Ray cluster (started once, sized for
the largest count). Workers are started and warmed up before LoadGen starts; every point runs `--repeats` times
and the best run counts (the machine may be shared). The model is, by default, a "compute-bound demo model": the
demo's architecture at hidden size 128 (random weights, cached next to the demo) so that a chunk's forward, not
Ray's or LoadGen's per-chunk overhead, decides the throughput; `--model demo` takes the tiny demo model itself and
`--model-path` a real checkpoint. A single-thread in-process run of the same model (the torch-cpu SUT's forward,
no Ray) is measured too, as the reference for Ray's overhead.

    python bench/ray_scaling.py [--workers 1,2,4] [--samples 2000] [--model compute|demo] [--repeats 2]
    python bench/ray_scaling.py --device cuda --model-path CKPT --precision bf16 --batch-size 64   # GPUs
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "bench"))

from benchmeta import Provenance  # noqa: E402

from subtool.fsutil import atomic_write_json  # noqa: E402

# the compute-bound variant of the demo model: same vocabulary and layout, wider layers
COMPUTE_CONFIG = dict(
    hidden_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=512,
    max_position_embeddings=512,
    type_vocab_size=2,
)
COMPUTE_MODEL_VERSION = "1"


def compute_model(demo_model: Path) -> Path:
    """The demo checkpoint widened to COMPUTE_CONFIG (random weights, seeded), cached beside the demo."""
    import shutil

    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    from subtool.fsutil import staged_directory

    root = demo_model.parent.parent / f"bench-ray-model-v{COMPUTE_MODEL_VERSION}"
    if (root / "COMPLETE").exists():
        return root / "model"
    with staged_directory(root) as tmp:
        model_dir = tmp / "model"
        model_dir.mkdir()
        for name in os.listdir(demo_model):
            if name not in ("config.json", "model.safetensors", "pytorch_model.bin", "SUBTOOL_DEMO.txt"):
                shutil.copy(demo_model / name, model_dir / name)
        vocab = sum(1 for line in open(demo_model / "vocab.txt", encoding="utf-8") if line.rstrip("\n"))
        torch.manual_seed(20261126)
        BertForQuestionAnswering(BertConfig(vocab_size=vocab, **COMPUTE_CONFIG)).save_pretrained(model_dir)
        (tmp / "COMPLETE").write_text("bench/ray_scaling.py compute-bound model\n")
    return root / "model"


def offline_settings(samples: int):
    import mlperf_loadgen as lg

    s = lg.TestSettings()
    s.scenario = lg.TestScenario.Offline
    s.mode = lg.TestMode.PerformanceOnly
    s.min_duration_ms = 1000
    s.min_query_count = 1
    # LoadGen sizes the one query as expected_qps * min_duration * 1.1: exactly `samples` here
    s.offline_expected_qps = samples / 1.1
    return s


def loadgen_offline(sut, features, samples: int, outdir: Path) -> dict:
    import mlperf_loadgen as lg

    from subtool.runner.bert.workload import BertQSL
    from subtool.runner.harness import read_detail_log

    qsl = BertQSL(features, samples)
    log = lg.LogSettings()
    log.log_output.outdir = str(outdir)
    log.log_output.copy_summary_to_stdout = False
    outdir.mkdir(parents=True, exist_ok=True)
    try:
        t0, cpu0 = time.perf_counter(), time.process_time()
        lg.StartTestWithLogSettings(
            sut.handle, qsl.handle, offline_settings(samples), log, str(outdir / "no-audit.config")
        )
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        qsl.destroy()
    detail = read_detail_log(outdir / "mlperf_log_detail.txt")
    n = int(detail.get("effective_samples_per_query") or 0)
    # the driver's CPU (LoadGen, the dispatch/collect threads, Ray's client threads): what one process can feed
    return {
        "samples": n,
        "samples_per_second": round(float(detail["result_samples_per_second"]), 2),
        "wall_seconds": round(wall, 2),
        "driver_cpu_seconds": round(cpu, 3),
        "driver_cpu_us_per_sample": round(cpu / max(n, 1) * 1e6, 1),
        "loadgen_errors": detail["__errors__"],
    }


def start_pool(model_path: Path, features, workers: int, args):
    import numpy as np
    import ray

    from subtool.runner.bert.sut_ray import RayBertSUT
    from subtool.runner.ray_pool import RayPoolConfig

    inner = "torch-cuda" if args.device == "cuda" else "torch-cpu"
    t0 = time.perf_counter()
    sut = RayBertSUT(
        model_path,
        features,
        RayPoolConfig(workers=workers, inner_backend=inner, chunk=args.batch_size),
        precision=args.precision,
    )
    warm = np.arange(min(len(features), 4 * args.batch_size))
    ray.get([w.handle.infer.remote(warm.tolist()) for w in sut.workers])  # first forwards are slow
    return sut, round(time.perf_counter() - t0, 2)


def point(workers: int, sut, start_seconds: float, runs: list) -> dict:
    stats = sut.stats()
    best = max(runs, key=lambda r: r["samples_per_second"])
    return {
        "workers": workers,
        "samples_per_second": best["samples_per_second"],
        "runs": runs,
        "start_seconds": start_seconds,
        "samples_per_worker": [w["samples"] for w in stats["per_worker"]],
        "chunks_per_worker": [w["chunks"] for w in stats["per_worker"]],
    }


def measure_ray(model_path: Path, features, counts: list[int], args, outdir: Path) -> list[dict]:
    """CPU: every pool up at once (idle workers cost nothing) and the repeats interleaved, 1, 2, 4, 1, 2, 4 …,
    so a change in the machine's background load hits every count alike. GPUs: one pool at a time."""

    def run(n, sut, r):
        res = loadgen_offline(sut, features, args.samples, outdir / f"w{n}_r{r}")
        res["load_average"] = round(os.getloadavg()[0], 2)
        print(f"  {n} workers, run {r + 1}: {res['samples_per_second']} samples/s")
        return res

    points = []
    if args.device == "cpu":
        pools = {n: start_pool(model_path, features, n, args) for n in counts}
        try:
            runs = {n: [] for n in counts}
            for r in range(args.repeats):
                for n in counts:
                    runs[n].append(run(n, pools[n][0], r))
        finally:
            for sut, _ in pools.values():
                sut.stop()
        return [point(n, pools[n][0], pools[n][1], runs[n]) for n in counts]
    for n in counts:
        sut, started = start_pool(model_path, features, n, args)
        try:
            runs = [run(n, sut, r) for r in range(args.repeats)]
        finally:
            sut.stop()
        points.append(point(n, sut, started, runs))
    return points


def measure_in_process(model_path: Path, features, args) -> dict:
    """The torch-cpu SUT's forward in this process, one thread, no LoadGen: Ray's overhead shows against it."""
    import numpy as np
    import torch

    from subtool.runner.bert.sut_cpu import bert_qa_logits, load_qa_model, plan_batches

    threads = torch.get_num_threads()
    model = load_qa_model(model_path, "cpu", "fp32", 1)
    idx = list(range(args.samples))
    try:
        bert_qa_logits(model, features, idx[: args.batch_size], "cpu")
        t0 = time.perf_counter()
        for batch in plan_batches(idx, np.asarray(features.seq_lengths), args.batch_size):
            bert_qa_logits(model, features, [idx[i] for i in batch], "cpu")
        dt = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    return {"threads": 1, "samples": args.samples, "samples_per_second": round(args.samples / dt, 2)}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--workers",
        default=None,
        help="comma-separated counts (default 1,2,4 on CPU; 1,2,4,… up to the GPUs with --device cuda)",
    )
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--model", choices=("compute", "demo"), default="compute")
    ap.add_argument("--model-path", type=Path, default=None, help="a real checkpoint instead of a demo model")
    ap.add_argument("--precision", default=None, help="fp32 on CPU; fp32, bf16, fp16 or fp8 on GPUs")
    ap.add_argument("--batch-size", type=int, default=32, help="samples per chunk sent to a worker")
    ap.add_argument("--samples", type=int, default=2000, help="samples in the Offline query (≤ 10833)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ray_scaling.json")
    return ap


def main() -> int:
    args = build_parser().parse_args()
    prov = Provenance()
    args.precision = args.precision or ("bf16" if args.device == "cuda" else "fp32")

    import ray
    import torch

    from subtool.runner.bert.checkpoint import check_checkpoint
    from subtool.runner.bert.demo import demo_assets
    from subtool.runner.bert.workload import load_data
    from subtool.runner.demo_assets import cache_root

    assets = demo_assets()
    if args.model_path is not None:
        model_path, model_name = args.model_path, str(args.model_path.name)
    elif args.model == "compute":
        model_path, model_name = compute_model(assets.model_path), "demo architecture at hidden 128 (compute-bound)"
    else:
        model_path, model_name = assets.model_path, "embedded demo (hidden 64)"
    features = load_data(
        assets.model_path, assets.dataset_path, cache_root() / "features", check_checkpoint(assets.model_path)
    ).features
    args.samples = min(args.samples, len(features))
    gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    if args.workers:
        counts = [int(c) for c in args.workers.split(",")]
    elif args.device == "cuda":
        counts = [c for c in (1, 2, 4, 8, 16, 32, 64) if c <= gpus] or [1]
        if gpus and gpus not in counts:
            counts.append(gpus)
    else:
        counts = [1, 2, 4]
    # CPU: room for every pool at once (more workers than cores is the point of the 4-worker figure)
    cpus = max(os.cpu_count() or 1, sum(counts) if args.device == "cpu" else 1)
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
    gpu_name = torch.cuda.get_device_name(0) if gpus else None
    out = {
        "bench": "ray_scaling",
        "device": args.device,
        "model": model_name,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "samples_per_run": args.samples,
        "repeats": args.repeats,
        "goal": "CPU: 2 workers >= 1.6x the samples/s of 1 worker (compute-bound model)",
        "points": [],
    }
    try:
        if args.device == "cpu":
            out["in_process_one_thread"] = measure_in_process(model_path, features, args)
            print(f"in-process, 1 thread: {out['in_process_one_thread']['samples_per_second']} samples/s")
        with tempfile.TemporaryDirectory() as tmp:
            out["points"] = measure_ray(model_path, features, counts, args, Path(tmp))
        base = out["points"][0]
        for p in out["points"]:
            p["speedup_vs_first"] = round(p["samples_per_second"] / base["samples_per_second"], 3)
            p["efficiency"] = round(p["speedup_vs_first"] * base["workers"] / p["workers"], 3)
            print(
                f"{p['workers']} workers: {p['samples_per_second']} samples/s (x{p['speedup_vs_first']}, "
                f"samples per worker {p['samples_per_worker']})"
            )
    finally:
        ray.shutdown()
    by = {p["workers"]: p["samples_per_second"] for p in out["points"]}
    if 1 in by and 2 in by:
        out["two_vs_one"] = round(by[2] / by[1], 3)
        out["goal_met"] = out["two_vs_one"] >= 1.6
    out.update(prov.record(torch_gpus=gpus, gpu_name=gpu_name))
    atomic_write_json(args.out, out)
    print(json.dumps({k: out[k] for k in ("two_vs_one", "goal_met") if k in out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
