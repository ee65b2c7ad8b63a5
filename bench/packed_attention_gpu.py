"""BERT's packed attention kernel alone on a CUDA GPU: µs a call for a 16k-token batch of the demo data set's
features (10,833 SQuAD-like lengths, mean 182; the batch the forward-only ceiling of bench/bert_gpu.py times,
which the batcher fills with the longer ones: mean ~355), at
BERT-large's shape (16 heads of 64), per tiling, bf16 in and e4m3 out (fp8's path) or bf16 out, against flash
attention's variable-length kernel.

    python bench/packed_attention_gpu.py --out bench/results/packed_attention_gpu.json

Each call is timed in a CUDA graph of `--calls` back-to-back launches, `--repeats` times; the fastest repeat is
kept. The JSON records the sha256 of the kernel's source file it ran, so that two runs on one machine with two
versions of the kernel (an A/B) say which was which.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout's subtool
from benchmeta import Provenance  # noqa: E402

from subtool.runner.bert.squad import MAX_SEQ_LENGTH  # noqa: E402

HEADS, D = 16, 64
MEASURED = ("us_per_call", "tokens_per_us")


def demo_batch(tokens: int, work: Path):
    """(lengths of one `tokens` batch of the demo features, packed as bench/bert_gpu.py's forward_ceiling packs
    them, and that batch's sequence capacity)."""
    from subtool.runner.bert.checkpoint import check_checkpoint
    from subtool.runner.bert.demo import demo_assets
    from subtool.runner.bert.packed_plan import TokenBatcher
    from subtool.runner.bert.workload import load_data

    demo = demo_assets(work / "cache")
    data = load_data(demo.model_path, demo.dataset_path, work / "cache" / "features", check_checkpoint(demo.model_path))
    batcher = TokenBatcher(data.features.seq_lengths, tokens, (tokens,))
    order = np.random.default_rng(0).permutation(len(data.features))
    batcher.add(order, order)
    batch = batcher.take()
    return data.features.seq_lengths[batch.indices].astype(np.int64), batch.capacity


def graph_us(fn, calls: int, repeats: int) -> float:
    """The fastest of `repeats` replays of a CUDA graph of `calls` calls of `fn`, in µs a call."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=side):
        for _ in range(calls):
            fn()
    graph.replay()
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) * 1000 / calls)
    return best


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tilings", default='[{}, {"block_m": 128, "num_warps": 8}]', help="a JSON list of tilings")
    ap.add_argument("--tokens", type=int, default=16384, help="the batch's token budget")
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--label", default="", help="a name for the kernel version timed (an A/B's side)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/packed_attention_gpu.json"))
    return ap


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    prov = Provenance(None if argv is None else [__file__, *argv])
    import torch

    from subtool.runner.kernels import packed_attention as pa

    with tempfile.TemporaryDirectory() as work:
        lengths, capacity = demo_batch(args.tokens, Path(work))
    n = int(lengths.sum())
    cu = torch.zeros(capacity + 1, dtype=torch.int32)
    cu[1 : len(lengths) + 1] = torch.from_numpy(np.cumsum(lengths))
    cu[len(lengths) + 1 :] = n
    cu = cu.cuda()
    torch.manual_seed(0)
    qkv = torch.randn(args.tokens, 3, HEADS, D, device="cuda", dtype=torch.bfloat16)
    bound = qkv[:n, 2].float().abs().max().item() / 448
    rows = []
    for tiling in json.loads(args.tilings):
        for out_scale in (bound, None):
            us = graph_us(
                lambda t=tiling, s=out_scale: pa.packed_attention(qkv, cu, MAX_SEQ_LENGTH, None, s, **t),
                args.calls,
                args.repeats,
            )
            e4m3 = out_scale is not None
            block_m, warps = pa.tiles(e4m3, tiling.get("block_m"), tiling.get("num_warps"))
            row = {"tiling": tiling, "block_m": block_m, "num_warps": warps, "e4m3_out": e4m3}
            rows.append({**row, "us_per_call": round(us, 2), "tokens_per_us": round(n / us, 1)})
            print(json.dumps(rows[-1]), flush=True)
    q, k, v = (qkv[:, i] for i in range(3))

    def flash():
        longest = MAX_SEQ_LENGTH
        return torch.ops.aten._flash_attention_forward(
            q, k, v, cu, cu, longest, longest, 0.0, False, False, scale=D**-0.5
        )

    reference = {"flash_varlen_us_per_call": round(graph_us(flash, args.calls, args.repeats), 2)}
    print(json.dumps(reference), flush=True)
    source = Path(pa.__file__).read_bytes()
    result = {
        "label": args.label,
        "kernel_sha256": hashlib.sha256(source).hexdigest(),
        "batch": {
            "tokens": n,
            "sequences": len(lengths),
            "capacity": capacity,
            "mean_length": round(n / len(lengths), 1),
        },
        "kernels": rows,
        **reference,
    }
    prov.write(result, args.out)
    return result


if __name__ == "__main__":
    main()
