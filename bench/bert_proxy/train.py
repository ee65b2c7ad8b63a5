"""Train the accuracy proxy: a BERT question-answering model on the generated key/value questions (proxy_data.py).

    python bench/bert_proxy/train.py --shape large --out /tmp/proxy --minutes 7      # on a GPU
    python bench/bert_proxy/train.py --shape tiny --out /tmp/proxy-tiny               # CPU, seconds

writes OUT/model (a Hugging Face BertForQuestionAnswering checkpoint with vocab.txt: what `--model-path` reads),
OUT/proxy-dev-v1.1.json (the held-out questions: what `--dataset-path` reads; --dev-questions of them, 10,570 for
the large shape so the QSL is bench-sized) and OUT/train.json (steps, seconds, the fp32 dev F1 and the median
margin between the best and second-best start logit, the measure of how decisive the answers are; each evaluation's
loss, gradient norm, learning rate, F1 and margin). Training stops when the dev F1 reaches --target-f1, when the
model has collapsed (every start logit tied at two evaluations past the warm-up: no use spending device time on it),
or when the time is up; the checkpoint is written either way and train.json says which. The weights kept are
those of the attempt's best evaluation (its F1 swings late at depth 24: 63 then 45 a hundred steps on, on CPU);
train.json's kept_step names it. A collapsed attempt is started again from a fresh init at half the peak rate
(--retries times at most, within the same --minutes);
train.json's top level is the last attempt (the saved model's) and "attempts" lists each one (rate, warm-up, steps,
why it stopped, its last evaluations). The large shape draws each layer's residual output projections with std
0.02/sqrt(2·layers) ("residual_init_std"; --residual-init plain for BERT's 0.02), so each post-LN layer starts near
the identity. On CPU (24 layers at width 64) the scaling averted a collapse in 1 seed of 2 and half the rate in the
one seed tried (the SHAPES comment has the numbers). The large shape also starts on short contexts (short_steps
batches of 12-60-token ones) before the full lengths, which kept the CPU study from collapsing where the full
lengths from the start did. --lr and --warmup override the shape's. The weights are never committed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmeta
sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxy_data  # noqa: E402

SHAPES = {
    "large": dict(
        # no dropout: generated data does not overfit in minutes, and at depth 24 (width 64 on CPU, lr 5e-4,
        # seed 2) the jump from chance to a trained model came ~200 steps sooner without it (F1 57 at step 600
        # against 22 with BERT's 0.1)
        config=dict(
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            intermediate_size=4096,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        ),
        words=3000,
        # "key" learns in one attention step, so it trains to a high F1 within the device budget; "mixed"
        # (--answer mixed) adds the two-step value lookup, closer to SQuAD but not shown to train in time
        answer="key",
        context_tokens=(30, 360),
        long_share=0.025,
        # the first short_steps steps on questions with contexts of short_contexts tokens, then the full lengths:
        # at depth 24, width 64 (5e-4, seed 2, batch 32, no dropout) training on 30-360-token contexts from the
        # start collapsed by step 300 (margin 0.0, F1 0.8; seed 1: at chance to step 500, F1 0.2, margin 0.0),
        # where 400 steps on 12-60-token contexts first left it learning the long ones: F1 9 at step 700, 37 at
        # 1,000, 63 at 1,300, 45 at 1,400 (hence the best evaluation is kept), 73.5 at 1,600; seed 1 the same
        # way, 23 at 1,000, 47.5 at 1,200 and 63.5 at 1,300. The short steps also cost a fraction of a long one
        short_steps=400,
        short_contexts=(12, 60),
        short_questions=30_000,
        train_questions=60_000,
        dev_questions=10_570,
        batch=64,
        # lr 1e-4 after 300 warm-up steps collapsed on the H200 with BERT's init (loss at chance from step 100,
        # every start logit tied: median margin 0.0, dev F1 1.3 after 1,784 steps). On CPU, the same depth at width
        # 64 (2 heads, batch 16, 100 warm-up steps, contexts of 12-60 tokens) collapsed the same way at lr 1e-3 with
        # BERT's init, 2 seeds of 2 (margin 0.0, loss at chance ~4.3 from step 300); with the residual init scaled,
        # 1 of 2 (the other learned: F1 23.5, margin 0.33 at step 800), and at 2e-3 it collapsed too. BERT's init
        # at half the rate, 5e-4 (the retry), learned for its 600 steps (margin 0.24). So the scaling helps a
        # little and the lower rate more: hence the retries. On the H200, 5e-5 after 300 with the scaled init
        # collapsed too (step 400, loss never below chance; bench/results/bert_proxy_train.json). Adam's rate for
        # hidden matrices scales as 1/width (muP), so 5e-5 at width 1024 is ~8e-4 at width 64, the CPU study's
        # collapse edge; 3e-5 is its stable-but-slow regime (~5e-4: F1 11-14 after 600 steps at width 64, where
        # separate rates for the hidden matrices and the rest kept 2 seeds of 2 stable but learned no faster).
        # Depth 24 learns in a jump after a long flat start: at width 64 and 5e-4 (3e-5 at 1024 by the same
        # rule), batch 32, no dropout, F1 sat at 7-13 for the first 300-500 steps, then rose to 55-60 by step
        # 1,000 and 54/74 at 1,400 (seeds 1/2; the earlier 600-step runs stopped before the jump). So give it
        # >= 1,400 steps (about 5 minutes on the H200). The 1/width rule held one doubling further: width 128 at
        # 2.5e-4 (seed 2, same data) sat at F1 11-12 to step 500, jumped to 34 at 600 and 50-52 by 900-1,200.
        # On the H200 (this shape, seed 0): at chance for 800 steps, then F1 30 at 900, 60 at 1,000, 89 at 1,200
        # and 97.4 at 1,600 (273 s of training; bench/results/bert_proxy_train.json); a second run left chance a
        # hundred steps later (F1 58 at 1,300: bert_proxy_train_bench.json).
        lr=3e-5,
        warmup=300,
        eval_questions=600,
        final_eval_questions=3000,  # the bench scores all of them; 3,000 keep the training run short
        eval_every=100,
        residual_init_scale=True,
    ),
    "tiny": dict(
        config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128),
        words=60,
        answer="key",
        context_tokens=(12, 40),
        long_share=0.0,
        train_questions=2000,
        dev_questions=300,
        batch=32,
        lr=3e-3,
        warmup=30,
        eval_questions=300,
        final_eval_questions=None,
        eval_every=100,
        residual_init_scale=False,
    ),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def featurize(model_dir: Path, doc: dict, path: Path):
    """(examples, features, tokenizer, start positions, end positions) of a generated SQuAD document."""
    from subtool.runner.bert.checkpoint import wordpiece_tokenizer
    from subtool.runner.bert.squad import convert_examples_to_features, read_squad_examples

    proxy_data.write_squad(path, doc)
    tokenizer = wordpiece_tokenizer(model_dir / "vocab.txt")
    examples = read_squad_examples(path)
    features = convert_examples_to_features(examples, tokenizer)
    return (examples, features, tokenizer, *proxy_data.answer_positions(examples, features, doc))


def _featurize_part(job: tuple) -> tuple:
    """One process's share of featurize_training: (features, start positions, end positions) of a part."""
    model_dir, doc, path = job
    _, features, _, start, end = featurize(model_dir, doc, path)
    path.unlink()
    return features, start, end


