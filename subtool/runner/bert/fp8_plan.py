"""fp8 that keeps bert-99's accuracy: static activation scales calibrated on sample data, and per-layer fallback.

Two of each layer's four fp8 products read an input the GPU writes at one static scale (the attention output and
GELU's output: kernels/packed_attention.py and kernels/fp8_gemm.py quantize in their epilogues, before the whole
row exists). Their scales default to a bound derived from the weights, which never overflows but, being loose,
leaves e4m3 few significant levels for typical values. `calibrate` runs the model in bf16 over a calibration
subset (MLPerf allows a calibration list) and sets each scale to the largest value seen there, so e4m3's range
covers what real inputs reach (a value beyond it is clipped to ±448 steps). The LayerNorm outputs are quantized
row by row at their own amax in the LayerNorm kernel, which costs nothing extra, so they need no calibration.

`plan` then checks the criterion — the fp8 F1 on the calibration questions at least `ratio` of the fp32 model's F1
on the same questions — and, where fp8 falls short of it beyond doubt (f1_judge.py: paired, question by question,
more than two standard errors), moves whole layers back to bf16, the layers whose fp8 alone changes the logits most
first, until it no longer does. A shortfall within the noise of a couple of hundred questions moves nothing: that
would cost speed on noise, and the same model would get a different plan from different calibration questions.
A `strict` plan falls back until the point estimate keeps the target (for when a larger check has already shown
fp8 short of it). The plan's `report` says which layers run in which precision and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from subtool.errors import SubtoolError
from subtool.runner.bert.f1_judge import judge, mean_f1
from subtool.runner.bert.squad import MAX_SEQ_LENGTH

STATIC_OPS = ("o", "ff2")  # products whose fp8 input has a static scale (the others: row-wise, dynamic)


# ------------------------------------------------------------------------------------- running the model
def eval_logits(model, features, indices, token_budget: int = 16384) -> dict[int, np.ndarray]:
    """feature index → [length, 2] float32 start/end logits, by the model's eager packed forward (no graphs)."""
    from subtool.runner.bert.packed_plan import pack_inputs, sequence_capacity

    torch = model.torch
    order = sorted(indices, key=lambda i: -int(features.seq_lengths[i]))
    out: dict[int, np.ndarray] = {}
    batch: list[int] = []

    def flush():
        p = pack_inputs(features.input_ids, features.segment_ids, features.seq_lengths, np.asarray(batch), token_budget)
        dev = model.device
        res = torch.zeros((sequence_capacity(token_budget) * MAX_SEQ_LENGTH + 1, 2), device=dev)

        def t(a):
            return torch.from_numpy(np.ascontiguousarray(a)).to(dev)

        with torch.inference_mode():
            model.forward(
                t(p.input_ids), t(p.segment_ids), t(p.position_ids), t(p.out_rows), t(p.cu_seqlens), res, p.sequences
            )
        logits = res[: p.sequences * MAX_SEQ_LENGTH].view(p.sequences, MAX_SEQ_LENGTH, 2).cpu().numpy()
        for row, fi in enumerate(batch):
            out[fi] = logits[row, : int(features.seq_lengths[fi])].copy()
        batch.clear()

    tokens = 0
    for fi in order:
        n = int(features.seq_lengths[fi])
        if batch and (tokens + n > token_budget or len(batch) >= sequence_capacity(token_budget)):
            flush()
            tokens = 0
        batch.append(fi)
        tokens += n
    if batch:
        flush()
    return out


def subsets(features, n_check: int, n_calibration: int) -> tuple[list[int], list[int]]:
    """(calibration, check) feature indices: whole questions, disjoint. The calibration questions are spread evenly
    over the data set and do not depend on `n_check` (`--precision fp8` and `auto` calibrate on the same ones); the
    check's are spread evenly over the rest (more_questions)."""
    calibration = more_questions(features, [], n_calibration)
    return calibration, more_questions(features, calibration, n_check)


def more_questions(features, taken: list[int], n: int) -> list[int]:
    """Feature indices of up to `n` more whole questions, spread evenly over those no index in `taken` belongs to."""
    ex = features.example_index
    held = {int(ex[i]) for i in taken}
    free = np.array([e for e in np.unique(ex).tolist() if e not in held], dtype=np.int64)
    want = min(len(free), max(n, 0))
    picked = set(free[np.linspace(0, len(free) - 1, want).round().astype(int)].tolist()) if want else set()
    return [i for i in range(len(ex)) if int(ex[i]) in picked]


def f1_on(data, logits: dict[int, np.ndarray]) -> float:
    """SQuAD v1.1 F1 (percent) over the questions whose features `logits` holds, against the data set's answers:
    the mean of question_f1's (f1_judge.mean_f1)."""
    scores = question_f1(data, logits)
    return mean_f1(scores, scores)


