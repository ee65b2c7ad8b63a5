"""BERT-99 on one GPU under LoadGen: the reference-style SUT against subtool's torch-cuda SUT, in one run.

Data: the embedded demo data set (10,833 features with a SQuAD-like spread of lengths, the official bert-99
sample count). Model: BERT-large's shape (hidden 1024, 24 layers, 16 heads, intermediate 4096, vocab 30522)
with random weights, generated on the device as a Hugging Face checkpoint, since no checkpoint can be fetched.

What it measures, each under LoadGen with the QSL holding all 10,833 features:
  1. reference-style SUT: transformers' BertForQuestionAnswering, fp32, batch 1, padded to 384 (Offline, a
     shorter query: at ~70 samples/s the whole data set would take minutes);
  2. the ground truth: fp32 answers of every feature (transformers, fp32 without TF32, samples grouped by
     exact length, i.e. batch-1 arithmetic);
  3. torch-cuda in bf16, fp16 (float32 residual stream) and fp8 where the GPU has it: Offline performance,
     then an accuracy run whose answers are scored against the fp32 ones (F1, fp32 answers as ground truth);
     transformers' own bf16 and fp16 models are scored the same way, as controls;
  4. torch-cuda in the Server scenario: a search for the highest target QPS that LoadGen still calls VALID
     under the 130 ms bert-99 latency bound;
  5. forward-only ceilings (a CUDA graph replayed back to back), the forward over the whole data set in the
     Offline SUT's batches and through its executor (no LoadGen), and a kernel-time profile of one batch.

    python bench/bert_gpu.py --out bench/results/bert_gpu.json [--work DIR] [--budget TOKENS] [--quick]

With --proxy DIR (what bench/bert_proxy/train.py wrote: a trained BERT-large-shaped checkpoint and its held-out
questions), one lean run measures what bert-99's criterion needs instead: the fp32 F1 on the proxy, then for each
precision its Offline samples/s under LoadGen and the F1 of its LoadGen accuracy run relative to fp32's (fp8
calibrated and planned as `subtool run --precision fp8` does it), what `--precision auto` picks on it with its one
line, and the same two figures for the reference-style SUT and for transformers' bf16 model batched (the peer a
user would pick):

    python bench/bert_gpu.py --proxy /tmp/proxy --out bench/results/bert_gpu_proxy.json
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmeta import Provenance  # noqa: E402
from gpu_telemetry import Telemetry  # noqa: E402

from subtool.runner.bert.squad import MAX_SEQ_LENGTH  # noqa: E402

LARGE = dict(
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    vocab_size=30522,
    max_position_embeddings=512,
    type_vocab_size=2,
)
SERVER_LATENCY_NS = 130_000_000


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------ set-up
def environment() -> dict:
    import torch
    import transformers

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(),
        "capability": ".".join(map(str, torch.cuda.get_device_capability())),
        "cpu_cores": os.cpu_count(),
    }
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = "absent"
    from importlib.metadata import PackageNotFoundError, version

    try:
        env["loadgen"] = version("mlcommons-loadgen")
    except PackageNotFoundError:  # --forward-only runs without it
        env["loadgen"] = "absent"
    try:
        env["driver"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        env["driver"] = "unknown"
    return env


def make_assets(work: Path):
    """(checkpoint dir, dataset path, BertData): BERT-large shape, random weights, the demo vocabulary and data."""
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    from subtool.runner.bert.checkpoint import check_checkpoint
    from subtool.runner.bert.demo import demo_assets
    from subtool.runner.bert.workload import load_data

    demo = demo_assets(work / "cache")
    ckpt = work / "bert-large-random"
    if not (ckpt / "model.safetensors").exists():
        ckpt.mkdir(parents=True, exist_ok=True)
        for f in demo.model_path.iterdir():
            if f.name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
                shutil.copy(f, ckpt / f.name)
        torch.manual_seed(20261126)
        with torch.device("cuda"):
            model = BertForQuestionAnswering(BertConfig(**LARGE))
        model.save_pretrained(ckpt)
        del model
        torch.cuda.empty_cache()
    data = load_data(ckpt, demo.dataset_path, work / "cache" / "features", check_checkpoint(ckpt))
    return ckpt, demo.dataset_path, data


# ------------------------------------------------------------------------------------------------ LoadGen
def offline_settings(target_qps: float, min_duration_ms: int):
    import mlperf_loadgen as lg

    s = lg.TestSettings()
    s.scenario = lg.TestScenario.Offline
    s.offline_expected_qps = target_qps
    s.min_duration_ms = min_duration_ms
    return s


def server_settings(target_qps: float, min_duration_ms: int):
    import mlperf_loadgen as lg

    s = lg.TestSettings()
    s.scenario = lg.TestScenario.Server
    s.server_target_qps = target_qps
    s.server_target_latency_ns = SERVER_LATENCY_NS
    s.server_target_latency_percentile = 0.99
    s.min_duration_ms = min_duration_ms
    s.min_query_count = int(target_qps * min_duration_ms / 1000)
    return s


def loadgen_run(sut, qsl, settings, scenario: str, mode: str, outdir: Path) -> dict:
    from subtool.runner.harness import read_detail_log, run_loadgen

    t0 = time.time()
    with Telemetry() as telemetry:  # llama2-70b's runs sat at the H200's power cap: does BERT's fp8 too?
        run = run_loadgen(sut.handle, qsl.handle, settings, scenario=scenario, mode=mode, outdir=outdir)
    wall = time.time() - t0
    detail = read_detail_log(outdir / "mlperf_log_detail.txt")
    out = {"scenario": scenario, "mode": mode, "wall_s": round(wall, 2), "errors": run.errors}
    if mode == "performance":
        out["gpu_telemetry"] = telemetry.summary()
        keys = (
            "result_samples_per_second",
            "result_completed_samples_per_sec",
            "result_scheduled_samples_per_sec",
            "result_validity",
            "result_min_duration_met",
            "result_min_queries_met",
            "result_perf_constraints_met",
            "result_99.00_percentile_latency_ns",
            "result_90.00_percentile_latency_ns",
            "result_mean_latency_ns",
            "result_max_latency_ns",
            "generated_query_count",
            "generated_samples_per_query",
            "effective_target_qps",
            "effective_min_duration_ms",
            "effective_min_query_count",
            "effective_samples_per_query",
            "effective_target_latency_ns",
            "early_stopping_result",
        )
        out.update({k: detail.get(k) for k in keys if k in detail})
        out["result"] = run.result
        out["validity"] = run.validity
    return out


# ------------------------------------------------------------------------------------------------ SUTs
def reference_sut(ckpt: Path, features, device: str = "cuda"):
    """The reference's way: transformers BERT, fp32, one sample per forward, padded to 384."""
    import torch

    from subtool.runner.bert.sut_cpu import TorchBertSUT

    class PaddedReference(TorchBertSUT):
        def infer(self, indices):
            f = self.features
            ids = torch.from_numpy(f.input_ids[indices].astype(np.int64)).to(self.device)
            mask = torch.from_numpy(f.input_mask[indices].astype(np.int64)).to(self.device)
            seg = torch.from_numpy(f.segment_ids[indices].astype(np.int64)).to(self.device)
            with torch.inference_mode():
                out = self.model(input_ids=ids, attention_mask=mask, token_type_ids=seg)
            return torch.stack([out.start_logits, out.end_logits], dim=-1).float().cpu().numpy()

    return PaddedReference(ckpt, features, batch_size=1, device=device)