def featurize_training(model_dir: Path, doc: dict, path: Path, workers: int) -> tuple:
    """(features, start positions, end positions) of a generated training document: its paragraphs split in order
    over `workers` processes, the parts' arrays joined (example indices shifted to the whole document's), so the
    same arrays as one featurize() call. In one process the large shape's 64,530 training features took 31 s on a
    2-core CI machine, and the H200 host spent 66 s making all of the data."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    from subtool.runner.bert.squad import SquadFeatures

    (article,) = doc["data"]
    paragraphs = article["paragraphs"]
    bounds = np.linspace(0, len(paragraphs), max(1, min(workers, len(paragraphs))) + 1).astype(int)
    jobs = [
        (model_dir, {**doc, "data": [{**article, "paragraphs": paragraphs[a:b]}]}, path.with_suffix(f".{i}.json"))
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))
    ]
    if len(jobs) == 1:
        parts = [_featurize_part(jobs[0])]
    else:  # spawned, not forked: the parent may hold threads (torch's) that a fork would copy mid-state
        with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = list(pool.map(_featurize_part, jobs))
    shifts = np.cumsum([0] + [sum(len(p["qas"]) for p in job[1]["data"][0]["paragraphs"]) for job in jobs[:-1]])
    joined = {
        name: np.concatenate(
            [getattr(f, name) + (shift if name == "example_index" else 0) for (f, _, _), shift in zip(parts, shifts)]
        )
        for name in SquadFeatures.__dataclass_fields__
    }
    return SquadFeatures(**joined), np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


def dev_scores(model, examples, features, tokenizer, device, limit: int | None = None) -> dict:
    """fp32 F1 of the model on (the first `limit` questions of) the dev set, and the median margin of its start
    logits (best minus second best over the context)."""
    import numpy as np
    import torch

    from subtool.runner.bert.squad_eval import best_answers, squad_v11_scores

    keep = [i for i in range(len(features)) if limit is None or features.example_index[i] < limit]
    logits, margins = {}, []
    model.eval()
    with torch.inference_mode(), torch.autocast(device.type, enabled=False):
        for chunk in range(0, len(keep), 64):
            idx = keep[chunk : chunk + 64]
            n = int(features.seq_lengths[idx].max())
            ids = torch.from_numpy(features.input_ids[idx, :n].astype("int64")).to(device)
            seg = torch.from_numpy(features.segment_ids[idx, :n].astype("int64")).to(device)
            mask = torch.from_numpy(features.input_mask[idx, :n].astype("int64")).to(device)
            out = model(input_ids=ids, token_type_ids=seg, attention_mask=mask)
            both = torch.stack([out.start_logits, out.end_logits], -1).float().cpu().numpy()
            for row, fi in enumerate(idx):
                length = int(features.seq_lengths[fi])
                logits[fi] = both[row, :length]
                ctx = np.sort(both[row, :length, 0][features.token_to_word[fi, :length] >= 0])
                if ctx.size > 1:
                    margins.append(float(ctx[-1] - ctx[-2]))
    model.train()
    covered = sorted({int(features.example_index[i]) for i in keep})
    preds = best_answers(examples, features, logits, tokenizer.convert_ids_to_tokens)
    scores = squad_v11_scores(preds, [examples[i] for i in covered])
    margin = float(np.median(margins)) if margins else 0.0
    by_answer = f1_by_answer_word(preds, [examples[i] for i in covered])
    return {**scores, "median_start_margin": margin, "f1_by_answer_word": by_answer}


ANSWER_BANDS = (0, 50, 100, 200)  # where an answer's first word sits in its context: bands from these words on


def f1_by_answer_word(preds: dict, examples) -> dict:
    """F1 (percent) and question count by where the answer starts in its context ("0-49", "50-99", "100-199",
    "200+" words): a model that has learned near positions only (a stall near F1 60 on the H200, 2 trainings of 4)
    shows it here. A question whose answer is not found in its context counts under "?"."""
    from subtool.runner.bert.squad_eval import f1

    bands: dict[str, list[float]] = {}
    for ex in examples:
        truth = (ex.answers or [""])[0].split()
        at = next((i for i in range(len(ex.doc_words)) if ex.doc_words[i : i + len(truth)] == truth), None)
        if not truth or at is None:
            name = "?"
        else:
            lo = max(b for b in ANSWER_BANDS if b <= at)
            nxt = [b for b in ANSWER_BANDS if b > lo]
            name = f"{lo}-{nxt[0] - 1}" if nxt else f"{lo}+"
        score = max(f1(preds.get(ex.qas_id, ""), t) for t in (ex.answers or [""]))
        bands.setdefault(name, []).append(score)
    return {k: {"questions": len(v), "f1": round(100.0 * sum(v) / len(v), 2)} for k, v in sorted(bands.items())}


def schedule(s: dict, data: dict, rng):
    """(features, starts, ends) and a batch of them, forever: s["short_steps"] batches of the short-context
    questions first when the shape has them, then the full-length ones."""
    import itertools

    if data["short"] is not None:
        for idx in itertools.islice(batches(*data["short"], s["batch"], rng), s["short_steps"]):
            yield data["short"], idx
    for idx in batches(*data["full"], s["batch"], rng):
        yield data["full"], idx


def batches(features, starts, ends, size: int, rng):
    """Shuffled batches of similar length (little padding), forever."""
    import numpy as np

    order = np.argsort(features.seq_lengths + rng.random(len(features)) * 40)
    groups = [order[i : i + size] for i in range(0, len(order), size)]
    while True:
        rng.shuffle(groups)
        yield from groups


def collapsed(history: list[dict], warmup: int) -> bool:
    """Two evaluations in a row past the warm-up whose start logits all tie (median margin 0): the model has
    collapsed to a constant answer, and more steps at this rate do not bring it back."""
    late = [h for h in history if h["step"] > warmup]
    return len(late) >= 2 and all(h["median_start_margin"] == 0.0 for h in late[-2:])


def residual_init(model, scale: bool) -> float:
    """Draw each layer's residual-branch output projections (attention.output.dense and output.dense weights) with
    std initializer_range/sqrt(2·layers) when `scale`, so that every post-LN layer starts near the identity (GPT-2's
    rule); the std those weights now have (the config's initializer_range when not scaled)."""
    import torch

    config = model.config
    if not scale:
        return config.initializer_range
    std = config.initializer_range / math.sqrt(2 * config.num_hidden_layers)
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            layer.attention.output.dense.weight.normal_(0.0, std)
            layer.output.dense.weight.normal_(0.0, std)
    return std


def prepare(s: dict, out: Path, seed: int, answer: str) -> tuple:
    """Generate and featurize the questions: (model dir, vocabulary size, (training features, start positions,
    end positions), (dev examples, dev features, tokenizer, …))."""
    model_dir = out / "model"
    words = proxy_data.vocabulary(s["words"])
    proxy_data.write_vocab(model_dir, words)
    common = dict(context_tokens=s["context_tokens"], long_share=s["long_share"], answer=answer)
    train_doc = proxy_data.generate(words, s["train_questions"], seed, **common)
    dev_doc = proxy_data.generate(words, s["dev_questions"], seed + 1, **common)
    workers = min(8, os.cpu_count() or 1, s["train_questions"] // 5000 or 1)  # a small set: no processes to start
    tf, t_start, t_end = featurize_training(model_dir, train_doc, out / "proxy-train-v1.1.json", workers)
    dev = featurize(model_dir, dev_doc, out / "proxy-dev-v1.1.json")
    short = None
    if s.get("short_steps"):
        short_doc = proxy_data.generate(
            words, s["short_questions"], seed + 2, context_tokens=s["short_contexts"], long_share=0.0, answer=answer
        )
        short = featurize_training(model_dir, short_doc, out / "proxy-short-v1.1.json", workers)
    log(f"{len(tf)} training features, {len(dev[1])} dev features, {len(short[0]) if short else 0} short ones")
    vocab_size = len((model_dir / "vocab.txt").read_text(encoding="utf-8").split())
    return model_dir, vocab_size, {"full": (tf, t_start, t_end), "short": short}, dev


def new_model(s: dict, vocab_size: int, device, seed: int, scale: bool):
    """A freshly initialized BertForQuestionAnswering of the shape, and the std of its residual output projections."""
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, max_position_embeddings=512, type_vocab_size=2, **s["config"])
    model = BertForQuestionAnswering(config)
    std = residual_init(model, scale)
    return model.to(device).train(), std


def train_step(model, opt, sched, amp, data, idx, device) -> tuple:
    """One optimizer step on the batch `idx`: (loss, gradient norm before clipping to 1)."""
    import numpy as np
    import torch

    tf, t_start, t_end = data
    n = int(tf.seq_lengths[idx].max())

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a).astype("int64")).to(device, non_blocking=True)

    with amp:
        loss = model(
            input_ids=t(tf.input_ids[idx, :n]),
            token_type_ids=t(tf.segment_ids[idx, :n]),
            attention_mask=t(tf.input_mask[idx, :n]),
            start_positions=t(t_start[idx]),
            end_positions=t(t_end[idx]),
        ).loss
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return loss, grad_norm


