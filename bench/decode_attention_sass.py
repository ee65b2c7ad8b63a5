"""The decode attention split kernel's machine code, compiled here for a GPU that is not here: per tuning, its
registers, shared memory and the instructions of its loop over key blocks, by opcode.

Triton compiles for any target without the GPU (its own ptxas and cuobjdump ship with it), so how many
instructions a warp issues for each 64-key block, and what they are, can be read before a device call: on an H100
the kernel issues at 66 % of the multiprocessors' rate while moving 66 % of the DRAM bandwidth
(bench/results/decode_attention_gpu_h100_ncu.txt), so fewer instructions a block is a speed-up candidate, and
the device then times it (bench/decode_attention_gpu.py). The signature is the one the engine launches at
Llama-2-70B's shape (bf16 queries, an fp8 e4m3 paged cache of 64-token pages, 8 query heads per kv head,
1,024-key splits, the page numbers loaded ahead, launched longest first), with Triton's divisibility hints for
pointers and strides as its launcher gives them.

    python bench/decode_attention_sass.py --tunings '[{}, {"half": false}]'

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

POINTERS = {
    "Q": "*bf16",
    "K": "*fp8e4nv",
    "V": "*fp8e4nv",
    "LENS": "*i32",
    "TABLE": "*i64",
    "ITEMS": "*i32",
    "O_PART": "*fp32",
    "LSE_PART": "*fp32",
    "OUT": "*bf16",
}
# Llama-2-70B's decode shape: 64 query heads over 8 kv heads of 128, 1,024-key splits over up to 2,048 keys,
# 64-token pages of an fp8 cache
SHAPE = {"heads": 64, "kv_heads": 8, "head_dim": 128, "max_len": 2048, "split": 1024, "page": 64}


def compile_split(tuning: dict, capability: int):
    """The split kernel compiled for sm_<capability> with `tuning` (DecodeAttention's keywords; the rest its
    defaults), its compile-time arguments and options as DecodeAttention launches them."""
    from subtool.runner.kernels import decode_attention as da

    shape = {k: SHAPE[k] for k in ("heads", "kv_heads", "head_dim", "max_len")}
    attention = da.DecodeAttention(1, **shape, device="cpu", split=SHAPE["split"], **tuning)
    splits = attention._splits(SHAPE["split"])
    constants = attention.split_constants(SHAPE["split"], splits, attention.block_n, SHAPE["page"], fp8_cache=True)
    return compile_for(da._split_kernel, constants, POINTERS, ("scale",), attention.launch, capability)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tunings", default='[{}, {"half": false}]', help="a JSON list of DecodeAttention tunings")
    ap.add_argument("--capability", type=int, default=90, help="the target: 90 is Hopper (H100, H200)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/decode_attention_sass.json"))
    return ap


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    prov = Provenance(None if argv is None else [__file__, *argv])
    compile_one = lambda t: (compile_split(t, args.capability), {})  # noqa: E731
    return write_report(prov, json.loads(args.tunings), compile_one, "tuning", args.capability, SHAPE, args.out)


if __name__ == "__main__":
    main()
