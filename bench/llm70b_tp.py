"""Llama-2-70B's width over 1 and N GPUs through `subtool run --tensor-parallel N`: one engine whose every layer is
split over N processes (one GPU each, NCCL), against one engine on one GPU, on the same checkpoint and data.

The checkpoint is Llama-2-70B's config at reduced depth (--layers, default 20 of 80), its bf16 weights drawn at
random and written shard by shard (llm70b_gpu.write_checkpoint; the full depth would be 140 GB of disk). Every
layer is the same work, so tokens/s per layer carries to the full depth; the memory left for the KV cache does
not (a 20-layer model leaves more). The tokenizer and data set are subtool's llama2-70b demo assets (word-level
tokenizer, the processed OpenOrca format; shorter prompts than the official set's). Random weights rarely pick
EOS, so nearly every answer runs to --max-new-tokens, and every point generates about the same tokens. Each
point is a LoadGen Offline performance run of `subtool run` in a child process (short run style, a user.conf that
asks for --samples queries), and its tokens/s is what subtool records (run.json).

The JSON gives each point's tokens/s and LoadGen validity, and for TP=N the scaling efficiency
tokens/s(TP=N) / (N x tokens/s(TP=1)): the fraction of N GPUs' worth of single-GPU work that N GPUs split one
engine did.

    python bench/llm70b_tp.py --tp 1,2 --out bench/results/llm70b_tp_2xh200.json              # 2 GPUs
    python bench/llm70b_tp.py --device cpu --tiny --layers 2 --samples 6 --max-new-tokens 4 --tp 1,2  # CPU, gloo
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout's subtool
from benchmeta import Provenance  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BENCHMARK = "llama2-70b-99"
LOADGEN_MODEL = "llama2-70b"
# NVLink multicast stays off (the GPU machines' rule), also in every rank the run starts
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tp", default="1,2", help="tensor-parallel sizes, one LoadGen run each (1 first: the base)")
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--device", default="cuda", help="cpu: a smoke run (gloo ranks, fp32, tiny width)")
    ap.add_argument("--tiny", action="store_true", help="hidden 256 (2 kv heads, so that TP=2 splits them)")
    ap.add_argument("--precision", default=None, help="default fp8 on cuda, fp32 on cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="where the checkpoint and runs go (default: a temp dir)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds one point may take")
    ap.add_argument("--out", type=Path, default=None)
    return ap


def sizes(text: str) -> list[int]:
    tp = [int(t) for t in text.split(",") if t.strip()]
    if not tp or any(n < 1 for n in tp):
        raise SystemExit(f"--tp {text!r}: sizes of 1 or more, comma-separated")
    return tp


# ---------------------------------------------------------------------------------------------- the inputs
def make_inputs(args, work: Path) -> dict:
    """The reduced-depth checkpoint (with the demo's tokenizer beside it) and the demo data set of --samples."""
    from llm70b_gpu import llama2_70b_config, write_checkpoint

    from subtool.runner.llm.demo import demo_assets
    from subtool.runner.llm.specs import LLM_SPECS

    assets = demo_assets(LLM_SPECS[BENCHMARK], cache=work / "assets", sample_count=args.samples)
    config = llama2_70b_config(args.layers, args.tiny)
    if args.tiny:
        config.num_key_value_heads = 2
    checkpoint = work / "checkpoint"
    t0 = time.time()
    files = write_checkpoint(checkpoint, config, args.device, args.seed)
    written = time.time() - t0
    for name in TOKENIZER_FILES:
        if (assets.model_path / name).exists():
            (checkpoint / name).write_bytes((assets.model_path / name).read_bytes())
    return {
        "checkpoint": checkpoint,
        "dataset": assets.dataset_path,
        "record": {
            "layers": args.layers,
            "width": "tiny (hidden 256, 2 kv heads)" if args.tiny else "Llama-2-70B",
            "checkpoint_gb": round(files["bytes"] / 1e9, 2),
            "write_seconds": round(written, 1),
            "samples": args.samples,
            "max_new_tokens": args.max_new_tokens,
        },
    }


def user_conf(path: Path, samples: int) -> Path:
    """Offline asks for exactly `samples` queries, whatever LoadGen's mlperf.conf says (llm_gpu.offline_conf's
    settings, as a user.conf for the benchmark)."""
    from llm_gpu import offline_conf

    path.write_text("".join(f"{LOADGEN_MODEL}.Offline.{line}\n" for line in offline_conf(samples)))
    return path


# ---------------------------------------------------------------------------------------------- one point
def run_point(args, inputs: dict, tp: int, work: Path) -> dict:
    """`subtool run` of the benchmark's Offline performance mode at this TP size, in a child process; what its
    run.json records (tokens/s, validity, the SUT's spread), its wall time, or the error's last lines."""
    out = work / f"tp{tp}"
    precision = args.precision or ("fp8" if args.device == "cuda" else "fp32")
    argv = ["run", "--model", BENCHMARK, "--scenario", "Offline", "--mode", "performance"]
    argv += ["--model-path", str(inputs["checkpoint"]), "--dataset-path", str(inputs["dataset"])]
    argv += ["--backend", "torch-cuda" if args.device == "cuda" else "torch-cpu", "--precision", precision]
    argv += ["--engine", "continuous", "--max-new-tokens", str(args.max_new_tokens)]
    argv += ["--user-conf", str(user_conf(work / f"tp{tp}.user.conf", args.samples)), "--out", str(out)]
    if tp > 1:
        argv += ["--tensor-parallel", str(tp)]
    env = {**os.environ, **NO_MULTICAST, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", "from subtool.cli import main; main()", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=args.timeout,
    )
    point = {"tensor_parallel": tp, "seconds": round(time.time() - t0, 1), "command": ["subtool", *argv]}
    if proc.returncode != 0:
        return {**point, "error": (proc.stderr or proc.stdout).strip().splitlines()[-5:]}
    record = json.loads((out / BENCHMARK / "Offline" / "run.json").read_text())
    perf = record["modes"]["performance"]
    sut = record.get("sut") or {}
    return {
        **point,
        "tokens_per_second": perf.get("result"),
        "samples_per_second": perf.get("samples_per_second"),
        "validity": perf.get("result_validity"),
        "precision": record.get("precision"),
        "sut": sut,  # the engine's spread and counters: tensor_parallel, process_group, samples, tokens, slots
    }


def scaling(points: list[dict]) -> dict:
    """Per TP size above 1: tokens/s against TP=1's and against TP=1's times the GPUs (the efficiency)."""
    base = next((p.get("tokens_per_second") for p in points if p["tensor_parallel"] == 1), None)
    out = {}
    for p in points:
        tp, tps = p["tensor_parallel"], p.get("tokens_per_second")
        if tp > 1 and base and tps:
            out[f"tp{tp}"] = {"speedup": round(tps / base, 3), "efficiency": round(tps / (tp * base), 3)}
    return out


def main() -> None:
    args = build_parser().parse_args()
    tps = sizes(args.tp)
    prov = Provenance()
    work = args.work or Path(tempfile.mkdtemp(prefix="llm70b-tp-"))
    work.mkdir(parents=True, exist_ok=True)
    inputs = make_inputs(args, work)
    result = {"model": inputs["record"], "points": [], "device": args.device}
    for tp in tps:
        result["points"].append(run_point(args, inputs, tp, work))
        print(json.dumps(result["points"][-1]), flush=True)
        result["scaling"] = scaling(result["points"])
        prov.write(result, args.out or work / "llm70b_tp.json")  # after each point: a later one cut short keeps it
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