def question_f1(data, logits: dict[int, np.ndarray]) -> dict[int, float]:
    """Each question's SQuAD v1.1 F1 (0 to 1, the best over its ground truths), by example index, over the
    questions whose features `logits` holds: f1_on is their mean, in percent."""
    from subtool.runner.bert.squad_eval import best_answers, f1

    covered = sorted({int(data.features.example_index[i]) for i in logits})
    preds = best_answers(data.examples, data.features, logits, data.tokenizer.convert_ids_to_tokens)
    scores = {}
    for i in covered:
        ex = data.examples[i]
        scores[i] = max(f1(preds.get(ex.qas_id, ""), t) for t in (ex.answers or [""]))
    return scores


# ----------------------------------------------------------------------------------------- calibration
def calibrate(model, features, indices, token_budget: int = 16384, margin: float = 1.0) -> dict:
    """Static scales (amax x margin / 448) of each layer's attention output and GELU output over `indices`,
    observed with every product in bf16; applied to the model, and returned."""
    from subtool.runner.bert.packed_model import FP8_MAX

    seen: dict[tuple[int, str], float] = {}
    broken: set[tuple[int, str]] = set()  # inputs that held an inf or NaN (max() would drop a NaN: kept apart)

    def observe(layer: int, op: str, x) -> None:
        if op in STATIC_OPS:
            amax = float(x.detach().abs().amax())
            if not math.isfinite(amax):
                broken.add((layer, op))
            seen[(layer, op)] = max(seen.get((layer, op), 0.0), amax if math.isfinite(amax) else 0.0)

    saved = list(model.layer_ops)
    model.layer_ops = [frozenset()] * len(saved)
    model.observer = observe
    try:
        eval_logits(model, features, indices, token_budget)
    finally:
        model.observer = None
        model.layer_ops = saved
    if broken:  # an inf or NaN would set a scale that turns every input of that product into zeros or NaN
        (layer, op), n = min(broken), len(broken)
        raise SubtoolError(
            f"fp8 calibration: layer {layer}'s {'attention output' if op == 'o' else 'GELU output'} is not finite "
            f"on the {len(indices)} calibration features in bf16 ({n} such input{'s' if n > 1 else ''} in all)",
            rule="run.fp8_calibration",
            hint="the checkpoint overflows bf16 there: run --precision fp16 or fp32",
        )
    scales = {key: max(amax, 1e-6) * margin / FP8_MAX for key, amax in seen.items()}
    model.set_static_scales(scales, f"calibrated on {len(indices)} features")
    return scales


# ---------------------------------------------------------------------------------------------- the plan
@dataclass
class Fp8Plan:
    layers: int
    fallback: list[int] = field(default_factory=list)  # layers run in bf16
    f1_fp32: float = 0.0
    f1_fp8: float = 0.0  # with the fallback applied
    ratio_target: float = 0.99
    calibration_features: int = 0
    calibration_questions: int = 0
    scale_source: str = ""
    steps: list[dict] = field(default_factory=list)
    verdict: str = ""  # f1_judge's on the calibration questions, with the fallback applied
    margin: float = 0.0  # fp8's F1 less the target share of fp32's there, in F1 points
    stderr: float = 0.0
    strict: bool = False  # fall back until the point estimate keeps the target, doubt or not

    @property
    def passes(self) -> bool:
        """Whether the plan stands: fp8 not short of the target beyond doubt (strict: its F1 at the target)."""
        if self.strict:
            return self.f1_fp8 >= self.ratio_target * self.f1_fp32
        return self.verdict != "fail"

    def keeps(self) -> str:
        """What the calibration questions say of fp8's F1 against the target: it "keeps" it, "does not keep" it, or
        "is within 2 standard errors of" it."""
        if self.verdict == "unsure":
            return "is within 2 standard errors of"
        return "keeps" if self.verdict == "pass" else "does not keep"

    def report(self) -> dict:
        fp8 = [i for i in range(self.layers) if i not in self.fallback]
        return {
            "fp8_layers": fp8,
            "bf16_layers": sorted(self.fallback),
            "scales": self.scale_source,
            "calibration_features": self.calibration_features,
            "calibration_questions": self.calibration_questions,
            "f1_fp32": round(self.f1_fp32, 4),
            "f1_fp8": round(self.f1_fp8, 4),
            "f1_ratio": round(self.f1_fp8 / self.f1_fp32, 5) if self.f1_fp32 else None,
            "target_ratio": self.ratio_target,
            "verdict": self.verdict,
            "margin": round(self.margin, 4),
            "stderr": round(self.stderr, 4),
            "strict": self.strict,
            "search": self.steps,
        }

    def line(self) -> str:
        fp8 = self.layers - len(self.fallback)
        kept = f"{fp8} of {self.layers} layers in fp8"
        if self.fallback:
            kept += f", layers {_ranges(sorted(self.fallback))} in bf16"
        return kept


