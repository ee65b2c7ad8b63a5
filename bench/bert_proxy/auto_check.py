"""How often `--precision auto`'s accuracy check decides as the whole data set would: the fixed check of 300
questions against the check that grows while it is too close to call (subtool.runner.bert.precision_choice).

A tiny proxy (train.py --shape tiny) is trained on the CPU and --questions more generated questions are scored
once with fp32, bf16 and fp8 (emulated, its static scales calibrated on 200 other questions); each question's F1
is kept. The whole set's F1 ratio R of a candidate (its F1 over fp32's) is the truth. For each target T = R + d
(d in --offsets, points of percent) --draws random checks are made: the fixed rule scores N_CHECK random questions
and passes when F1 >= T x fp32's; the growing rule starts on the same N_CHECK, adds random questions (GROWTH x,
up to MAX_CHECK) while precision_choice.judge is unsure, and still unsure at the largest lets the point estimate
decide. A decision is wrong when it differs from R >= T. Per-question F1s do not change from one draw to the next,
so the draws cost no forward passes.

    python bench/bert_proxy/auto_check.py --out bench/results/auto_check_cpu.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmeta
sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxy_data  # noqa: E402
import train  # noqa: E402

from subtool.runner.bert import precision_choice  # noqa: E402
from subtool.runner.bert.f1_judge import judge  # noqa: E402
from subtool.runner.bert.precision_choice import GROWTH, MAX_CHECK, N_CHECK, next_size, settled  # noqa: E402

OFFSETS = (-1.0, -0.5, -0.25, -0.1, 0.1, 0.25, 0.5, 1.0)


def scores(work: Path, questions: int, seed: int, steps: int) -> dict:
    """{precision: per-question F1 array} on `questions` new questions, after training the tiny proxy in `work`."""
    from subtool.runner.bert import fp8_plan
    from subtool.runner.bert.checkpoint import check_checkpoint
    from subtool.runner.bert.packed_model import PackedBert
    from subtool.runner.bert.workload import load_data

    record = train.main(["--shape", "tiny", "--out", str(work), "--steps", str(steps), "--device", "cpu"])
    model = Path(record["model_path"])
    s = train.SHAPES["tiny"]
    doc = proxy_data.generate(
        proxy_data.vocabulary(s["words"]), questions + 200, seed, context_tokens=s["context_tokens"],
        long_share=s["long_share"], answer=s["answer"],
    )  # fmt: skip
    data = load_data(model, proxy_data.write_squad(work / "check-v1.1.json", doc), None, check_checkpoint(model))
    calibration, check = fp8_plan.subsets(data.features, questions, 200)
    out = {}
    for precision in ("fp32", "bf16", "fp8"):
        m = PackedBert(model, device="cpu", precision=precision)
        if precision == "fp8":
            fp8_plan.calibrate(m, data.features, calibration)
        per = fp8_plan.question_f1(data, fp8_plan.eval_logits(m, data.features, check))
        out[precision] = np.array([per[q] for q in sorted(per)])
    return {"train": record, "scores": out}


def fixed(c: np.ndarray, r: np.ndarray, target: float, order: np.ndarray) -> tuple[bool, int]:
    """The fixed rule on the first N_CHECK questions of `order`: (passes, questions)."""
    q = order[:N_CHECK]
    return bool(c[q].mean() >= target * r[q].mean()), len(q)


def growing(c: np.ndarray, r: np.ndarray, target: float, order: np.ndarray) -> tuple[bool, int]:
    """The growing rule along `order` (precision_choice's judge, next_size and settled): (passes, questions it
    ended on)."""
    n = min(N_CHECK, len(order))
    while True:
        q = order[:n]
        verdict, margin, _ = judge(dict(enumerate(c[q])), dict(enumerate(r[q])), target)
        bigger = next_size(n, min(MAX_CHECK, len(order)))
        if verdict != "unsure" or bigger == n:
            return settled(verdict, margin, n), n
        n = bigger


def simulate(c: np.ndarray, r: np.ndarray, offsets, draws: int, seed: int) -> dict:
    """Each offset's wrong-decision rates for both rules and the growing rule's questions, over `draws` checks."""
    ratio = float(c.mean() / r.mean())
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(len(c)) for _ in range(draws)]
    rows = []
    for d in offsets:
        target = ratio + d / 100
        truth = ratio >= target
        f = [fixed(c, r, target, o) for o in orders]
        g = [growing(c, r, target, o) for o in orders]
        rows.append(
            {
                "offset_points": d,
                "target_ratio": round(target, 6),
                "truth": "pass" if truth else "fail",
                "fixed_wrong": round(float(np.mean([p != truth for p, _ in f])), 4),
                "growing_wrong": round(float(np.mean([p != truth for p, _ in g])), 4),
                "growing_questions_mean": round(float(np.mean([n for _, n in g])), 1),
                "growing_grew": round(float(np.mean([n > N_CHECK for _, n in g])), 4),
            }
        )
    return {"ratio": round(ratio, 6), "differing_questions": int((c != r).sum()), "offsets": rows}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--questions", type=int, default=8000, help="the pool the checks draw from (the truth)")
    ap.add_argument("--draws", type=int, default=400)
    ap.add_argument("--offsets", default=",".join(map(str, OFFSETS)), help="targets as R + d, d in ratio points")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--train-steps", type=int, default=250, help="the proxy's training (250: F1 ~70, margins small)")
    return ap


def main(argv: list[str] | None = None) -> dict:
    from benchmeta import Provenance

    args = build_parser().parse_args(argv)
    prov = Provenance(None if argv is None else [__file__, *argv])
    offsets = [float(x) for x in args.offsets.split(",") if x]
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        made = scores(Path(tmp), args.questions, args.seed, args.train_steps)
    s = made["scores"]
    result = {
        "schema": "subtool.bench.auto_check/1",
        "rules": {"n_check": N_CHECK, "growth": GROWTH, "max_check": MAX_CHECK, "z": precision_choice.Z},
        "proxy": {k: made["train"].get(k) for k in ("shape", "steps", "fp32_dev")},
        "questions": len(s["fp32"]),
        "draws": args.draws,
        "f1": {p: round(100 * float(v.mean()), 4) for p, v in s.items()},
        "candidates": {p: simulate(s[p], s["fp32"], offsets, args.draws, args.seed) for p in ("fp8", "bf16")},
        "seconds": round(time.time() - t0, 1),
    }
    return prov.write(result, args.out)


if __name__ == "__main__":
    main()