def attempt(model, s: dict, data, dev, device, lr: float, warm: int, seed: int, stop: dict) -> dict:
    """Train `model` from its init at peak rate `lr` after `warm` linear warm-up steps until the dev F1 reaches
    stop["target_f1"], the model collapses, stop["steps"] steps are done or stop["deadline"] (time.time()) passes:
    {lr, warmup, steps, seconds, stopped_on, history (each evaluation)}."""
    import numpy as np
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, fused=device.type == "cuda")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warm))
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    )
    t0, step, reason, history = time.time(), 0, "time", []
    best = {"f1": -1.0, "step": 0, "state": None}  # the weights of the best evaluation so far
    for part, idx in schedule(s, data, np.random.default_rng(seed)):
        loss, grad_norm = train_step(model, opt, sched, amp, part, idx, device)
        step += 1
        if step % s["eval_every"] == 0 or step == stop["steps"]:
            scores = dev_scores(model, *dev[:3], device, limit=s["eval_questions"])
            if scores["f1"] > best["f1"]:
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best.update(f1=scores["f1"], step=step, state=state)
            history.append(
                {
                    "step": step,
                    "seconds": round(time.time() - t0, 1),
                    "loss": round(float(loss.detach()), 4),
                    "grad_norm": round(float(grad_norm), 4),
                    "lr": sched.get_last_lr()[0],
                    "f1": round(scores["f1"], 2),
                    "median_start_margin": round(scores["median_start_margin"], 4),
                    "f1_by_answer_word": scores["f1_by_answer_word"],
                }
            )
            h = history[-1]
            log(
                f"step {step}: loss {h['loss']:.3f}, grad norm {h['grad_norm']:.2f}, dev F1 {h['f1']:.2f}, "
                f"margin {h['median_start_margin']:.2f} ({h['seconds']:.0f} s); F1 by answer word: "
                + ", ".join(f"{k} {v['f1']:.0f}" for k, v in h["f1_by_answer_word"].items())
            )
            if scores["f1"] >= stop["target_f1"]:
                reason = "target F1"
                break
            if collapsed(history, warm):
                reason = "collapsed"
                break
        if step == stop["steps"]:
            reason = "steps"
            break
        if time.time() > stop["deadline"]:
            break
    if best["state"] is not None and best["step"] != step:  # F1 swings late at depth 24: keep the best one
        model.load_state_dict(best["state"])
    return {
        "lr": lr,
        "warmup": warm,
        "steps": step,
        "kept_step": best["step"] if best["state"] is not None else step,
        "seconds": round(time.time() - t0, 1),
        "stopped_on": reason,
        "history": history,
    }


