"""Tokens/s of one LoadGen Offline LLM run spread over 1, 2 … Ray workers (the `ray` backend's LLM path,
`RayLlmSUT`), one GPU per worker or CPU workers.

Each worker builds its own copy of the model: the Llama-3.1-8B architecture (bench/llm_synthetic.py's RandomLlama) with
random weights, seeded identically on every worker, in bf16 on its GPU; no checkpoint, no download. Prompts are
synthetic with CNN-DailyMail-like lengths (~780 tokens by default, bench/llm_synthetic.py), 128 new
tokens each with min_new_tokens=128, so EOS never ends a sample early and every point generates the same tokens.
Workers build, load and warm up (real generations and the decode graphs' capture) before LoadGen starts; every
point is a real LoadGen Offline performance run in this process and runs `--repeats` times (the best counts).
Ray's local cluster is started inside the script, sized for the largest point: no network, no `ray start`.

GPU (e.g. a 2-GPU machine; writes bench/results/ray_llm_scaling_gpu_2x<GPU>.json):

    python bench/ray_llm_scaling.py --device cuda --workers 1,2 --in-process

CPU smoke run (a tiny config of the same architecture; writes bench/results/ray_llm_scaling_cpu.json):

    python bench/ray_llm_scaling.py --device cpu --workers 1,2 --layers 2 --hidden 128 --samples 384 \\
        --prompt-len 128 --new-tokens 16 --slots 32 --repeats 2 --in-process
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import llm_synthetic  # noqa: E402  (bench/ is this script's folder)
from benchmeta import Provenance  # noqa: E402  (bench/ is this script's folder)
from llm_synthetic import EOS_IDS, RandomLlama, make_prompts  # noqa: E402,F401

from subtool.fsutil import atomic_write_json  # noqa: E402


def loadgen_offline(sut, samples: int, outdir: Path) -> dict:
    import mlperf_loadgen as lg

    from subtool.runner.harness import read_detail_log
    from subtool.runner.llm.workload import token_metrics

    outdir.mkdir(parents=True, exist_ok=True)
    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.Offline
    settings.mode = lg.TestMode.PerformanceOnly
    settings.offline_expected_qps = samples / 1.1  # one query of exactly `samples` (min_query_count)
    settings.min_query_count = samples
    settings.min_duration_ms = 0  # the query's size, not a duration, ends the run
    settings.performance_sample_count_override = samples
    settings.use_token_latencies = True
    log = lg.LogSettings()
    log.log_output.outdir = str(outdir)
    log.log_output.copy_summary_to_stdout = False
    qsl = lg.ConstructQSL(samples, samples, lambda x: None, lambda x: None)
    t0 = time.time()
    cpu0 = time.process_time()
    lg.StartTestWithLogSettings(sut.handle, qsl, settings, log, str(outdir / "no-audit.config"))
    seconds = time.time() - t0
    cpu = time.process_time() - cpu0
    lg.DestroyQSL(qsl)
    values = read_detail_log(outdir / "mlperf_log_detail.txt")
    metrics = token_metrics(values, "Offline", True)
    return {
        "samples": values.get("generated_samples_per_query"),
        "tokens_per_second": metrics.get("result"),
        "samples_per_second": metrics.get("samples_per_second"),
        "seconds": round(seconds, 2),
        "validity": values.get("result_validity"),
        "driver_cpu_seconds": round(cpu, 2),
        "loadgen_errors": list(values["__errors__"]),
    }


def measure(workers: int, prompts, args, outdir: Path) -> dict:
    from subtool.runner.llm.ray_worker import GeneratorSpec
    from subtool.runner.llm.sut_ray import RayLlmSUT
    from subtool.runner.llm.workload import Generation
    from subtool.runner.ray_pool import RayPoolConfig

    cuda = args.device == "cuda"
    gen = Generation(
        max_new_tokens=args.new_tokens,
        min_new_tokens=args.new_tokens,
        num_beams=1,
        output_dtype="int32",
        token_latencies=True,
    )
    factory = RandomLlama(args.layers, args.hidden, args.device, "float32" if args.precision == "fp32" else "bfloat16")
    spec = GeneratorSpec(
        model_path=None,
        generation=gen,
        eos_token_id=EOS_IDS,
        pad_token_id=0,
        batch_size=args.slots,
        precision=args.precision,
        threads=args.threads,
        engine=args.engine,
        model_factory=factory,
    )
    cfg = RayPoolConfig(
        workers=workers,
        inner_backend="torch-cuda" if cuda else "torch-cpu",
        cpus_per_worker=args.threads,
        start_timeout_s=1800.0,
    )
    t0 = time.time()
    sut = RayLlmSUT(spec, prompts, cfg, warm_up=min(args.slots, len(prompts)))
    setup = round(time.time() - t0, 1)
    runs = []
    try:
        for r in range(args.repeats):
            runs.append(loadgen_offline(sut, len(prompts), outdir / f"w{workers}-r{r}"))
            print(
                f"{workers} worker(s), run {r + 1}: {runs[-1]['tokens_per_second']} tokens/s ({runs[-1]['validity']})",
                flush=True,
            )
        stats = sut.stats()
    finally:
        sut.stop()
    best = max(runs, key=lambda x: x["tokens_per_second"] or 0)
    return {
        "workers": workers,
        "tokens_per_second": best["tokens_per_second"],
        "samples_per_second": best["samples_per_second"],
        "seconds": best["seconds"],
        "validity": best["validity"],
        "setup_seconds": setup,
        "engine": stats["engine"],
        "capacity": stats["capacity"],
        "samples_per_worker": [w["samples"] for w in stats["per_worker"]],
        "lost_workers": len(stats["deaths"]),
        "reissued": stats["reissued"],
        "runs": runs,
    }


def measure_in_process(prompts, args, outdir: Path) -> dict:
    """The same generator without Ray (TorchLlmSUT in this process, one GPU or `--threads` CPU threads): the
    reference for what Ray's streaming costs."""
    from subtool.runner.llm.ray_worker import _Discard
    from subtool.runner.llm.sut_torch import TorchLlmSUT
    from subtool.runner.llm.workload import Generation

    cuda = args.device == "cuda"
    gen = Generation(
        max_new_tokens=args.new_tokens,
        min_new_tokens=args.new_tokens,
        num_beams=1,
        output_dtype="int32",
        token_latencies=True,
    )
    t0 = time.time()
    model = RandomLlama(args.layers, args.hidden, args.device, "float32" if args.precision == "fp32" else "bfloat16")()
    sut = TorchLlmSUT(
        None,
        prompts,
        gen,
        eos_token_id=EOS_IDS,
        pad_token_id=0,
        batch_size=args.slots,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        engine=args.engine,
        model=model,
    )
    g = sut.generator
    order = np.argsort([-len(p) for p in prompts], kind="stable")[: args.slots]
    g.run([(-1 - i, int(idx)) for i, idx in enumerate(order)], _Discard())  # as the workers warm up
    if getattr(g.engine, "warm_up", None) is not None:
        g.engine.warm_up([len(p) for p in prompts])
    setup = round(time.time() - t0, 1)
    try:
        runs = [loadgen_offline(sut, len(prompts), outdir / f"in-process-r{r}") for r in range(args.repeats)]
    finally:
        sut.stop()
    del model, sut, g
    import gc

    gc.collect()  # the generator's cycles hold its KV cache, which the workers' GPUs need
    if cuda:
        import torch

        torch.cuda.empty_cache()
    best = max(runs, key=lambda x: x["tokens_per_second"] or 0)
    print(f"in process (no Ray): {best['tokens_per_second']} tokens/s ({best['validity']})", flush=True)
    return {
        "tokens_per_second": best["tokens_per_second"],
        "samples_per_second": best["samples_per_second"],
        "seconds": best["seconds"],
        "validity": best["validity"],
        "setup_seconds": setup,
        "runs": runs,
    }


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--workers", default="1,2", help="worker counts, comma-separated (GPUs: at most the GPUs)")
    ap.add_argument("--samples", type=int, default=1024, help="prompts in the Offline query")
    ap.add_argument("--prompt-len", type=int, default=780, help="mean prompt length (tokens)")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=4096, help="4096: Llama-3.1-8B; smaller for a CPU run")
    ap.add_argument("--slots", type=int, default=128, help="continuous engine slots (CPU: batch size) per worker")
    ap.add_argument("--engine", default="auto", help="auto (continuous on CUDA, batched on CPU), batched, continuous")
    ap.add_argument(
        "--precision",
        default=None,
        help="bf16 (the GPU default), fp8 (GPU: e4m3 projections and KV "
        "cache, as --precision fp8 runs), fp32 (the CPU default)",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads (and reserved CPUs) per CPU worker")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument(
        "--in-process",
        action="store_true",
        help="also measure the same generator without Ray (TorchLlmSUT in this process)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: bench/results/ray_llm_scaling_gpu_<N>x<GPU>.json or ray_llm_scaling_cpu.json",
    )
    return ap