def torch_dtype(name: str):
    """torch's dtype for one of the precision names transformers' models run in here."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def transformers_sut(ckpt: Path, features, device: str, dtype: str, batch_size: int = 64):
    """The peer a user would pick: transformers' BertForQuestionAnswering in `dtype`, samples of like length
    batched `batch_size` at a time, each batch padded to its longest."""
    from subtool.runner.bert.sut_cpu import TorchBertSUT

    sut = TorchBertSUT(ckpt, features, batch_size=batch_size, device=device)  # loads fp32; nothing is queued yet
    sut.model.to(torch_dtype(dtype))
    return sut


def transformers_logits(ckpt: Path, features, dtype: str = "fp32", device: str = "cuda") -> dict[int, np.ndarray]:
    """transformers' logits of every feature: samples of equal length batched together (no padding, so the
    arithmetic is batch-1's); fp32 with TF32 off is the ground truth."""
    import torch
    from transformers import BertForQuestionAnswering

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = BertForQuestionAnswering.from_pretrained(str(ckpt), dtype=torch_dtype(dtype)).to(device).eval()
    out: dict[int, np.ndarray] = {}
    lengths = features.seq_lengths
    with torch.inference_mode():
        for n in np.unique(lengths):
            group = np.flatnonzero(lengths == n)
            for start in range(0, group.size, 64):
                idx = group[start : start + 64]
                ids = torch.from_numpy(features.input_ids[idx, :n].astype(np.int64)).to(device)
                seg = torch.from_numpy(features.segment_ids[idx, :n].astype(np.int64)).to(device)
                res = model(input_ids=ids, token_type_ids=seg)
                logits = torch.stack([res.start_logits, res.end_logits], -1).float().cpu().numpy()
                for row, i in enumerate(idx):
                    full = np.zeros((MAX_SEQ_LENGTH, 2), np.float32)
                    full[:n] = logits[row]
                    out[int(i)] = full
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def offline_batches(features, budget: int):
    """(batch, packed inputs) for every feature, batched as the Offline SUT batches one query of all of them
    (longest first, the shortest filling each batch's remainder)."""
    from subtool.runner.bert.packed_plan import TokenBatcher, pack_inputs

    batcher = TokenBatcher(features.seq_lengths, budget)
    everything = np.arange(len(features))
    batcher.add(everything, everything)
    while (batch := batcher.take()) is not None:
        yield (
            batch,
            pack_inputs(
                features.input_ids,
                features.segment_ids,
                features.seq_lengths,
                batch.indices,
                batch.bucket,
                batch.capacity,
            ),
        )


def packed_logits(model, features, budget: int) -> dict[int, np.ndarray]:
    """Every feature through a PackedBert eagerly (no LoadGen, no graphs): for accuracy variants."""
    import torch

    out: dict[int, np.ndarray] = {}
    t = lambda a: torch.from_numpy(a).cuda()  # noqa: E731
    with torch.inference_mode():
        for batch, p in offline_batches(features, budget):
            res = torch.zeros((batch.capacity * MAX_SEQ_LENGTH + 1, 2), device="cuda")
            model.forward(
                t(p.input_ids),
                t(p.segment_ids),
                t(p.position_ids),
                t(p.out_rows),
                t(p.cu_seqlens),
                res,
                sequences=p.sequences,
            )
            arr = res[: p.sequences * MAX_SEQ_LENGTH].view(p.sequences, MAX_SEQ_LENGTH, 2).cpu().numpy()
            for row, i in enumerate(batch.indices):
                out[int(i)] = arr[row]
    return out


def logit_error(logits: dict[int, np.ndarray], truth: dict[int, np.ndarray], features) -> dict:
    """Relative L2 error of the logits over real tokens, and how often the start/end argmax moved."""
    num = den = 0.0
    same_start = same_end = 0
    for i, ref in truth.items():
        n = int(features.seq_lengths[i])
        got = logits[i][:n]
        num += float(((got - ref[:n]) ** 2).sum())
        den += float((ref[:n] ** 2).sum())
        same_start += int(got[:, 0].argmax() == ref[:n, 0].argmax())
        same_end += int(got[:, 1].argmax() == ref[:n, 1].argmax())
    k = max(1, len(truth))
    return {
        "rel_l2": round((num / den) ** 0.5, 5),
        "start_argmax_same": round(same_start / k, 4),
        "end_argmax_same": round(same_end / k, 4),
    }


