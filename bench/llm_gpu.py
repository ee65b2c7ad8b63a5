"""LLM throughput on one GPU under LoadGen: a reference-style SUT (transformers `generate` on batches in arrival
order, as language/llama2-70b/SUT.py does) against subtool's SUT (continuous batching over a preallocated KV
cache, CUDA-graph decode step), on the same prompts.

Llama-3.1-8B architecture with random weights in bf16 (no download), prompts of CNN-DailyMail-like lengths
(~780 tokens), 128 generated tokens per prompt (EOS ignored, as min_new_tokens=128). Offline for both, subtool's
engine in bf16 and in fp8 (e4m3 projections and KV cache: `--precision fp8`; `--variants precision:slots,...`);
Server for the last variant at fractions of its Offline rate, with TTFT/TPOT percentiles against the llama3.1-8b
limits and LoadGen's verdict lines. fp8 halves the KV cache, so it gets twice the slots in the same memory.

The engine's per-step profile (decode and prompt-chunk tokens and seconds per step, by chunk size) is in each
point's "engine" record; `--prefill-tokens` (the step's token budget) and `--chunk-tokens` tune the chunking.

    python bench/llm_gpu.py --server-seconds 50 --out bench/results/llm_gpu.json
    python bench/llm_gpu.py --tiny --device cpu --layers 2 --samples 16 --skip-reference --variants bf16:4 \
        --server-seconds 0 --out /tmp/llm_gpu.json   # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout's subtool
from benchmeta import Provenance  # noqa: E402
from llm_synthetic import EOS_IDS, RandomLlama, make_prompts  # noqa: E402

# Best published per-GPU Offline figure for llama3.1-8b on H100 found in public MLPerf results material:
# Red Hat, MLPerf Inference v5.1, one H100, FP8 weights with vLLM 0.10.0: 5777 tokens/s Offline.
PUBLISHED = {
    "tokens_per_second": 5777.0,
    "source": "Red Hat MLPerf Inference v5.1 llama3.1-8b Offline, 1x H100, "
    "FP8, vLLM 0.10.0 (Red Hat blog on its v5.1 results)",
    "url": "https://www.redhat.com/en/blog/"
    "efficient-and-reproducible-llm-inference-red-hat-mlperf-inference-v51-results",
}


def build_model(layers: int, device: str = "cuda", tiny: bool = False):
    """Llama-3.1-8B's architecture with `layers` layers in bf16; `tiny` narrows it (a CPU smoke run)."""
    return RandomLlama(layers, 256 if tiny else 4096, device)()


class ReferenceStyleSUT:
    """Batches in arrival order, left padding, `model.generate`, one response per sample with its token count."""

    def __init__(self, model, prompts, batch_size: int, new_tokens: int):
        import mlperf_loadgen as lg

        self.lg, self.model, self.prompts = lg, model, prompts
        self.batch_size, self.new_tokens = batch_size, new_tokens
        self.q: queue.Queue = queue.Queue()
        self.worker = threading.Thread(target=self._work, daemon=True)
        self.worker.start()
        self.handle = lg.ConstructSUT(self.issue, lambda: None)

    def issue(self, samples):
        samples = list(samples)
        for i in range(0, len(samples), self.batch_size):
            self.q.put([(s.id, s.index) for s in samples[i : i + self.batch_size]])

    def _work(self):
        import torch

        while True:
            batch = self.q.get()
            if batch is None:
                return
            seqs = [self.prompts[idx] for _, idx in batch]
            width = max(len(s) for s in seqs)
            ids = torch.zeros((len(seqs), width), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, s in enumerate(seqs):
                ids[r, width - len(s) :] = torch.from_numpy(s.astype(np.int64))
                mask[r, width - len(s) :] = 1
            device = self.model.device
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    do_sample=False,
                    num_beams=1,
                    max_new_tokens=self.new_tokens,
                    min_new_tokens=self.new_tokens,
                    pad_token_id=0,
                )
            for (qid, _), row in zip(batch, out[:, width:].cpu().numpy().astype(np.int32)):
                self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(qid, row.ctypes.data, row.nbytes, len(row))])

    def stop(self):
        self.q.put(None)
        self.worker.join()
        self.lg.DestroySUT(self.handle)


