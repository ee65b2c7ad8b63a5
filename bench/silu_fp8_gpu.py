"""SiLU(gate) · up quantized to e4m3 rows, timed alone at Llama-2-70B's width: torch.compile's kernels (what the
engine runs by default) against kernels/silu_fp8.py's one Triton kernel (the engine's `fused_silu`).

Both read the gate/up product [M, 2 × 28,672] in bf16 and write e4m3 [M, 28,672] with one float32 scale per row;
the least memory traffic is one read and one write, so the JSON gives each form's microseconds, its GB/s on those
bytes, the whole model's milliseconds (× --layers) and how many e4m3 codes differ from eager torch's by more than one.

    python bench/silu_fp8_gpu.py --rows 512,4096,16384 --out bench/results/silu_fp8_gpu.json
    TRITON_INTERPRET=1 python bench/silu_fp8_gpu.py --device cpu --scale 256 --rows 4 --repeats 1   (a smoke run)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout's subtool
from benchmeta import Provenance  # noqa: E402
from fp8_gemm_gpu import timed_us  # noqa: E402

INTERMEDIATE = 28672  # Llama-2-70B's feed-forward width (TP=2 gives each rank half: --scale 2)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="512,4096,16384", help="M: a decode step's slots, a prompt chunk's tokens")
    ap.add_argument("--layers", type=int, default=80)
    ap.add_argument("--scale", type=float, default=1.0, help="divide the width by this (2: a TP=2 rank's share)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path, default=Path("bench/results/silu_fp8_gpu.json"))
    return ap


def forms(inter: int, cuda: bool) -> dict:
    """name → a callable gate_up → (e4m3 rows, scales)."""
    import torch
    import torch.nn.functional as F

    from subtool.runner.kernels.silu_fp8 import silu_mul_fp8
    from subtool.runner.llm.engine_layer import quantize_rows

    def eager(gu):
        return quantize_rows(F.silu(gu[:, :inter]) * gu[:, inter:])

    return {
        "eager": eager,
        "compiled": torch.compile(eager, dynamic=False) if cuda else eager,
        "triton": lambda gu: silu_mul_fp8(gu, inter),
    }


def codes_apart(q, reference) -> int:
    """How many e4m3 values are more than one code from the reference's."""
    import torch

    def signed(t):
        c = t.view(torch.uint8).int()
        return torch.where(c >= 128, -(c - 128), c)

    return int(((signed(q) - signed(reference)).abs() > 1).sum())


def measure(rows: int, inter: int, args) -> dict:
    import torch

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    gen = torch.Generator(device=dev).manual_seed(rows)
    gu = (torch.randn(rows, 2 * inter, device=dev, generator=gen) * 2).to(torch.bfloat16 if cuda else torch.float16)
    moved = gu.numel() * gu.element_size() + rows * inter + rows * 4
    fns = forms(inter, cuda)
    reference, _ = fns["eager"](gu)
    out = {"m": rows, "intermediate": inter, "bytes": moved}
    for name, fn in fns.items():
        us = timed_us(lambda fn=fn: fn(gu), args.repeats, cuda)
        q, _ = fn(gu)
        out[name] = {
            "us": round(us, 1),
            "gb_per_s": round(moved / us / 1e3, 1),
            "model_ms": round(us * args.layers / 1000, 2),
            "codes_more_than_one_apart": codes_apart(q, reference),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prov = Provenance(argv)
    import torch

    inter = max(16, int(INTERMEDIATE / args.scale))
    results = []
    for rows in (int(r) for r in args.rows.split(",")):
        point = measure(rows, inter, args)
        print(point, flush=True)
        results.append(point)
    record = {
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "points": results,
        "triton_over_compiled": {str(p["m"]): round(p["compiled"]["us"] / p["triton"]["us"], 3) for p in results},
    }
    Provenance.write(prov, record, args.out)
    print(record["triton_over_compiled"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