def margins(truth: dict[int, np.ndarray], features) -> dict:
    """How close the ground truth's best and second-best start logits are, relative to the logits' spread:
    small margins make any low-precision arithmetic move answers."""
    rel = []
    for i, ref in truth.items():
        n = int(features.seq_lengths[i])
        s = np.sort(ref[:n, 0])
        rel.append((s[-1] - s[-2]) / max(1e-9, float(s.std())))
    rel = np.asarray(rel)
    return {"top1_minus_top2_over_std_p10_p50_p90": np.percentile(rel, [10, 50, 90]).round(4).tolist()}


def agreement(data, logits: dict[int, np.ndarray], truth_answers: dict[str, str]) -> dict:
    """EM/F1 of these logits' answers, scored with the fp32 answers as the only ground truth."""
    from subtool.runner.bert.squad_eval import best_answers, squad_v11_scores

    preds = best_answers(data.examples, data.features, logits, data.tokenizer.convert_ids_to_tokens)
    examples = [dataclasses.replace(ex, answers=[truth_answers[ex.qas_id]]) for ex in data.examples]
    scores = squad_v11_scores(preds, examples)
    return {k: round(v, 3) for k, v in scores.items()}


def scored(data, logits: dict[int, np.ndarray], truth, truth_answers) -> dict:
    """A run's logits against the fp32 ones: {"vs_fp32": EM/F1 of its answers, "logits_vs_fp32": logit error}."""
    return {
        "vs_fp32": agreement(data, logits, truth_answers),
        "logits_vs_fp32": logit_error(logits, truth, data.features),
    }


# ------------------------------------------------------------------------------------------------ ceilings
def forward_ceiling(model, features, tokens: int, reps: int = 20) -> dict:
    """Samples/s of the forward alone: one CUDA graph of a full `tokens` batch of real samples, replayed."""
    import torch

    from subtool.runner.bert.packed_plan import TokenBatcher, pack_inputs

    batcher = TokenBatcher(features.seq_lengths, tokens, (tokens,))
    order = np.random.default_rng(0).permutation(len(features))
    batcher.add(order, order)
    batch = batcher.take()
    p = pack_inputs(
        features.input_ids, features.segment_ids, features.seq_lengths, batch.indices, tokens, batch.capacity
    )
    t = lambda a: torch.from_numpy(a).cuda()  # noqa: E731
    ins = [t(p.input_ids), t(p.segment_ids), t(p.position_ids), t(p.out_rows), t(p.cu_seqlens)]
    out = torch.zeros((batch.capacity * MAX_SEQ_LENGTH + 1, 2), device="cuda")
    side = torch.cuda.Stream()
    with torch.inference_mode():
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            model.forward(*ins, out)
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=side):
            model.forward(*ins, out)
        for _ in range(3):
            g.replay()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            g.replay()
        end.record()
        torch.cuda.synchronize()
    ms = start.elapsed_time(end) / reps
    del g
    mean_len = float(features.seq_lengths.mean())
    return {
        "tokens": p.tokens,
        "sequences": p.sequences,
        "capacity": batch.capacity,
        "ms_per_batch": round(ms, 3),
        "tokens_per_s": round(p.tokens / ms * 1000),
        "samples_per_s_at_mean_length": round(p.tokens / ms * 1000 / mean_len, 1),
    }


def data_set_forward(model, features, budget: int, reps: int = 2) -> dict:
    """Samples/s of the forward over the whole data set, batched as the Offline SUT batches it (longest first, the
    shortest filling each batch) and run through the SUT's own executor (a CUDA graph per shape, copies on their
    own stream; the eager one on a CPU), the inputs packed beforehand, no LoadGen: what an Offline run can approach.
    forward_ceiling's one batch holds the data set's longest sequences, so its samples/s at the mean length is a
    figure for those, not for an average batch; this one has the data set's own spread of lengths."""
    from subtool.runner.bert.packed_plan import token_buckets
    from subtool.runner.bert.sut_cuda import EagerExecutor, GraphExecutor

    buckets = token_buckets(budget)
    on_gpu = str(model.device).startswith("cuda")
    t0 = time.perf_counter()
    executor = (GraphExecutor if on_gpu else EagerExecutor)(model, buckets, 2)
    build_s = time.perf_counter() - t0
    packs = [packed for _, packed in offline_batches(features, budget)]
    seconds = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for i, packed in enumerate(packs):
            slot = executor.slots[i % len(executor.slots)]
            if i >= len(executor.slots):
                executor.wait(slot)  # the batch that used this slot is back on the host
            executor.submit(slot, packed)
        for slot in executor.slots:
            executor.wait(slot)
        seconds.append(time.perf_counter() - t0)
    best = min(seconds)
    real = int(sum(p.tokens for p in packs))
    padded = int(sum(p.input_ids.size for p in packs))
    return {
        "samples": len(features),
        "batches": len(packs),
        "mean_sequences_per_batch": round(len(features) / len(packs), 1),
        "tokens": real,
        "padding_overhead": round(padded / real - 1, 4),
        "graphs": len(getattr(executor, "graphs", {})),
        "build_s": round(build_s, 1),
        "seconds": [round(s, 4) for s in seconds],
        "samples_per_s": round(len(features) / best, 1),
        "tokens_per_s": round(real / best),
    }