def run_loadgen(
    sut_handle,
    n: int,
    scenario: str,
    conf_lines: list[str],
    outdir: Path,
    model: str = "llama3_1-8b",
    ttft_ns: int = 2_000_000_000,
    tpot_ns: int = 100_000_000,
) -> dict:
    """One LoadGen run (PerformanceOnly) under `model`'s name in user.conf, with its Server TTFT/TPOT limits."""
    import mlperf_loadgen as lg

    from subtool.runner.harness import read_detail_log

    outdir.mkdir(parents=True, exist_ok=True)
    conf = outdir / "user.conf"
    conf.write_text("\n".join(f"{model}.{scenario}.{line}" for line in conf_lines) + "\n")
    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, scenario)
    settings.FromConfig(str(conf), model, scenario)
    # LoadGen applies its built-in mlperf.conf only on the first FromConfig of a process: set what the later
    # runs of this one process need by hand (token latencies, the model's Server TTFT/TPOT limits)
    settings.use_token_latencies = True
    if scenario == "Server":
        settings.server_target_latency_ns = 0
        settings.ttft_latency = ttft_ns
        settings.tpot_latency = tpot_ns
    settings.mode = lg.TestMode.PerformanceOnly
    log = lg.LogSettings()
    log.log_output.outdir = str(outdir)
    log.log_output.copy_summary_to_stdout = False
    qsl = lg.ConstructQSL(n, n, lambda x: None, lambda x: None)
    t0 = time.time()
    lg.StartTestWithLogSettings(sut_handle, qsl, settings, log, str(outdir / "none.config"))
    seconds = time.time() - t0
    lg.DestroyQSL(qsl)
    values = read_detail_log(outdir / "mlperf_log_detail.txt")
    from subtool.runner.llm.workload import token_metrics

    out = token_metrics(values, scenario, True)
    out.update(
        validity=values.get("result_validity"), seconds=round(seconds, 1), queries=values.get("generated_query_count")
    )
    summary = (outdir / "mlperf_log_summary.txt").read_text(errors="replace").splitlines()
    # what LoadGen says was not met, when the run is INVALID (its summary's check lines)
    out["checks"] = [
        line.strip()
        for line in summary
        if line.strip().startswith(
            ("Min duration satisfied", "Min queries satisfied", "Early stopping satisfied", "TTFT", "TPOT", " * ")
        )
        or "constraint" in line.lower()
    ][:12]
    return out


def offline_conf(n: int) -> list[str]:
    return [
        f"performance_sample_count_override = {n}",
        f"min_query_count = {n}",
        "min_duration = 1000",
        f"target_qps = {n / 1.1:.3f}",
    ]


def parse_variants(text: str) -> list[dict]:
    """ "bf16:128,fp8:256" → the engine's weights and slots of each subtool run."""
    out = []
    for item in text.split(","):
        weights, _, slots = item.partition(":")
        if weights not in ("bf16", "fp8"):
            raise SystemExit(f"--variants: {weights!r} is not bf16 or fp8")
        out.append({"weights": weights, "slots": int(slots or 128)})
    return out


def add_step_budget_args(ap: argparse.ArgumentParser) -> None:
    """The continuous engine's step budget and chunk cap, as every LLM bench takes them."""
    ap.add_argument(
        "--prefill-tokens",
        type=int,
        default=16384,
        help="token budget of one engine step: decode tokens + prompt chunks",
    )
    ap.add_argument(
        "--chunk-tokens", type=int, default=0, help="most tokens of one prompt a step prefills (0: the step budget)"
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--ref-samples", type=int, default=128)
    ap.add_argument("--ref-batch", type=int, default=64)
    ap.add_argument("--variants", default="bf16:128,fp8:256", help="subtool runs, weights:slots, comma-separated")
    add_step_budget_args(ap)
    ap.add_argument("--prompt-len", type=int, default=780)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument(
        "--server-fractions",
        default="0.5,0.6",
        help="Server target QPS as fractions of the best Offline samples/s (the last variant's engine serves them)",
    )
    ap.add_argument("--server-seconds", type=int, default=60)
    ap.add_argument(
        "--server-prefill-tokens", type=int, default=0, help="the Server runs' step budget (0: --prefill-tokens)"
    )
    ap.add_argument("--server-chunk-tokens", type=int, default=0, help="the Server runs' chunk cap (0: --chunk-tokens)")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run with --tiny")
    ap.add_argument("--tiny", action="store_true", help="narrow layers (a smoke run of this script)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/llm_gpu.json"))
    return ap


