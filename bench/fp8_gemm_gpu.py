"""The fp8 matrix products of a model's layer (Llama-2-70B's, or BERT-large's with --model bert-large), timed
alone at the row counts the model runs them at.

The continuous engine spends nearly all of a step in four products per layer (qkv 8192→10240, o 8192→8192,
gate_up 8192→57344, down 28672→8192). This times each at M rows (a decode step's slots, a prompt chunk's tokens)
in the forms torch offers on the GPU, so a step's time can be read against what its products can do:

- rowwise:    torch._scaled_mm with one scale per row of x and one per output channel (the engine's form today)
- tensorwise: torch._scaled_mm with one scale for x and one for W (cuBLASLt's fp8 path)
- bf16:       F.linear in bf16 (the unquantized peer)
- quantize:   the engine's row quantisation of x alone (amax per row, scale, cast to e4m3), compiled

Each product's result is checked against bf16's before timing. The JSON gives microseconds per call, TFLOPS
(2·M·K·N / time) and, for the fp8 forms, the whole model's milliseconds for that product (× --layers).

    python bench/fp8_gemm_gpu.py --rows 512,4096,16384 --out bench/results/fp8_gemm_gpu.json

BERT-large (issue 26's fp8 forward): its four products per layer at the 16,384 tokens of one packed batch, × 24
layers, is what the forward's products cost at torch's (cuBLAS's) speed, whatever the rest of the forward does:

    python bench/fp8_gemm_gpu.py --model bert-large --rows 16384 --out bench/results/fp8_gemm_gpu_bert_h100.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout's subtool
from benchmeta import Provenance  # noqa: E402

# each model's projections, (name, in features K, out features N), and its layers
MODELS = {
    "llama2-70b": ((("qkv", 8192, 10240), ("o", 8192, 8192), ("gate_up", 8192, 57344), ("down", 28672, 8192)), 80),
    "bert-large": (
        (("qkv", 1024, 3072), ("attn_out", 1024, 1024), ("ffn_in", 1024, 4096), ("ffn_out", 4096, 1024)),
        24,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="512,4096,16384", help="M: a decode step's slots, a prompt chunk's tokens")
    ap.add_argument("--model", choices=sorted(MODELS), default="llama2-70b")
    ap.add_argument("--layers", type=int, default=None, help="default: the model's (80, 24)")
    ap.add_argument("--scale", type=float, default=1.0, help="shrink K and N by this factor (a CPU smoke run)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path, default=Path("bench/results/fp8_gemm_gpu.json"))
    return ap


def forms(x, w):
    """name → a zero-argument callable computing x @ w.T in that form, for one shape's operands."""
    import torch
    import torch.nn.functional as F

    from subtool.runner.llm.engine_layer import FP8_MAX, quantize_rows, quantized

    x8, xs = quantize_rows(x)
    _, _, w8, ws = quantized(w, None, fp8=True)
    xt = x.abs().amax().float() / FP8_MAX
    wt = w.abs().amax().float() / FP8_MAX
    x8t, w8t = (x.float() / xt).to(torch.float8_e4m3fn), (w.float() / wt).to(torch.float8_e4m3fn).t()
    quantize = torch.compile(quantize_rows, dynamic=False) if x.is_cuda else quantize_rows

    def mm(a, b, sa, sb):
        return lambda: torch._scaled_mm(a, b, scale_a=sa, scale_b=sb, out_dtype=x.dtype, use_fast_accum=True)

    return {
        "rowwise": mm(x8, w8, xs, ws),
        "tensorwise": mm(x8t, w8t, xt, wt),
        "bf16": lambda: F.linear(x, w),
        "quantize": lambda: quantize(x),
    }


def timed_us(fn, repeats: int, cuda: bool) -> float:
    import time

    import torch

    fn()  # warm-up (compiles, picks a kernel)
    if not cuda:
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - start) / repeats * 1e6
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats * 1000


def measure(rows: int, name: str, k: int, n: int, args) -> dict:
    """One shape at M = rows: every form's time, TFLOPS and its error against bf16's result."""
    import torch

    dev = torch.device(args.device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    gen = torch.Generator(device=dev).manual_seed(rows * 7 + k)
    x = torch.randn(rows, k, device=dev, dtype=dtype, generator=gen)
    w = torch.randn(n, k, device=dev, dtype=dtype, generator=gen) / k**0.5
    if dev.type != "cuda":  # _scaled_mm needs a GPU: the smoke run times bf16 and the quantisation only
        fns = {name: fn for name, fn in forms(x, w).items() if name in ("bf16", "quantize")}
    else:
        fns = forms(x, w)
    reference = fns["bf16"]().float()
    out = {"m": rows, "k": k, "n": n}
    flops = 2 * rows * k * n
    for form, fn in fns.items():
        us = timed_us(fn, args.repeats, dev.type == "cuda")
        entry = {"us": round(us, 1)}
        if form != "quantize":
            entry["tflops"] = round(flops / us / 1e6, 1)
            err = (fn().float() - reference).abs().max() / reference.abs().max()
            entry["max_rel_error"] = round(float(err), 4)
            entry["model_ms"] = round(us * args.layers / 1000, 2)
        out[form] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prov = Provenance(argv)
    import torch

    shapes, layers = MODELS[args.model]
    args.layers = layers if args.layers is None else args.layers
    results = []
    for rows in (int(r) for r in args.rows.split(",")):
        for name, k, n in shapes:
            k, n = max(16, int(k / args.scale)), max(16, int(n / args.scale))
            point = {"product": name, **measure(rows, name, k, n, args)}
            print(point, flush=True)
            results.append(point)
    summary = {}
    for rows in sorted({p["m"] for p in results}):
        at = [p for p in results if p["m"] == rows]
        summary[str(rows)] = {
            form: round(sum(p[form]["model_ms"] for p in at), 2)
            for form in ("rowwise", "tensorwise", "bf16")
            if form in at[0]
        }
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    record = {
        "device": device,
        "torch": torch.__version__,
        "model": args.model,
        "layers": args.layers,
        "products": results,
        "model_ms_per_step_by_rows": summary,  # the four products × layers, per form
    }
    Provenance.write(prov, record, args.out)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