def kernel_profile(model, features, tokens: int) -> dict:
    """CUDA time of one eager forward of a full batch, by kind of kernel; GEMM TFLOP/s from the FLOP count."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from subtool.runner.bert.packed_plan import TokenBatcher, pack_inputs

    batcher = TokenBatcher(features.seq_lengths, tokens, (tokens,))
    order = np.random.default_rng(1).permutation(len(features))
    batcher.add(order, order)
    batch = batcher.take()
    p = pack_inputs(
        features.input_ids, features.segment_ids, features.seq_lengths, batch.indices, tokens, batch.capacity
    )
    t = lambda a: torch.from_numpy(a).cuda()  # noqa: E731
    ins = [t(p.input_ids), t(p.segment_ids), t(p.position_ids), t(p.out_rows), t(p.cu_seqlens)]
    out = torch.zeros((batch.capacity * MAX_SEQ_LENGTH + 1, 2), device="cuda")
    with torch.inference_mode():
        model.forward(*ins, out)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            model.forward(*ins, out)
            torch.cuda.synchronize()
    groups: dict[str, float] = {}
    for ev in prof.key_averages():
        us = getattr(ev, "device_time_total", None) or getattr(ev, "cuda_time_total", 0.0)
        if not us or ev.key.startswith("aten::") or ev.key.startswith("cuda"):
            continue
        k = ev.key.lower()
        kind = (
            "attention (flash varlen)"
            if "flash" in k
            else "attention (triton packed)"
            if "_packed_attention" in k
            else "gemm+gelu+fp8 (triton)"
            if "_fp8_gelu_gemm" in k
            else "gemm"
            if any(s in k for s in ("gemm", "nvjet", "sm90", "cutlass", "cublas", "xmma", "matmul", "f8f8"))
            else "layernorm+quant (triton)"
            if "_add_layernorm" in k
            else "fp8 quant / gelu (triton)"
            if "_rowwise_fp8" in k
            else "embedding"
            if "embedding" in k or "index" in k
            else "other"
        )
        groups[kind] = groups.get(kind, 0.0) + us
    total = sum(groups.values())
    sh = model.shape
    lens = features.seq_lengths[batch.indices].astype(np.int64)
    gemm_flops = 2 * p.tokens * sh.layers * (4 * sh.hidden * sh.hidden + 2 * sh.hidden * sh.intermediate)
    attn_flops = 4 * sh.layers * sh.hidden * int((lens * lens).sum())
    top = sorted(
        (
            (ev.key, getattr(ev, "device_time_total", 0.0) or getattr(ev, "cuda_time_total", 0.0))
            for ev in prof.key_averages()
            if not ev.key.startswith("aten::")
        ),
        key=lambda x: -x[1],
    )[:12]
    return {
        "tokens": p.tokens,
        "kernel_ms": round(total / 1000, 3),
        "share": {k: round(v / total, 3) for k, v in sorted(groups.items(), key=lambda x: -x[1])},
        "gemm_tflops": round(
            gemm_flops / ((sum(v for k, v in groups.items() if k.startswith("gemm")) or 1.0) * 1e-6) / 1e12, 1
        ),
        "attention_tflops": round(
            attn_flops / ((sum(v for k, v in groups.items() if k.startswith("attention")) or 1.0) * 1e-6) / 1e12, 1
        ),
        "top_kernels_us": [(k[:90], round(v, 1)) for k, v in top],
    }


# ------------------------------------------------------------------------------------------------ main
def ground_truth(report: dict, ckpt, data):
    """The fp32 batch-1-equivalent logits and their answers, recorded in `report`."""
    from subtool.runner.bert.squad_eval import best_answers

    t0 = time.time()
    truth = transformers_logits(ckpt, data.features, "fp32")
    truth_answers = best_answers(data.examples, data.features, truth, data.tokenizer.convert_ids_to_tokens)
    report["ground_truth"] = {
        "what": "transformers fp32 (TF32 off), equal-length groups = batch-1 math",
        "seconds": round(time.time() - t0, 1),
        "margins": margins(truth, data.features),
    }
    log(f"fp32 ground truth in {time.time() - t0:.1f} s {report['ground_truth']['margins']}")
    return truth, truth_answers


def fast_block(name, ckpt, data, qsl, precision, budget, work, truth, truth_answers, results, quick, server):
    """One torch-cuda configuration: build (graph capture), Offline perf, accuracy, optional Server search."""
    import torch

    from subtool.runner.bert.sut_cuda import TorchCudaBertSUT
    from subtool.runner.bert.workload import read_accuracy_log

    t0 = time.time()
    sut = TorchCudaBertSUT(ckpt, data.features, precision=precision, token_budget=budget)
    build_s = round(time.time() - t0, 1)
    log(
        f"{name}: built in {build_s} s ({sut.stats()['graph_shapes']} graphs over {len(sut.buckets)} buckets, "
        f"kernels={sut.model.kernels}, "
        f"attention={sut.model.attention})"
    )
    entry = {
        "name": name,
        "sut": "torch-cuda",
        "precision": precision,
        "token_budget": budget,
        "build_s": build_s,
        "buckets": list(sut.buckets),
    }
    try:
        runs = []
        for rep in range(1 if quick else 2):
            before = sut.stats()
            r = loadgen_run(
                sut, qsl, offline_settings(10000, 3000), "Offline", "performance", work / f"{name}-offline-{rep}"
            )
            after = sut.stats()
            r["batches"] = after["batches"] - before["batches"]
            r["padding_overhead"] = round(
                (after["padded_tokens"] - before["padded_tokens"])
                / max(1, after["real_tokens"] - before["real_tokens"])
                - 1,
                4,
            )
            runs.append(r)
            log(f"{name}: Offline {r['result']:.1f} samples/s {r['validity']} ({r['wall_s']} s)")
        entry["offline"] = runs
        entry["offline_samples_per_s"] = max(r["result"] for r in runs)
        acc = loadgen_run(sut, qsl, offline_settings(10000, 1000), "Offline", "accuracy", work / f"{name}-acc")
        logits = read_accuracy_log(work / f"{name}-acc" / "mlperf_log_accuracy.json")
        entry["accuracy_run"] = acc
        entry["answered_features"] = len(logits)
        entry.update(scored(data, logits, truth, truth_answers))
        del logits
        log(f"{name}: vs fp32 answers {entry['vs_fp32']} logits {entry['logits_vs_fp32']}")
        if server:
            entry["server"] = server_search(sut, qsl, entry["offline_samples_per_s"], work / f"{name}-server", quick)
    finally:
        sut.stop()
        entry["sut_stats"] = sut.stats()
    results.append(entry)
    forward_study(name, sut.model, data, precision, budget, entry, quick, truth, truth_answers)
    del sut
    torch.cuda.empty_cache()
    return entry


# the attention kernel's tiles tried by forward_study: (queries, keys, warps, stages); its defaults are the first
# two (kernels/packed_attention.py: 128 queries and 8 warps for fp8's e4m3 output, 64 and 4 for a 16-bit one)
ATTENTION_TILES = (
    (128, 64, 8, 3),
    (64, 64, 4, 3),
    (64, 128, 4, 3),
    (64, 64, 4, 2),
    (64, 64, 8, 3),
    (128, 128, 8, 2),
    (64, 32, 4, 3),
)


# the fused fp8 GELU product's tiles tried by forward_study: (rows, columns, depth, warps, stages, persistent programs
# a multiprocessor). Compiled for sm_90 on a CPU, with the epilogue as it was before its rewrite (bench/fp8_gemm_sass.py
# gives today's counts): 128x256x128 with 8 warps (the default until three H100 runs,
# bench/results/bert_gpu_h100_forward_gelu_tiles*.json) takes 226 registers and 181 KB of shared memory a program, so
# one program a multiprocessor, and its GELU epilogue (~2,170 instructions a thread) overlaps no other program's
# products; 128x128x128 with 4 warps (the default now) takes 207 registers and 115 KB, 128x128x64 with 4 warps and 4
# stages 209 and 82 KB, 64x256x128 with 4 warps and 2 stages 234 and 99 KB, 128x128x128 with 2 stages 206 and 82 KB:
# two programs a multiprocessor fit. 8 warps at 128x128 take 166 registers: one fits.
GELU_GEMM_TILES = (
    (128, 128, 128, 4, 3, 2),
    (128, 256, 128, 8, 3, 1),
    (128, 128, 64, 4, 4, 2),
    (128, 128, 128, 4, 3, 1),
    (128, 128, 128, 8, 3, 1),
    (128, 256, 64, 8, 4, 1),
    (64, 256, 128, 4, 2, 2),
    (128, 128, 128, 4, 2, 2),
)


def forward_study(name, m, data, precision, budget, entry, quick, truth=None, truth_answers=None) -> None:
    """Forward-only ceilings, what each implementation choice is worth at the budget (with the answers' F1 against
    fp32 where the fp32 answers are given), and a kernel profile, into `entry`."""
    ceilings = []
    for tokens in (budget,) if quick else sorted({budget // 2, budget, budget * 2}):
        ceilings.append(forward_ceiling(m, data.features, tokens))
        log(f"{name}: forward-only {ceilings[-1]}")
    entry["forward_only"] = ceilings
    entry["forward_data_set"] = data_set_forward(m, data.features, budget, reps=1 if quick else 2)
    log(f"{name}: forward over the data set {entry['forward_data_set']}")
    entry["forward_only_variants"] = variants = {}

    def variant(label, attr, value, accuracy=False, **more):
        changes = {attr: value, **more}
        old = {a: getattr(m, a) for a in changes}
        for a, v in changes.items():
            setattr(m, a, v)
        try:
            v = forward_ceiling(m, data.features, budget)
            if accuracy and truth is not None:
                v.update(scored(data, packed_logits(m, data.features, budget), truth, truth_answers))
            variants[label] = v
        except Exception as exc:  # noqa: BLE001 - a variant that does not run is a finding, not a failure
            variants[label] = {"failed": repr(exc)[:300]}
        finally:
            for a, v in old.items():
                setattr(m, a, v)
        log(f"{name}: variant {label}: {variants[label]}")

    if m.attention == "triton" and m.flash:  # what each choice is worth, at the budget
        variant("flash_varlen_attention", "attention", "flash", accuracy=True)
    if m.attention == "triton":  # the attention kernel's tiles, its defaults among them
        for m_, n_, warps, stages in ATTENTION_TILES:
            tiles = {"block_m": m_, "block_n": n_, "num_warps": warps, "num_stages": stages}
            variant(f"attention_tiles_{m_}x{n_}_{warps}w_{stages}s", "attention_tiles", tiles)
    if m.fused_gelu and precision != "fp8":  # (fp8's own GELU is in its fused product; this one is its bf16 layers')
        variant("exact_gelu_not_fused_into_gemm", "fused_gelu", False, accuracy=True)
    if m.residual_fp32 or m.sublayer_out_fp32:
        variant("residual_stream_in_compute_dtype", "residual_fp32", False, accuracy=True, sublayer_out_fp32=False)
    if m.sublayer_out_fp32:
        variant("float32_residual_but_products_write_compute_dtype", "sublayer_out_fp32", False, accuracy=True)
    if precision == "bf16" and m.kernels == "triton" and not m.residual_fp32:
        variant("float32_residual_stream_as_fp16_has", "residual_fp32", True, accuracy=True, sublayer_out_fp32=True)
    if m.kernels == "triton" and precision != "fp8":
        variant("layernorm_in_torch_ops", "kernels", "torch")
    if m.kernels == "triton" and m.fused_head:
        variant("answer_head_as_a_float32_product", "fused_head", False, accuracy=True)
    if m.kernels == "triton" and m.fused_embedding:
        variant("embedding_gathers_in_torch", "fused_embedding", False, accuracy=True)
    if precision == "fp8":
        if m.attention == "triton":
            variant("fp8_attention_output_quantized_row_by_row", "fp8_attention_out", False, accuracy=True)
        if m.fp8_fused_ffn:
            variant("fp8_gelu_quantized_after_the_cublas_product", "fp8_fused_ffn", False, accuracy=True)
            for bm, bn, bk, warps, stages, per_sm in GELU_GEMM_TILES:
                tiles = {"block_m": bm, "block_n": bn, "block_k": bk, "num_warps": warps, "num_stages": stages}
                label = f"gelu_gemm_tiles_{bm}x{bn}x{bk}_{warps}w_{stages}s_{per_sm}persm"
                variant(label, "gelu_gemm_tiles", {**tiles, "per_sm": per_sm})
        variant("fp8_without_fast_accumulation", "fp8_fast_accum", False, accuracy=True)
        variant("fp8_ffn_only_attention_projections_bf16", "fp8_ops", frozenset({"ff1", "ff2"}), accuracy=True)
    entry["profile"] = kernel_profile(m, data.features, budget)
    log(f"{name}: profile {entry['profile']['share']} gemm {entry['profile']['gemm_tflops']} TFLOP/s")


def forward_only_block(name, ckpt, data, precision, budget, results, quick, truth=None, truth_answers=None) -> None:
    """--forward-only: the model without LoadGen or graphs per bucket (bench/results/bert_gpu_h100_forward_only.json:
    24 s from start to finish on an H100); with the fp32 answers (--accuracy), also the F1 of this configuration
    and its variants."""
    import torch

    from subtool.runner.bert.packed_model import PackedBert

    t0 = time.time()
    model = PackedBert(ckpt, device="cuda", precision=precision)
    entry = {
        "name": name,
        "sut": "torch-cuda (forward only)",
        "precision": precision,
        "token_budget": budget,
        "load_s": round(time.time() - t0, 1),
        "kernels": model.kernels,
        "attention": model.attention,
    }
    results.append(entry)
    if truth is not None:
        entry.update(scored(data, packed_logits(model, data.features, budget), truth, truth_answers))
        log(f"{name}: vs fp32 answers {entry['vs_fp32']} logits {entry['logits_vs_fp32']}")
    forward_study(name, model, data, precision, budget, entry, quick, truth, truth_answers)
    del model
    torch.cuda.empty_cache()


def server_search(sut, qsl, offline_qps: float, work: Path, quick: bool) -> dict:
    """Highest VALID Server target QPS: start at 85% of Offline, step down 7% when INVALID, up 4% when VALID."""
    duration = 6000 if quick else 10000
    trials = []
    qps = round(offline_qps * 0.85)
    best = None
    for i in range(3 if quick else 6):
        r = loadgen_run(sut, qsl, server_settings(qps, duration), "Server", "performance", work / f"q{i}")
        r["target_qps"] = qps
        trials.append(r)
        p99_ms = r.get("result_99.00_percentile_latency_ns", 0) / 1e6
        log(
            f"server: target {qps} → {r['validity']} p99 {p99_ms:.1f} ms"
            f" completed {r.get('result_completed_samples_per_sec')}"
        )
        if r["validity"] == "VALID":
            best = max(best or 0, qps)
            qps = round(qps * 1.04)
        else:
            if best is not None:
                break
            qps = round(qps * 0.93)
    return {
        "best_valid_target_qps": best,
        "min_duration_ms": duration,
        "latency_bound_ms": SERVER_LATENCY_NS / 1e6,
        "trials": trials,
    }


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/bert_gpu.json"))
    ap.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "subtool-bert-gpu",
        help="scratch: generated checkpoint, demo data, LoadGen logs",
    )
    ap.add_argument("--budget", type=int, default=16384, help="token budget per batch of the fast SUT")
    ap.add_argument(
        "--proxy",
        type=Path,
        default=None,
        help="a trained proxy (bench/bert_proxy/train.py --out): each precision's samples/s and F1 ratio on it",
    )
    ap.add_argument("--device", default="cuda", help="with --proxy: cpu checks the script itself (fp8 emulated)")
    ap.add_argument("--reference-samples", type=int, default=800)
    ap.add_argument(
        "--proxy-qps",
        type=float,
        default=10000.0,
        help="with --proxy: the Offline runs' expected QPS (3-second runs; lower it on a CPU)",
    )
    ap.add_argument(
        "--peers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --proxy: also the reference-style SUT and transformers' bf16 model, after subtool's precisions",
    )
    ap.add_argument("--precisions", default="bf16,fp16,fp8")
    ap.add_argument("--quick", action="store_true", help="shorter runs, to check the script itself")
    ap.add_argument(
        "--forward-only",
        action="store_true",
        help="only the model's forward (ceilings, variants, profile): no LoadGen, reference or fp32 "
        "answers; for trying a kernel change in a minute of device time",
    )
    ap.add_argument(
        "--accuracy",
        action="store_true",
        help="with --forward-only: also the fp32 answers (36 s on an H100: bert_gpu_h100.json's "
        "ground_truth) and each configuration's F1 "
        "against them",
    )
    return ap


def main() -> None:
    args = build_parser().parse_args()
    prov = Provenance()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.proxy is not None:
        proxy_main(args, prov, proxy_record(args.proxy))  # a proxy without its record fails before torch loads
        return

    import torch

    from subtool.fsutil import atomic_write_json
    from subtool.runner.bert.workload import BertQSL

    if not torch.cuda.is_available():
        sys.exit("bench/bert_gpu.py needs a CUDA GPU")
    report: dict = {
        "schema": "subtool.bench.bert_gpu/1",
        "command": prov.command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": environment(),
        "model": {"config": LARGE, "weights": "random (seed 20261126), BERT-large shape"},
    }
    log(f"environment {report['environment']}")
    t0 = time.time()
    ckpt, _, data = make_assets(args.work)
    f = data.features
    report["dataset"] = {
        "features": len(f),
        "questions": len(data.examples),
        "mean_tokens": round(float(f.seq_lengths.mean()), 1),
        "p50_p90_p99_tokens": np.percentile(f.seq_lengths, [50, 90, 99]).tolist(),
        "source": "subtool embedded demo (SQuAD-like lengths)",
    }
    log(f"assets in {time.time() - t0:.1f} s: {report['dataset']}")
    results: list[dict] = []
    report["runs"] = results
    if args.forward_only:
        truth = truth_answers = None
        if args.accuracy:
            truth, truth_answers = ground_truth(report, ckpt, data)
        report["mode"] = "forward only: no LoadGen runs" + ("" if args.accuracy else ", no accuracy")
        for precision in [p for p in args.precisions.split(",") if p]:
            forward_only_block(
                f"torch-cuda-{precision}", ckpt, data, precision, args.budget, results, args.quick, truth, truth_answers
            )
            atomic_write_json(args.out, report)
        report.update(prov.record())
        atomic_write_json(args.out, report)
        log(f"wrote {args.out}")
        return
    qsl = BertQSL(f, len(f))

    def save() -> None:  # after every block: a run cut short still leaves its numbers, machine and load
        report.update(prov.record())
        atomic_write_json(args.out, report)

    try:
        truth, truth_answers = ground_truth(report, ckpt, data)
        for dtype in ("bf16", "fp16"):  # transformers' own model at the same precisions
            control = transformers_logits(ckpt, f, dtype)
            report[f"control_transformers_{dtype}"] = {
                "vs_fp32": agreement(data, control, truth_answers),
                "logits": logit_error(control, truth, f),
            }
            del control
            log(f"control: transformers {dtype} {report[f'control_transformers_{dtype}']}")

        ref = reference_sut(ckpt, f)
        try:
            ref_n = 300 if args.quick else args.reference_samples
            qps = 70.0
            r = loadgen_run(
                ref,
                qsl,
                offline_settings(qps, int(ref_n / qps / 1.1 * 1000)),
                "Offline",
                "performance",
                args.work / "reference-offline",
            )
        finally:
            ref.stop()
        del ref
        torch.cuda.empty_cache()
        results.append(
            {
                "name": "reference-fp32-bs1-pad384",
                "sut": "transformers BertForQuestionAnswering",
                "precision": "fp32",
                "batch_size": 1,
                "padding": 384,
                "offline": [r],
                "offline_samples_per_s": r["result"],
            }
        )
        log(f"reference: {r['result']:.1f} samples/s {r['validity']}")
        save()

        for precision in [p for p in args.precisions.split(",") if p]:
            if precision == "fp8" and torch.cuda.get_device_capability() < (8, 9):
                results.append({"name": "torch-cuda-fp8", "skipped": "GPU has no fp8"})
                continue
            try:
                fast_block(
                    f"torch-cuda-{precision}",
                    ckpt,
                    data,
                    qsl,
                    precision,
                    args.budget,
                    args.work,
                    truth,
                    truth_answers,
                    results,
                    args.quick,
                    server=True,
                )
            except Exception as exc:  # noqa: BLE001 - one precision failing must not lose the others' numbers
                import traceback

                traceback.print_exc()
                results.append({"name": f"torch-cuda-{precision}", "failed": repr(exc)[:500]})
            save()
    finally:
        qsl.destroy()
        save()
        log(f"wrote {args.out}")
    table = [
        (
            r["name"],
            r.get("offline_samples_per_s"),
            (r.get("server") or {}).get("best_valid_target_qps"),
            (r.get("vs_fp32") or {}).get("f1"),
        )
        for r in results
    ]
    for row in table:
        print("{:32s} offline {!s:>10} server {!s:>8} f1_vs_fp32 {!s:>8}".format(*row))


# ------------------------------------------------------------------------------------------- the trained proxy
def proxy_measure(entry: dict, sut, qsl, data, args, f1_fp32: float, ratio: float, settings=None) -> dict:
    """`sut`'s Offline samples/s under LoadGen and (unless `entry` already holds an F1) the F1 of its LoadGen
    accuracy run, relative to fp32's; the SUT is stopped at the end."""
    from subtool.runner.bert.fp8_plan import f1_on
    from subtool.runner.bert.workload import read_accuracy_log

    name, work = entry["name"], args.work / "proxy"
    try:
        perf = settings or offline_settings(args.proxy_qps, 3000)
        r = loadgen_run(sut, qsl, perf, "Offline", "performance", work / f"{name}-offline")
        entry["offline"] = r
        entry["offline_samples_per_s"] = r["result"]
        if "f1" not in entry:
            acc = loadgen_run(
                sut, qsl, offline_settings(args.proxy_qps, 1000), "Offline", "accuracy", work / f"{name}-acc"
            )
            entry["accuracy_run_s"] = acc["wall_s"]
            entry["f1"] = round(f1_on(data, read_accuracy_log(work / f"{name}-acc" / "mlperf_log_accuracy.json")), 4)
    finally:
        sut.stop()
    entry["f1_ratio"] = round(entry["f1"] / f1_fp32, 5)
    entry["meets_criterion"] = entry["f1_ratio"] >= ratio
    log(f"{name}: {entry['offline_samples_per_s']:.1f} samples/s, F1 {entry['f1']} = {entry['f1_ratio']} of fp32")
    return entry


