"""The Triton decode attention kernel's tunings, timed on one decode step's attention of a real shape.

The shape is Llama-2-70B's (64 query heads over 8 kv heads of 128, an fp8 e4m3 KV cache, bf16 queries) in the
engine's paged layout, with `--sequences` sequences whose key counts are what a decode step of the llama2-70b
bench meets: each sequence a prompt of the bench's workload (llm70b_gpu.make_workload) plus a uniform share of
its answer. Every tuning (keys per program, keys per block, warps, pipelining depth) is checked against the
default's output, then timed with CUDA events over `--repeats` calls; the JSON gives each one's microseconds per
layer, the whole model's milliseconds (× --layers) and the bandwidth its keys and values take (bytes read / time,
against the GPU's ~4.8 TB/s), best first. `--best-out` writes the best tuning as the engine's `decode_tuning`
(what `bench/llm70b_gpu.py --decode-tuning FILE` reads).

    python bench/decode_attention_gpu.py --sequences 512 --out bench/results/decode_attention_gpu.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout's subtool
from benchmeta import Provenance  # noqa: E402
from llm70b_gpu import INPUT_MAX, OUTPUT_MAX, make_workload  # noqa: E402

HEADS, KV_HEADS, HEAD_DIM = 64, 8, 128
# what each timed row adds to its tuning (the rest of a row: DecodeAttention's keywords, and "layout", the bench's)
MEASURED = ("us_per_layer", "ms_all_layers", "kv_tb_per_s", "worst_difference_from_default")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=512, help="decode rows (the engine's slots)")
    ap.add_argument("--input-mean", type=float, default=300.0, help="as bench/llm70b_gpu.py's")
    ap.add_argument("--layers", type=int, default=80, help="the model's layers (milliseconds per step = × this)")
    ap.add_argument("--splits", default="256,512,1024", help="keys per program")
    ap.add_argument("--blocks", default="32,64,128", help="keys per block (pages are max(64, block) tokens)")
    ap.add_argument("--warps", default="4,8")
    ap.add_argument("--stages", default="0,2,3", help="pipelining depth; 0: Triton's default")
    ap.add_argument(
        "--ordered",
        default="0",
        help="1: programs launched longest first (the order made once a step; its time over --layers is added to "
        "each call's); 0,1: both",
    )
    ap.add_argument(
        "--fp8-dots",
        default="0",
        help="1: both products on e4m3 tensor cores (queries quantised per row; DecodeAttention's fp8_dots); 0,1: both",
    )
    ap.add_argument("--prefetch", default="0", help="1: DecodeAttention's prefetch (off: slower); 0,1: both")
    ap.add_argument(
        "--registers",
        default="128",
        help="a cap on registers a thread (Triton's maxnreg; DecodeAttention's registers, 128 its default); 0: none",
    )
    ap.add_argument("--v-zeroed", default="0", help="1: DecodeAttention's v_zeroed (off: slower); 0,1: both")
    ap.add_argument(
        "--half",
        default="1",
        help="1: over the fp8 cache both products in fp16 (DecodeAttention's half, its default); 0: in the "
        "queries' bf16; 0,1: both",
    )
    ap.add_argument(
        "--table-ahead", default="0,1", help="1: a program loads its split's page numbers before its loop; 0,1: both"
    )
    ap.add_argument(
        "--layouts",
        default="token",
        help="the pages' physical layout: token (the engine's: [page, tokens, kv heads, D], a head's keys 128 B "
        "apart by kv_heads·D), head ([page, kv heads, tokens, D], a head's keys of a page contiguous); token,head: "
        "both (the kernel reads either through strides; only token is what the engine writes today)",
    )
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--seed", type=int, default=20261203)
    ap.add_argument("--device", default="cuda", help="cpu: a smoke run under TRITON_INTERPRET=1 (fp32, untimed)")
    ap.add_argument("--best-out", type=Path, default=None, help="write the best tuning here (JSON)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/decode_attention_gpu.json"))
    return ap


def step_lengths(sequences: int, input_mean: float, seed: int) -> np.ndarray:
    """Key counts of one decode step: a workload prompt plus a uniform share of its answer, each."""
    prompts, targets = make_workload(sequences, input_mean, seed)
    rng = np.random.default_rng(seed + 1)
    done = np.floor(rng.random(sequences) * targets).astype(np.int64)
    return np.array([len(p) for p in prompts]) + done + 1


def logical_cache(lengths: np.ndarray, device, seed: int):
    """Every sequence's keys and values one after another ([tokens, kv heads, D]): what each page layout holds."""
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)
    shape = (int(lengths.sum()), KV_HEADS, HEAD_DIM)
    dtype = torch.float8_e4m3fn if device.type == "cuda" else torch.float32  # the interpreter: fp32
    return tuple((torch.randn(shape, device=device, generator=gen) * 2).to(dtype) for _ in range(2))