def main() -> int:
    args = build_parser().parse_args()
    prov = Provenance()
    counts = sorted({int(c) for c in args.workers.split(",")})
    args.precision = args.precision or ("bf16" if args.device == "cuda" else "fp32")

    import ray
    import torch

    cuda = args.device == "cuda"
    gpus = torch.cuda.device_count() if cuda else 0
    if cuda and gpus < max(counts):
        sys.exit(f"{max(counts)} workers need {max(counts)} GPUs; torch sees {gpus}")
    gpu_name = torch.cuda.get_device_name(0) if cuda else None
    if args.out is None:
        tag = f"gpu_{max(counts)}x{gpu_name.split()[-1]}" if cuda else "cpu"
        args.out = REPO / "bench" / "results" / f"ray_llm_scaling_{tag}.json"
    cpus = os.cpu_count() or 1
    ray.init(
        num_cpus=max(cpus, max(counts) * args.threads),
        num_gpus=gpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
    )
    # the workers cannot import bench/ modules: the model factory travels by value
    ray.cloudpickle.register_pickle_by_value(llm_synthetic)
    prompts = make_prompts(args.samples, args.prompt_len)
    model = f"Llama-3.1-8B architecture ({args.layers} layers, hidden {args.hidden}), random weights, " + {
        "fp8": "bf16 with fp8 projections (and KV cache where the Triton decode kernel runs)"
    }.get(args.precision, args.precision)
    out = {
        "bench": "ray_llm_scaling",
        "device": args.device,
        "model": model,
        "precision": args.precision,
        "samples": args.samples,
        "prompt_tokens_mean": round(float(np.mean([len(p) for p in prompts])), 1),
        "new_tokens": args.new_tokens,
        "slots": args.slots,
        "repeats": args.repeats,
    }
    try:
        with tempfile.TemporaryDirectory(prefix="ray-llm-bench-") as tmp:
            if args.in_process:
                out["in_process"] = measure_in_process(prompts, args, Path(tmp))
            out["points"] = [measure(n, prompts, args, Path(tmp)) for n in counts]
    finally:
        ray.shutdown()
    out.update(prov.record(torch_gpus=gpus, gpu_name=gpu_name))
    base = out["points"][0]
    for p in out["points"]:
        if base["tokens_per_second"] and p["tokens_per_second"]:
            speedup = p["tokens_per_second"] / base["tokens_per_second"]
            p["speedup"] = round(speedup, 3)
            p["scaling_efficiency"] = round(speedup * base["workers"] / p["workers"], 3)
        if out.get("in_process", {}).get("tokens_per_second") and p["tokens_per_second"]:
            p["vs_in_process_per_worker"] = round(
                p["tokens_per_second"] / p["workers"] / out["in_process"]["tokens_per_second"], 3
            )
    atomic_write_json(args.out, out)
    print(
        json.dumps(
            [
                {
                    k: p.get(k)
                    for k in (
                        "workers",
                        "tokens_per_second",
                        "samples_per_second",
                        "seconds",
                        "validity",
                        "speedup",
                        "scaling_efficiency",
                        "vs_in_process_per_worker",
                    )
                }
                for p in out["points"]
            ],
            indent=1,
        )
    )
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