def proxy_block(precision, ckpt, data, qsl, args, f1_fp32: float, ratio: float) -> dict:
    """One of subtool's precisions on the proxy (fp8 calibrated and planned as `subtool run` does it)."""
    from subtool.runner.bert.precision_choice import prepare
    from subtool.runner.bert.sut_cuda import TorchCudaBertSUT

    entry: dict = {"name": f"torch-cuda-{precision}", "precision": precision, "token_budget": args.budget}
    t0 = time.time()
    model = record = None
    if precision == "fp8":
        choice = prepare(ckpt, data, "fp8", ratio, args.device, token_budget=args.budget)
        model, record = choice.model, choice.record()
        entry["fp8_plan"] = choice.fp8
        log(choice.line)
    sut = TorchCudaBertSUT(
        ckpt,
        data.features,
        precision=precision,
        token_budget=args.budget,
        device=args.device,
        model=model,
        precision_record=record,
    )
    entry["build_s"] = round(time.time() - t0, 1)
    return proxy_measure(entry, sut, qsl, data, args, f1_fp32, ratio)


def proxy_reference(ckpt, data, qsl, args, f1_fp32: float, ratio: float) -> dict:
    """The reference's way on the proxy: fp32, batch 1, padded to 384. Its speed from a LoadGen run of about
    --reference-samples; its F1 from the same fp32 arithmetic over every feature grouped by length (an accuracy
    run at batch 1 would take minutes)."""
    from subtool.runner.bert.fp8_plan import f1_on

    f = data.features
    entry = {
        "name": "reference-fp32-bs1-pad384",
        "sut": "transformers BertForQuestionAnswering",
        "precision": "fp32",
        "batch_size": 1,
        "padding": 384,
        "f1": round(f1_on(data, transformers_logits(ckpt, f, "fp32", args.device)), 4),
        "f1_from": "transformers fp32 (TF32 off) over every feature, grouped by length",
    }
    qps = 70.0 if args.device == "cuda" else 20.0
    settings = offline_settings(qps, int(args.reference_samples / qps / 1.1 * 1000))
    return proxy_measure(entry, reference_sut(ckpt, f, args.device), qsl, data, args, f1_fp32, ratio, settings)