def as_bytes(t):
    """A one-byte tensor as uint8 (what indexing can write), any other as it is."""
    import torch

    return t.view(torch.uint8) if t.element_size() == 1 else t


def paged_cache(lengths: np.ndarray, page: int, logical, seed: int):
    """(k pool, v pool, table, max_len) in the engine's layout: each sequence's pages scattered over one pool,
    holding the same keys and values whatever the page size."""
    import torch

    max_len = INPUT_MAX + OUTPUT_MAX + 1
    per = -(-max_len // page)
    need = [-(-int(n) // page) for n in lengths]
    pages = sum(need)
    order = torch.randperm(pages, generator=torch.Generator().manual_seed(seed))
    table = torch.full((len(lengths), per), pages, dtype=torch.int64)
    rows = []
    taken = 0
    for s, (n, length) in enumerate(zip(need, lengths)):
        table[s, :n] = order[taken : taken + n]
        taken += n
        positions = torch.arange(int(length))
        rows.append(table[s, positions // page] * page + positions % page)
    rows = torch.cat(rows).to(logical[0].device)
    pools = []
    for values in logical:
        pool = torch.zeros(((pages + 1) * page, KV_HEADS, HEAD_DIM), device=values.device, dtype=values.dtype)
        as_bytes(pool)[rows] = as_bytes(values)  # fp8 has no index_put of its own: copied as bytes
        pools.append(pool.view(pages + 1, page, KV_HEADS, HEAD_DIM))
    return pools[0], pools[1], table.to(logical[0].device), max_len


def head_major(pool):
    """The same pages [pages, tokens, kv, D] stored kv-head-major ([pages, kv, tokens, D] in memory), viewed back
    in the kernel's index order: one head's keys of a page lie one after another."""
    return pool.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3)


def time_tuning(tuning: dict, q, caches: dict, lens, scale: float, repeats: int, reference, layers: int = 80):
    """(microseconds per call, worst difference from the reference output) of one tuning (its "layout", the
    bench's own key, picks the cache; the rest are DecodeAttention's). An ordered tuning's launch order is made
    once a step, as the engine makes it, so its time over `layers` calls is added to each call's."""
    from subtool.runner.kernels.decode_attention import DecodeAttention

    kernel = {key: value for key, value in tuning.items() if key != "layout"}
    k, v, table, max_len = caches[(max(64, tuning["block_n"]), tuning.get("layout", "token"))]
    att = DecodeAttention(len(lens), HEADS, KV_HEADS, HEAD_DIM, max_len, q.device, **kernel)
    order = att.order(lens) if att.ordered else None
    out = att(q, k, v, lens, scale, table=table, order=order)
    worst = float((out.float() - reference).abs().max()) if reference is not None else 0.0
    if q.device.type != "cuda":  # the interpreter's smoke run: correctness only
        return 1.0, worst, out
    us = gpu_us(lambda: att(q, k, v, lens, scale, out=out, table=table, order=order), repeats)
    if att.ordered:
        us += gpu_us(lambda: att.order(lens), repeats) / layers
    return us, worst, out


def gpu_us(call, repeats: int) -> float:
    """Microseconds per call of `call` on the GPU, after 3 untimed ones."""
    import torch

    for _ in range(3):
        call()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        call()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / repeats


def tunings(args) -> list[dict]:
    ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    found = []
    layouts = [x for x in args.layouts.split(",") if x]
    knobs = (args.splits, args.blocks, args.warps, args.stages, args.table_ahead, args.ordered, args.fp8_dots)
    knobs += (args.half, args.prefetch, args.v_zeroed, args.registers)
    for *knob, half, prefetch, zeroed, registers, layout in itertools.product(*map(ints, knobs), layouts):
        split, block, warps, stages, ahead, ordered, dots = knob
        if split % block == 0:
            tuning = {"split": split, "block_n": block, "warps": warps, "stages": stages or None}
            tuning.update(table_ahead=bool(ahead), ordered=bool(ordered))
            tuning.update({"fp8_dots": True} if dots else {})
            tuning.update(half=bool(half))
            tuning.update({"prefetch": True} if prefetch else {})
            tuning.update({"v_zeroed": True} if zeroed else {})
            tuning.update(registers=registers or None)  # None: no cap (the kernel's default is a cap)
            found.append({**tuning, "layout": layout} if layout != "token" else tuning)
    return found


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    unknown = {x for x in args.layouts.split(",") if x} - {"token", "head"}
    if unknown:  # else each of its tunings would fail alone, as an error row in the JSON
        parser.error(f"--layouts {args.layouts}: {', '.join(sorted(unknown))} is not a layout (token, head)")
    prov = Provenance(None if argv is None else [__file__, *argv])
    import torch

    from subtool.runner.kernels import decode_attention

    device = torch.device(args.device)
    lengths = step_lengths(args.sequences, args.input_mean, args.seed)
    lens = torch.from_numpy(lengths.astype(np.int32)).to(device)
    logical = logical_cache(lengths, device, args.seed)
    caches = {}
    for page in (64, 128):
        k, v, table, max_len = paged_cache(lengths, page, logical, args.seed)
        caches[(page, "token")] = (k, v, table, max_len)
        if "head" in args.layouts.split(","):
            caches[(page, "head")] = (head_major(k), head_major(v), table, max_len)
    q = torch.randn(len(lengths), HEADS, HEAD_DIM, device=device)
    q = q.to(torch.bfloat16) if device.type == "cuda" else q
    scale = 1 / math.sqrt(HEAD_DIM)
    kv_bytes = int(lengths.sum()) * KV_HEADS * HEAD_DIM * 2  # fp8 keys and values: one byte each
    default = {
        "split": decode_attention.default_split(len(lengths), KV_HEADS),
        "block_n": decode_attention.BLOCK_N,
        "warps": decode_attention.WARPS,
        "stages": decode_attention.STAGES,
        "table_ahead": decode_attention.TABLE_AHEAD,
        "ordered": decode_attention.ORDERED,
        "half": decode_attention.HALF,
        "registers": decode_attention.REGISTERS,
    }
    _, _, reference = time_tuning(default, q, caches, lens, scale, 1, None)
    reference = reference.float()
    rows = []
    for tuning in [default, *tunings(args)]:
        try:
            us, worst, _ = time_tuning(tuning, q, caches, lens, scale, args.repeats, reference, args.layers)
        except Exception as exc:  # a tuning Triton cannot build here (shared memory): recorded, not fatal
            rows.append({**tuning, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
            continue
        rows.append(
            {
                **tuning,
                "us_per_layer": round(us, 1),
                "ms_all_layers": round(us * args.layers / 1000, 2),
                "kv_tb_per_s": round(kv_bytes / (us * 1e-6) / 1e12, 3),
                "worst_difference_from_default": round(worst, 5),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    timed = sorted((r for r in rows if "us_per_layer" in r), key=lambda r: r["us_per_layer"])
    best = next(r for r in timed if r["worst_difference_from_default"] < 3e-2)
    result = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu (Triton's interpreter: untimed)",
        "shape": {"heads": HEADS, "kv_heads": KV_HEADS, "head_dim": HEAD_DIM, "kv_cache": "fp8 e4m3, paged"},
        "sequences": len(lengths),
        "keys_mean": round(float(lengths.mean()), 1),
        "keys_max": int(lengths.max()),
        "kv_bytes_per_layer": kv_bytes,
        "default": dict(rows[0]),
        "best": {k: v for k, v in best.items() if k not in ("kv_tb_per_s", "worst_difference_from_default")},
        "speedup_over_default": round(rows[0]["us_per_layer"] / best["us_per_layer"], 2),
        "tunings": timed + [r for r in rows if "error" in r],
    }
    if args.best_out:  # the winning tuning's DecodeAttention keywords: the row less the bench's own keys
        engine = {k: v for k, v in best.items() if k not in (*MEASURED, "layout")}
        args.best_out.write_text(json.dumps(engine) + "\n")
    prov.write(result, args.out)
    print(json.dumps({k: result[k] for k in ("default", "best", "speedup_over_default")}, indent=2))
    return result


if __name__ == "__main__":
    main()
