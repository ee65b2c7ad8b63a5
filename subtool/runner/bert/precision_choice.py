"""`--precision auto` from evidence: a short accuracy check on the user's own checkpoint and data picks the fastest
precision that keeps the benchmark's accuracy target, and says which and why in one line.

The check scores a few hundred questions of the data set (whole questions, spread evenly over it) with the fp32
model and with each candidate, fastest first (fp8, bf16, fp16: the order of their samples/s on an H200, issue 26),
and takes the first whose F1 is at least the benchmark's ratio of fp32's (bert-99: 0.99, bert-99.9: 0.999) on the
same questions. fp8 first calibrates its static scales and picks its per-layer fallback on a separate calibration
subset (fp8_plan.py); a plan that needs every layer in bf16 is no fp8. fp32 is the reference and always passes.

A model whose fp32 answers are (almost) all wrong — the demo's random weights — gives no F1 to keep; the check then
scores each candidate's answers against fp32's own and says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from subtool.errors import SubtoolError
from subtool.runner.bert import fp8_plan

SPEED_ORDER = ("fp8", "bf16", "fp16")  # fastest first (H200, BERT-large, Offline: 6,436 / 4,484 / 3,950 samples/s)
MIN_REFERENCE_F1 = 5.0  # below this the fp32 model answers (almost) nothing right: compare with its answers instead


@dataclass
class Choice:
    precision: str
    line: str  # the one line that says which and why
    evidence: list[dict] = field(default_factory=list)
    model: object | None = None  # the chosen precision's model, built and (fp8) planned: the SUT reuses it
    fp8: dict | None = None  # the chosen fp8 plan's report

    def record(self) -> dict:
        return {"chosen": self.precision, "why": self.line, "candidates": self.evidence, "fp8_plan": self.fp8}


def scoring_data(data, ref_logits: dict, check: list[int]):
    """(the data to score against, fp32's F1 on the check questions, what is scored): the data set's answers, or
    the fp32 model's own answers where those are (almost) all wrong."""
    from subtool.runner.bert.squad_eval import best_answers

    f1_ref = fp8_plan.f1_on(data, {i: ref_logits[i] for i in check})
    if f1_ref >= MIN_REFERENCE_F1:
        return data, f1_ref, "F1"
    answers = best_answers(data.examples, data.features, ref_logits, data.tokenizer.convert_ids_to_tokens)
    agreed = dataclasses.replace(
        data, examples=[dataclasses.replace(e, answers=[answers.get(e.qas_id, "")]) for e in data.examples]
    )
    return agreed, 100.0, f"agreement with fp32's answers (its F1 is {f1_ref:.2f})"


def choose(
    data,
    build,
    ratio: float,
    candidates: tuple[str, ...] = SPEED_ORDER,
    n_check: int = 300,
    n_calibration: int = 200,
    token_budget: int = 16384,
    max_fallback: int | None = None,
) -> Choice:
    """The fastest of `candidates` whose F1 on the check questions is ≥ ratio x fp32's; `build(precision)` makes
    a model (a SubtoolError from it — no fp8 on this GPU — refuses that candidate with its reason)."""
    features = data.features
    calibration, check = fp8_plan.subsets(features, n_check, n_calibration)
    reference = build("fp32")
    ref_logits = fp8_plan.eval_logits(reference, features, calibration + check, token_budget)
    del reference
    scored, f1_ref, what = scoring_data(data, ref_logits, check)
    questions = len({int(features.example_index[i]) for i in check})
    evidence: list[dict] = [{"precision": "fp32", "f1": round(f1_ref, 4), "ratio": 1.0}]
    refused: list[str] = []
    for precision in candidates:
        entry, model, plan = _try(
            precision, build, scored, calibration, check, ref_logits, ratio, token_budget, max_fallback, f1_ref
        )
        evidence.append(entry)
        if model is None:
            refused.append(f"{precision} refused: {entry['refused']}")
            continue
        why = f"{what} {entry['f1']:.2f} = {100 * entry['ratio']:.2f} % of fp32's on {questions} questions"
        if plan is not None:
            why += f", {plan.line()}"
        line = _line(precision, why, ratio, refused)
        return Choice(precision, line, evidence, model, plan.report() if plan is not None else None)
    why = f"no faster precision keeps {100 * ratio:g} % of fp32's {what} on {questions} questions"
    return Choice("fp32", _line("fp32", why, ratio, refused), evidence, build("fp32"), None)


def _line(precision: str, why: str, ratio: float, refused: list[str]) -> str:
    tail = f" ({'; '.join(refused)})" if refused else ""
    return f"precision auto → {precision}: {why} (target {100 * ratio:g} %){tail}"


def _try(precision, build, data, calibration, check, ref_logits, ratio, budget, max_fallback, f1_ref):
    """(evidence entry, the model if it passes else None, its fp8 plan or None)."""
    try:
        model = build(precision)
    except SubtoolError as exc:
        return {"precision": precision, "refused": exc.message}, None, None
    plan = None
    if precision == "fp8":
        plan = fp8_plan.plan(model, data, calibration, ref_logits, ratio, budget, max_fallback)
        if len(plan.fallback) == plan.layers:
            entry = {
                "precision": precision,
                "refused": "every layer needs bf16 to keep the F1",
                "fp8_plan": plan.report(),
            }
            return entry, None, None
    f1 = fp8_plan.f1_on(data, fp8_plan.eval_logits(model, data.features, check, budget))
    entry = {"precision": precision, "f1": round(f1, 4), "ratio": round(f1 / f1_ref, 5) if f1_ref else 0.0}
    if plan is not None:
        entry["fp8_plan"] = plan.report()
    if f1 < ratio * f1_ref:
        entry["refused"] = f"F1 {f1:.2f} is {100 * f1 / f1_ref:.2f} % of fp32's {f1_ref:.2f} (< {100 * ratio:g} %)"
        return entry, None, None
    return entry, model, plan


def prepare(model_path, data, precision: str, ratio: float, device: str = "cuda", **options) -> Choice:
    """The model a torch-cuda run uses for `--precision auto` (the choice above) or `fp8` (as asked, with its
    scales calibrated and its fallback planned), and the line that says what was decided."""
    from subtool.runner.bert.packed_model import PackedBert
    from subtool.runner.bert.sut_cuda import check_request

    def build(p: str):
        check_request(p, device)  # fp8 on a GPU without it: refused with the reason, not a failed product
        return PackedBert(model_path, device=device, precision=p)

    if precision == "auto":
        return choose(data, build, ratio, **options)
    if precision != "fp8":
        raise ValueError(f"nothing to prepare for precision {precision!r}")
    calibration, _ = fp8_plan.subsets(data.features, 0, options.get("n_calibration", 200))
    budget = options.get("token_budget", 16384)
    reference = build("fp32")
    ref_logits = fp8_plan.eval_logits(reference, data.features, calibration, budget)
    del reference
    scored, _, what = scoring_data(data, ref_logits, calibration)
    model = build("fp8")
    plan = fp8_plan.plan(model, scored, calibration, ref_logits, ratio, budget, options.get("max_fallback"))
    verdict = "keeps" if plan.passes else "does not keep"
    line = (
        f"precision fp8 (as asked): {plan.line()}; {what} {plan.f1_fp8:.2f} {verdict} {100 * ratio:g} % of fp32's "
        f"{plan.f1_fp32:.2f} on the {len(calibration)} calibration features"
    )
    return Choice("fp8", line, [], model, plan.report())