def train(
    shape: str,
    out: Path,
    minutes: float,
    target_f1: float,
    device_name: str,
    seed: int,
    steps,
    answer=None,
    lr: float | None = None,
    warmup: int | None = None,
    retries: int = 3,
    residual_scale: bool | None = None,
) -> dict:
    """Train the shape; a collapsed attempt is retried from a fresh init at half its learning rate while time and
    `retries` are left. The last attempt's model is scored and saved; the record keeps every attempt."""
    import torch

    s = SHAPES[shape]
    device = torch.device(device_name)
    t0 = time.time()
    stop = {"target_f1": target_f1, "steps": steps, "deadline": t0 + minutes * 60}
    scale = s["residual_init_scale"] if residual_scale is None else residual_scale
    model_dir, vocab_size, data, dev = prepare(s, out, seed, answer or s["answer"])
    lr, warm, attempts = lr or s["lr"], warmup or s["warmup"], []
    for k in range(retries + 1):
        model, std = new_model(s, vocab_size, device, seed + k, scale)
        log(f"attempt {k + 1}: lr {lr:g}, warm-up {warm} steps, residual output projections' init std {std:.4g}")
        attempts.append(attempt(model, s, data, dev, device, lr, warm, seed + k, stop))
        if attempts[-1]["stopped_on"] != "collapsed" or time.time() > stop["deadline"]:
            break
        lr /= 2
    scores = dev_scores(model, *dev[:3], device, limit=s["final_eval_questions"])
    model.save_pretrained(model_dir)
    last = attempts[-1]
    record = {
        "shape": shape,
        "questions": answer or s["answer"],
        "config": s["config"],
        "residual_init_scale": scale,
        "residual_init_std": round(std, 6),
        "short_steps": s.get("short_steps", 0),  # prepare made short questions exactly when this is non-zero
        "short_contexts": s.get("short_contexts"),
        "lr": last["lr"],
        "warmup": warm,
        "steps": last["steps"],
        "kept_step": last["kept_step"],  # the saved weights: the step of the attempt's best evaluated dev F1
        "seconds": round(time.time() - t0, 1),
        "stopped_on": last["stopped_on"],
        "dev_questions": len(dev[0]),
        "scored_questions": min(len(dev[0]), s["final_eval_questions"] or len(dev[0])),
        "dev_features": len(dev[1]),
        "fp32_dev": {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()},
        "model_path": str(model_dir),
        "dataset_path": str(out / "proxy-dev-v1.1.json"),
        "history": last["history"],
        "attempts": [{**a, "history": a["history"][-3:]} for a in attempts],
    }
    log(f"dev F1 {scores['f1']:.2f}, median start margin {scores['median_start_margin']:.1f} → {model_dir}")
    return record


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="large")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=7.0, help="training time limit (the dev F1 may stop it earlier)")
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    ap.add_argument("--target-f1", type=float, default=97.0)
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--seed", type=int, default=proxy_data.PROXY_SEED)
    ap.add_argument("--answer", choices=("value", "key", "mixed"), default=None, help="the questions (proxy_data)")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the shape's)")
    ap.add_argument("--warmup", type=int, default=None, help="linear warm-up steps (default: the shape's)")
    ap.add_argument("--retries", type=int, default=3, help="fresh starts at half the rate after a collapse")
    ap.add_argument(
        "--residual-init",
        choices=("scaled", "plain"),
        default=None,
        help="residual output projections' init std: 0.02/sqrt(2·layers) or 0.02 (default: the shape's)",
    )
    return ap


def main(argv: list[str] | None = None) -> dict:
    from benchmeta import Provenance

    args = build_parser().parse_args(argv)
    prov = Provenance(None if argv is None else [__file__, *argv])  # named by its path in the checkout
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(1)  # small products: threads only wait for each other on a shared machine
    try:
        record = train(
            args.shape,
            args.out,
            args.minutes,
            args.target_f1,
            device,
            args.seed,
            args.steps or math.inf,
            args.answer,
            lr=args.lr,
            warmup=args.warmup,
            retries=args.retries,
            residual_scale=None if args.residual_init is None else args.residual_init == "scaled",
        )
    finally:
        torch.set_num_threads(threads)
    return prov.write(record, args.out / "train.json")


if __name__ == "__main__":
    main()