def main() -> None:
    args = build_parser().parse_args()
    prov = Provenance()

    import gc

    import torch
    import transformers

    from subtool.runner.llm.sut_torch import TorchLlmSUT
    from subtool.runner.llm.workload import Generation

    t0 = time.time()
    model = build_model(args.layers, args.device, args.tiny)
    prompts = make_prompts(max(args.samples, args.ref_samples), args.prompt_len)
    cuda = args.device == "cuda"
    result = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "model": f"Llama-3.1-8B architecture ({args.layers} layers), random weights, bf16",
        "prompt_tokens_mean": float(np.mean([len(p) for p in prompts])),
        "new_tokens": args.new_tokens,
        "build_seconds": round(time.time() - t0, 1),
        "published": PUBLISHED,
    }
    work = Path(tempfile.mkdtemp(prefix="llm-bench-"))

    if not args.skip_reference:
        ref = ReferenceStyleSUT(model, prompts, args.ref_batch, args.new_tokens)
        result["reference_offline"] = {
            "batch": args.ref_batch,
            **run_loadgen(ref.handle, args.ref_samples, "Offline", offline_conf(args.ref_samples), work / "ref"),
        }
        ref.stop()
        print(json.dumps(result["reference_offline"]), flush=True)

    gen = Generation(
        max_new_tokens=args.new_tokens,
        min_new_tokens=args.new_tokens,
        num_beams=1,
        output_dtype="int32",
        token_latencies=True,
    )
    variants = parse_variants(args.variants)
    result["subtool_offline"] = []
    sut = None
    for k, v in enumerate(variants):
        if sut is not None:
            sut.stop()
            sut = engine = None  # the previous engine's KV cache must go before the next one's
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
        t1 = time.time()
        # the path `subtool run --precision fp8|bf16` takes (fp8: e4m3 projections and, with Triton, KV cache)
        sut = TorchLlmSUT(
            None,
            prompts,
            gen,
            eos_token_id=EOS_IDS,
            pad_token_id=0,
            batch_size=v["slots"],
            device=args.device,
            precision=v["weights"],
            engine="continuous",
            model=model,
            engine_options={"prefill_tokens": args.prefill_tokens, "chunk_tokens": args.chunk_tokens or None},
        )
        engine = sut.generator.engine if hasattr(sut, "generator") else sut.engine
        engine.warm_up([len(p) for p in prompts[: args.samples]])
        setup = round(time.time() - t1, 1)
        point = {
            **v,
            "prefill_tokens": args.prefill_tokens,
            "chunk_tokens": engine.chunk_tokens,
            "setup_seconds": setup,
            **run_loadgen(sut.handle, args.samples, "Offline", offline_conf(args.samples), work / f"offline{k}"),
        }
        point["engine"] = {
            "weights": engine.weights,
            "kv_cache": "fp8" if engine.kv_fp8 else "bf16",
            "decode_attention": engine.decode_attention,
            "compiled": engine.compiled,
            **vars(engine.stats),
        }
        if cuda:
            point["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        result["subtool_offline"].append(point)
        print(json.dumps(point), flush=True)

    best = max(result["subtool_offline"], key=lambda p: p.get("result") or 0)
    sps = result["subtool_offline"][-1].get("samples_per_second") or 0
    result["subtool_server"] = []
    if sut is not None:  # plain attributes the engine reads every step: Server may chunk finer than Offline
        engine.prefill_tokens = max(args.server_prefill_tokens or args.prefill_tokens, engine.slots + 1)
        engine.chunk_tokens = args.server_chunk_tokens or args.chunk_tokens or engine.prefill_tokens
    for fraction in [float(f) for f in args.server_fractions.split(",") if f] if args.server_seconds > 0 else []:
        qps = round(sps * fraction, 3)
        conf = [
            f"performance_sample_count_override = {args.samples}",
            f"target_qps = {qps}",
            f"min_duration = {args.server_seconds * 1000}",
            "min_query_count = 800",
        ]
        engine.stats = type(engine.stats)(graphs=engine.stats.graphs)  # this point's steps alone
        point = {
            "weights": variants[-1]["weights"],
            "fraction_of_offline": fraction,
            "target_qps": qps,
            **run_loadgen(sut.handle, args.samples, "Server", conf, work / f"server{fraction}"),
        }
        point["engine"] = {"step_budget": engine.prefill_tokens, "chunk_tokens": engine.chunk_tokens}
        point["engine"].update(vars(engine.stats))
        result["subtool_server"].append(point)
        print(json.dumps(point), flush=True)
    if sut is not None:
        sut.stop()
    ours = best.get("result")
    if ours:
        result["best_offline"] = {"weights": best["weights"], "slots": best["slots"], "tokens_per_second": ours}
        result["ratio_to_published"] = round(ours / PUBLISHED["tokens_per_second"], 3)
        if result.get("reference_offline", {}).get("result"):
            result["speedup_vs_reference"] = round(ours / result["reference_offline"]["result"], 2)
    prov.write(result, args.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