def weight_types(report: dict | None, precision: str) -> str:
    """What a run at `precision` with this plan's report (None: no plan) ran its products' weights in, as the
    system description's weight_data_types says it: fp8 where every layer kept it, "fp8, bf16" where some fell back,
    bf16 where all did (an fp8 run in name only)."""
    if precision != "fp8" or not report:
        return precision
    if not report["fp8_layers"]:
        return "bf16"
    return "fp8, bf16" if report["bf16_layers"] else "fp8"


def _ranges(xs: list[int]) -> str:
    parts, start = [], None
    for i, x in enumerate(xs):
        if start is None:
            start = x
        if i + 1 == len(xs) or xs[i + 1] != x + 1:
            parts.append(str(start) if start == x else f"{start}-{x}")
            start = None
    return ",".join(parts)


def apply_fallback(model, fallback) -> None:
    from subtool.runner.bert.packed_model import FP8_OPS

    model.layer_ops = [frozenset() if i in fallback else frozenset(FP8_OPS) for i in range(model.shape.layers)]


def settings(model) -> dict:
    """What a plan left in `model` — its static scales, where they came from, the layers it moved to bf16 — as
    plain data that another copy of the same checkpoint (another Ray worker's) takes with `apply_settings`."""
    return {
        "scales": model.static_scales(),
        "source": model.scale_source,
        "fallback": [i for i, ops in enumerate(model.layer_ops) if not ops],
    }


def apply_settings(model, plan_settings: dict) -> None:
    """Make `model` run the fp8 another copy was planned to run (`settings`): the same scales, the same layers in
    bf16. Settings made for another shape are refused (a mixed pool would answer with two different models)."""
    scales, fallback = plan_settings["scales"], list(plan_settings["fallback"])
    layers = model.shape.layers
    if set(scales) != set(model.static_scales()) or any(not 0 <= i < layers for i in fallback):
        raise ValueError(f"fp8 settings for another model: {len(scales)} scales, fallback {fallback}, {layers} layers")
    model.set_static_scales(scales, plan_settings["source"])
    apply_fallback(model, fallback)


def layer_damage(model, features, indices, ref: dict[int, np.ndarray], token_budget: int) -> list[float]:
    """Per layer: the mean squared change of the logits (against fp32's) when that layer alone runs in fp8."""
    saved = list(model.layer_ops)
    damage = []
    try:
        for i in range(model.shape.layers):
            model.layer_ops = [saved[i] if j == i else frozenset() for j in range(len(saved))]
            got = eval_logits(model, features, indices, token_budget)
            damage.append(float(np.mean([np.mean((got[k] - ref[k]) ** 2) for k in got])))
    finally:
        model.layer_ops = saved
    return damage


def plan(
    model,
    data,
    calibration: list[int],
    ref_logits: dict[int, np.ndarray],
    ratio: float,
    token_budget: int = 16384,
    max_fallback: int | None = None,
    do_calibrate: bool = True,
    strict: bool = False,
) -> Fp8Plan:
    """Calibrate the static scales on `calibration`, then fall back the fewest layers (most damaging first, in
    growing steps: 1, 2, 4, …) that leave the fp8 F1 on those questions not short of `ratio` of fp32's
    (`ref_logits`) beyond doubt (strict: at least that ratio)."""
    features = data.features
    if do_calibrate:
        calibrate(model, features, calibration, token_budget)
    layers = model.shape.layers
    limit = layers if max_fallback is None else max_fallback
    source = model.scale_source
    p = Fp8Plan(layers, ratio_target=ratio, calibration_features=len(calibration), scale_source=source, strict=strict)
    ref = question_f1(data, {i: ref_logits[i] for i in calibration})
    p.f1_fp32, p.calibration_questions = mean_f1(ref, ref), len(ref)
    _measure(p, model, data, calibration, ref, [], token_budget)
    if p.passes or limit == 0:
        return p
    damage = layer_damage(model, features, calibration, ref_logits, token_budget)
    order = sorted(range(layers), key=lambda i: -damage[i])
    k = 1
    while True:
        k = min(k, limit)
        _measure(p, model, data, calibration, ref, order[:k], token_budget)
        if p.passes or k >= limit:
            return p
        k *= 2


def _measure(p: Fp8Plan, model, data, calibration, ref: dict[int, float], fallback: list[int], budget: int) -> None:
    """Apply `fallback` to the model and record fp8's F1 on the calibration questions, judged against fp32's."""
    apply_fallback(model, fallback)
    p.fallback = sorted(fallback)
    mine = question_f1(data, eval_logits(model, data.features, calibration, budget))
    p.verdict, p.margin, p.stderr = judge(mine, ref, p.ratio_target)
    p.f1_fp8 = mean_f1(mine, ref)
    p.steps.append(
        {"bf16_layers": len(fallback), "f1": round(p.f1_fp8, 4), "verdict": p.verdict, "margin": round(p.margin, 4)}
    )
