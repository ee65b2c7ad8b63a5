"""BERT's packed attention kernel's machine code, compiled here for a GPU that is not here: per tiling, its
registers, shared memory and the instructions of its loop over key blocks, by opcode.

The shape is BERT-large's (16 heads of 64, sequences up to 384 tokens), the fused projection's output in bf16 or
fp16 and the output e4m3 (fp8's path) or in the input's type, with Triton's divisibility hints for pointers and
strides as its launcher gives them. On an H100 the forward's attention was 18 % of an fp8 batch
(bench/results/bert_gpu_h100_attention_tiles.json); the loop's instructions say what a change to the kernel does
before a device call times it (bench/bert_gpu.py --forward-only).

    python bench/packed_attention_sass.py --tilings '[{}, {"block_m": 128, "num_warps": 8}]'

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

from subtool.runner.bert.squad import MAX_SEQ_LENGTH  # noqa: E402

HEADS, D, MAX_LEN = 16, 64, MAX_SEQ_LENGTH


def compile_packed(tiling: dict, capability: int, dtype: str = "bf16", quant: bool = True):
    """(the packed attention kernel compiled for sm_<capability> with `tiling` (packed_attention's block_m,
    block_n, num_warps, num_stages; the rest its defaults), the queries a tile and warps it was compiled with)."""
    import triton

    from subtool.runner.kernels import packed_attention as pa

    block_m, warps = pa.tiles(quant, tiling.get("block_m"), tiling.get("num_warps"))
    block_n = tiling.get("block_n", pa.BLOCK_N)
    constants = {
        "QUANT": quant,
        "HEADS": HEADS,
        "D": D,
        "TILES": triton.cdiv(MAX_LEN, block_m),
        "KEY_TILES": triton.cdiv(MAX_LEN, block_n),
        "BLOCK_M": block_m,
        "BLOCK_N": block_n,
        "FIXED_TRIPS": False,
    }
    pointers = {"QKV": f"*{dtype}", "O": "*fp8e4nv" if quant else f"*{dtype}", "CU": "*i32"}
    options = {"num_warps": warps, "num_stages": tiling.get("num_stages", 3)}
    kernel = compile_for(
        pa._packed_attention_kernel, constants, pointers, ("scale_log2", "inv_out_scale"), options, capability
    )
    return kernel, {"block_m": block_m, "num_warps": warps}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tilings", default='[{}, {"block_m": 128, "num_warps": 8}]', help="a JSON list of tilings")
    ap.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16", help="the fused projection's output type")
    ap.add_argument("--quant", type=int, choices=(0, 1), default=1, help="1: e4m3 output (the fp8 path)")
    ap.add_argument("--capability", type=int, default=90, help="the target: 90 is Hopper (H100, H200)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/packed_attention_sass.json"))
    return ap


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    prov = Provenance(None if argv is None else [__file__, *argv])
    compile_one = lambda tiling: compile_packed(tiling, args.capability, args.dtype, bool(args.quant))  # noqa: E731
    shape = {"heads": HEADS, "head_dim": D, "max_len": MAX_LEN, "dtype": args.dtype, "e4m3_out": bool(args.quant)}
    return write_report(prov, json.loads(args.tilings), compile_one, "tiling", args.capability, shape, args.out)


if __name__ == "__main__":
    main()