def proxy_transformers_bf16(ckpt, data, qsl, args, f1_fp32: float, ratio: float) -> dict:
    """The peer a user would pick, on the proxy: transformers' bf16 model batched 64 at a time, its speed and F1
    from its own LoadGen runs."""
    entry = {"name": "transformers-bf16", "sut": "transformers BertForQuestionAnswering", "precision": "bf16"}
    entry["batch_size"] = 64
    sut = transformers_sut(ckpt, data.features, args.device, entry["precision"], batch_size=entry["batch_size"])
    return proxy_measure(entry, sut, qsl, data, args, f1_fp32, ratio)


def proxy_record(proxy: Path) -> dict:
    """train.py's record of the proxy in `proxy`, or one line saying what is missing or unreadable (train.py writes
    the model and its record when its training ends: a proxy cut short lacks them)."""
    import json

    missing = [n for n in ("train.json", "model/config.json", "proxy-dev-v1.1.json") if not (proxy / n).is_file()]
    if missing:
        sys.exit(
            f"bench/bert_gpu.py: --proxy {proxy} lacks {', '.join(missing)}: run bench/bert_proxy/train.py --out there"
        )
    try:
        record = json.loads((proxy / "train.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        sys.exit(f"bench/bert_gpu.py: {proxy / 'train.json'} is not train.py's JSON record ({exc})")
    if not isinstance(record, dict):
        sys.exit(f"bench/bert_gpu.py: {proxy / 'train.json'} is not train.py's JSON record (not an object)")
    return record


def proxy_main(args, prov, train: dict) -> None:
    """The --proxy run (the module docstring says what it measures); `train` is train.py's record of the proxy."""
    import torch

    from subtool.fsutil import atomic_write_json
    from subtool.runner.bert.checkpoint import check_checkpoint
    from subtool.runner.bert.fp8_plan import eval_logits, f1_on
    from subtool.runner.bert.packed_model import PackedBert
    from subtool.runner.bert.precision_choice import prepare
    from subtool.runner.bert.workload import BertQSL, load_data

    ckpt, dev = args.proxy / "model", args.proxy / "proxy-dev-v1.1.json"
    ratio = 0.99  # bert-99
    report: dict = {
        "schema": "subtool.bench.bert_gpu_proxy/1",
        "command": prov.command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": environment() if args.device == "cuda" else {"device": args.device},
        "proxy": {k: train.get(k) for k in ("shape", "config", "steps", "seconds", "stopped_on", "fp32_dev")},
        "criterion": f"F1 >= {ratio} x the proxy's own fp32 F1 (bert-99)",
        "runs": [],
    }

    def save() -> None:  # after every block: a call cut short still leaves its numbers, machine and load
        report.update(prov.record())
        atomic_write_json(args.out, report)

    t0 = time.time()
    data = load_data(ckpt, dev, args.work / "proxy-features", check_checkpoint(ckpt))
    f = data.features
    report["dataset"] = {"features": len(f), "questions": len(data.examples), "load_s": round(time.time() - t0, 1)}
    t0 = time.time()
    fp32 = PackedBert(ckpt, device=args.device, precision="fp32")
    f1_fp32 = f1_on(data, eval_logits(fp32, f, range(len(f)), args.budget))
    del fp32
    report["fp32"] = {"f1": round(f1_fp32, 4), "seconds": round(time.time() - t0, 1)}
    log(f"proxy: {report['dataset']}, fp32 F1 {f1_fp32:.3f}")
    save()
    t0 = time.time()
    choice = prepare(ckpt, data, "auto", ratio, args.device, token_budget=args.budget)
    report["auto"] = {**choice.record(), "seconds": round(time.time() - t0, 1)}
    log(choice.line)
    del choice
    if args.device == "cuda":
        torch.cuda.empty_cache()
    save()
    qsl = BertQSL(f, len(f))
    blocks = [(f"torch-cuda-{p}", functools.partial(proxy_block, p)) for p in args.precisions.split(",") if p]
    if args.peers:  # last: a call cut short keeps subtool's own figures
        blocks += [("reference-fp32-bs1-pad384", proxy_reference), ("transformers-bf16", proxy_transformers_bf16)]
    try:
        for name, block in blocks:
            try:
                report["runs"].append(block(ckpt, data, qsl, args, f1_fp32, ratio))
            except Exception as exc:  # noqa: BLE001 - one failing must not lose the others' numbers
                import traceback

                traceback.print_exc()
                report["runs"].append({"name": name, "failed": repr(exc)[:500]})
            save()
    finally:
        qsl.destroy()
        save()
    for r in report["runs"]:
        print(
            "{:20s} offline {!s:>10} F1 {!s:>8} ratio {!s:>8}".format(
                r["name"], r.get("offline_samples_per_s"), r.get("f1"), r.get("f1_ratio")
            )
        )
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
