"""BERT's fused fp8 GELU product's machine code (kernels/fp8_gemm.py), compiled here for a GPU that is not here: per
tiling, its registers, shared memory and the instructions of its loops by opcode (the tile loop's epilogue: scale,
bias, GELU, e4m3 conversion and store, each a thread's share of a 128 x 128 tile).

The shape is BERT-large's feed-forward (K = 1024 into 4,096 columns), compiled as the persistent kernel runs on a GPU
(132 programs, Hopper's multiprocessors), with Triton's divisibility hints as its launcher gives them. The fp8 forward
spent about a quarter of its time here on an H100 (bench/results/bert_gpu_h100_forward_gelu_tiles*.json); the
instruction counts say what an epilogue change does before a device call times it
(bench/bert_gpu.py --forward-only).

    python bench/fp8_gemm_sass.py --tilings '[{}, {"block_n": 256, "num_warps": 8}]'

The numbers depend on the Triton version (the JSON records it): the device's may differ.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout's subtool
from benchmeta import Provenance  # noqa: E402
from sass_reader import compile_for, write_report  # noqa: E402

K, PROGRAMS = 1024, 132


def compile_gelu_gemm(tiling: dict, capability: int):
    """(the fp8 GELU product compiled for sm_<capability> with `tiling` (fp8_gelu_linear's block_m, block_n,
    block_k, num_warps, num_stages; the rest its defaults), the whole tiling it was compiled with)."""
    from subtool.runner.kernels import fp8_gemm as g

    full = {
        "block_m": g.BLOCK_M,
        "block_n": g.BLOCK_N,
        "block_k": g.BLOCK_K,
        "num_warps": g.WARPS,
        "num_stages": g.STAGES,
        **tiling,
    }
    bm, bn, bk = full["block_m"], full["block_n"], full["block_k"]
    pointers = {
        "a_desc": f"tensordesc<fp8e4nv[{bm}, {bk}]>",
        "b_desc": f"tensordesc<fp8e4nv[{bn}, {bk}]>",
        "c_desc": f"tensordesc<fp8e4nv[{bm}, {bn}]>",
        "A_SCALE": "*fp32",
        "B_SCALE": "*fp32",
        "BIAS": "*bf16",
    }
    constants = {"K": K, "BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": g.GROUP_M, "PROGRAMS": PROGRAMS}
    options = {"num_warps": full["num_warps"], "num_stages": full["num_stages"]}
    kernel = compile_for(
        g._fp8_gelu_gemm_kernel, {**constants, "COMPILED": True}, pointers, ("inv_out_scale",), options, capability
    )
    return kernel, full


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--tilings", default='[{}, {"block_n": 256, "num_warps": 8}]', help="a JSON list of tilings ({}: the defaults)"
    )
    ap.add_argument("--capability", type=int, default=90, help="the target: 90 is Hopper (H100, H200)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/fp8_gemm_sass.json"))
    return ap


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    prov = Provenance(None if argv is None else [__file__, *argv])
    compile_one = lambda t: compile_gelu_gemm(t, args.capability)  # noqa: E731
    shape = {"k": K, "programs": PROGRAMS, "operands": "e4m3", "output": "e4m3"}
    return write_report(prov, json.loads(args.tilings), compile_one, "tiling", args.capability, shape, args.out)


if __name__ == "__main__":
    main()
