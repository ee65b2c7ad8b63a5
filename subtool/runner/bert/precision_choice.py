"""`--precision auto` from evidence: a short accuracy check on the user's own checkpoint and data picks the fastest
precision that keeps the benchmark's accuracy target, and says which and why in one line.

The check scores a few hundred questions of the data set (whole questions, spread evenly over it) with the fp32
model and with each candidate, fastest first (fp8, bf16, fp16: the order of their samples/s on an H200, issue 26),
and takes the first whose F1 is at least the benchmark's ratio of fp32's (bert-99: 0.99, bert-99.9: 0.999) on the
same questions. fp8 first calibrates its static scales and picks its per-layer fallback on a separate calibration
subset (fp8_plan.py), the same questions `--precision fp8` calibrates on; a plan that needs every layer in bf16 is
no fp8, and an fp8 plan the check refuses is made again strictly and checked again. fp32 is the reference and always
passes.
A few hundred questions cannot tell 98.9 % from 99.1 %: where a candidate's F1 lies within two standard errors of
the target (paired, question by question, against fp32's), the check grows fourfold, up to 4,800 questions, before
it decides; the line says when it grew.

A model whose fp32 answers are (almost) all wrong — the demo's random weights — gives no F1 to keep; the check then
scores each candidate's answers against fp32's own and says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from subtool.errors import SubtoolError
from subtool.runner.bert import fp8_plan
from subtool.runner.bert.f1_judge import Z, judge, mean_f1

SPEED_ORDER = ("fp8", "bf16", "fp16")  # fastest first (H200, BERT-large, Offline: 6,436 / 4,484 / 3,950 samples/s)
MIN_REFERENCE_F1 = 5.0  # below this the fp32 model answers (almost) nothing right: compare with its answers instead
# a check is a sample of the data set's questions: its verdict stands once the candidate's F1 is more than Z standard
# errors (paired, per question: f1_judge.py) from the target; closer, the check grows to GROWTH x its questions, up to
# MAX_CHECK.
# On the trained proxy (H200, bench/results/bert_gpu_proxy_f1_65.json) 300 questions put fp8 at 98.98 % of fp32's F1,
# two questions short, where the whole dev set put it at 99.89 %.
GROWTH, MAX_CHECK = 4, 4800
N_CHECK = 300  # the questions a check starts on


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
    """(the data to score against, what is scored, fp32's F1 on each check question against it): the data set's
    answers, or the fp32 model's own answers where those are (almost) all wrong."""
    from subtool.runner.bert.squad_eval import best_answers

    logits = {i: ref_logits[i] for i in check}
    reference = fp8_plan.question_f1(data, logits)
    f1_ref = mean_f1(reference, reference)
    if f1_ref >= MIN_REFERENCE_F1:
        return data, "F1", reference
    answers = best_answers(data.examples, data.features, ref_logits, data.tokenizer.convert_ids_to_tokens)
    agreed = dataclasses.replace(
        data, examples=[dataclasses.replace(e, answers=[answers.get(e.qas_id, "")]) for e in data.examples]
    )
    return agreed, f"agreement with fp32's answers (its F1 is {f1_ref:.2f})", fp8_plan.question_f1(agreed, logits)


def next_size(questions: int, largest: int) -> int:
    """The questions an unsure check grows to: GROWTH x its own, at most `largest`."""
    return min(max(questions, 1) * GROWTH, largest)


def settled(verdict: str, margin: float, questions: int) -> bool:
    """Whether a candidate passes once its check can grow no more: on judge's verdict, or still unsure, on the
    point estimate (F1 ≥ ratio x fp32's, as a full accuracy run would decide); a check of no questions never."""
    return verdict == "pass" or (verdict == "unsure" and questions > 0 and margin >= 0)


@dataclass
class _Check:
    """The questions candidates are judged on, fp32's logits on them and its per-question F1 there (`reference`),
    and the way to add more."""

    data: object
    build: Callable
    calibration: list[int]
    check: list[int]
    ref_logits: dict
    budget: int
    max_questions: int
    scored: object = None
    what: str = "F1"
    reference: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._score()

    def _score(self) -> None:
        """What the check scores against, and fp32's F1 on each of its questions: set whenever the check changes."""
        self.scored, self.what, self.reference = scoring_data(self.data, self.ref_logits, self.check)

    @property
    def questions(self) -> int:
        return len(self.reference)

    def grow(self) -> list[int]:
        """next_size's questions, fp32 scored on the new ones: their feature indices (none when the check is at
        its largest or the data set has no more)."""
        n = next_size(self.questions, self.max_questions) - self.questions
        extra = fp8_plan.more_questions(self.data.features, self.calibration + self.check, n) if n > 0 else []
        if extra:
            reference = self.build("fp32")
            self.ref_logits.update(fp8_plan.eval_logits(reference, self.data.features, extra, self.budget))
            del reference
            self.check = self.check + extra
            self._score()
        return extra


def choose(
    data,
    build,
    ratio: float,
    candidates: tuple[str, ...] = SPEED_ORDER,
    n_check: int = N_CHECK,
    n_calibration: int = 200,
    token_budget: int = 16384,
    max_fallback: int | None = None,
    max_check: int = MAX_CHECK,
) -> Choice:
    """The fastest of `candidates` whose F1 on the check questions is ≥ ratio x fp32's; `build(precision)` makes
    a model (a SubtoolError from it — no fp8 on this GPU — refuses that candidate with its reason). A check too
    close to call grows (GROWTH x its questions, up to `max_check`) before it decides."""
    features = data.features
    calibration, check = fp8_plan.subsets(features, n_check, n_calibration)
    reference = build("fp32")
    ref_logits = fp8_plan.eval_logits(reference, features, calibration + check, token_budget)
    del reference
    chk = _Check(data, build, calibration, check, ref_logits, token_budget, max(max_check, n_check))
    first = chk.reference
    f1_first = mean_f1(first, first)
    evidence: list[dict] = [{"precision": "fp32", "f1": round(f1_first, 4), "ratio": 1.0, "questions": len(first)}]
    refused: list[str] = []
    for precision in candidates:
        entry, model, plan = _try(precision, chk, ratio, max_fallback)
        evidence.append(entry)
        if model is None:
            refused.append(f"{precision} refused: {entry['refused']}")
            continue
        share, n = 100 * entry["ratio"], entry["questions"]
        why = f"{chk.what} {entry['f1']:.2f} = {share:.2f} % of fp32's on {n:,} questions"
        why += entry.get("note", "")
        if plan is not None:
            why += f", {plan.line()}"
        if "first_plan" in entry:
            was, n = entry["first_plan"], plan.layers
            why += f" (planned again: the check refused {len(was['fp8_plan']['fp8_layers'])} of {n} layers in fp8 at "
            why += f"{100 * was['ratio']:.2f} % of fp32's F1)"
        line = _line(precision, why, ratio, refused)
        return Choice(precision, line, evidence, model, plan.report() if plan is not None else None)
    why = f"no faster precision keeps {100 * ratio:g} % of fp32's {chk.what} on {chk.questions:,} questions"
    return Choice("fp32", _line("fp32", why, ratio, refused), evidence, build("fp32"), None)


def _line(precision: str, why: str, ratio: float, refused: list[str]) -> str:
    tail = f" ({'; '.join(refused)})" if refused else ""
    return f"precision auto → {precision}: {why} (target {100 * ratio:g} %){tail}"


def _try(precision: str, chk: _Check, ratio: float, max_fallback):
    """(evidence entry, the model if it passes else None, its fp8 plan or None)."""
    try:
        model = chk.build(precision)
        if precision == "fp8":
            return _try_fp8(model, chk, ratio, max_fallback)
    except SubtoolError as exc:  # no fp8 on this GPU, or its calibration saw activations bf16 cannot hold
        return {"precision": precision, "refused": exc.message}, None, None
    passes, entry = _judged(model, chk, ratio)
    return _verdict({"precision": precision, **entry}, passes, ratio, model, None)


def _try_fp8(model, chk: _Check, ratio: float, max_fallback):
    """fp8 planned on the calibration questions, then judged on the check. The plan moves layers to bf16 only where
    its few questions show fp8 short beyond doubt; if the (larger) check then refuses it, the plan is made again,
    strictly (until the point estimate on the calibration questions keeps the target), and judged again."""
    args = (model, chk.scored, chk.calibration, chk.ref_logits, ratio, chk.budget, max_fallback)
    plan, first = fp8_plan.plan(*args), None
    while True:
        if len(plan.fallback) == plan.layers:
            entry = {"precision": "fp8", "refused": "every layer needs bf16 to keep the F1", "fp8_plan": plan.report()}
            return {**entry, **({"first_plan": first} if first else {})}, None, None
        passes, entry = _judged(model, chk, ratio)
        entry = {"precision": "fp8", **entry, "fp8_plan": plan.report(), **({"first_plan": first} if first else {})}
        if passes or plan.strict:
            return _verdict(entry, passes, ratio, model, plan)
        strict = fp8_plan.plan(*args, do_calibrate=False, strict=True)
        if strict.fallback == plan.fallback:  # the same model again: the same refusal
            return _verdict(entry, passes, ratio, model, plan)
        first = {key: entry[key] for key in ("questions", "f1", "f1_fp32", "ratio", "fp8_plan")}
        plan = strict


def _verdict(entry: dict, passes: bool, ratio: float, model, plan):
    """_try's answer: a refused entry says why."""
    if passes:
        return entry, model, plan
    entry["refused"] = (
        f"F1 {entry['f1']:.2f} is {100 * entry['ratio']:.2f} % of fp32's {entry['f1_fp32']:.2f} on "
        f"{entry['questions']:,} questions (< {100 * ratio:g} %){entry.get('note', '')}"
    )
    return entry, None, None


def _judged(model, chk: _Check, ratio: float) -> tuple[bool, dict]:
    """(passes, evidence): the candidate judged on the check, which grows while the verdict is unsure; still
    unsure at its largest, the point estimate decides (F1 ≥ ratio x fp32's, as a full accuracy run would)."""
    logits = fp8_plan.eval_logits(model, chk.data.features, chk.check, chk.budget)
    rounds = []
    while True:
        ref = chk.reference
        mine = fp8_plan.question_f1(chk.scored, logits)
        verdict, margin, se = judge(mine, ref, ratio)
        f1, f1_ref = mean_f1(mine, ref), mean_f1(ref, ref)
        rounds.append(
            {
                "questions": len(ref),
                "f1": round(f1, 4),
                "f1_fp32": round(f1_ref, 4),
                "margin": round(margin, 4),
                "stderr": round(se, 4),
                "verdict": verdict,
            }
        )
        extra = chk.grow() if verdict == "unsure" else []
        if not extra:
            break
        logits.update(fp8_plan.eval_logits(model, chk.data.features, extra, chk.budget))
    passes = settled(verdict, margin, len(ref))
    entry = {**rounds[-1], "ratio": round(f1 / f1_ref, 5) if f1_ref else 0.0, "rounds": rounds}
    note = _note([r["questions"] for r in rounds], verdict)
    if note:
        entry["note"] = f" ({note})"
    return passes, entry


def _note(sizes: list[int], verdict: str) -> str:
    """What the line adds about the check's size: nothing when its first questions decided."""
    if not sizes[-1]:
        return "no questions left to check on: the calibration subset took them all"
    within = f"could not tell within {Z:g} standard errors"
    if verdict != "unsure":
        return f"{sizes[0]:,} {within}" if len(sizes) > 1 else ""
    if len(sizes) > 1:
        return f"{sizes[0]:,} {within}, nor {sizes[-1]:,}: the point estimate decided"
    return f"{sizes[0]:,}, all there are, {within}: the point estimate decided"


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
    return plan_fp8(lambda: build("fp8"), lambda: build("fp32"), data, ratio, **options)


def plan_fp8(
    fp8_model: Callable[[], object],
    fp32_model: Callable[[], object],
    data,
    ratio: float,
    n_calibration: int = 200,
    token_budget: int = 16384,
    max_fallback: int | None = None,
) -> Choice:
    """`--precision fp8` as asked: the fp8 model's static scales calibrated and its fallback planned against the
    fp32 model's answers on the calibration questions. The fp32 model is built, read and dropped before the fp8 one
    is asked for, so the two never share a GPU's memory (a Ray worker passes the fp8 model it already holds)."""
    calibration, _ = fp8_plan.subsets(data.features, 0, n_calibration)
    reference = fp32_model()
    ref_logits = fp8_plan.eval_logits(reference, data.features, calibration, token_budget)
    del reference
    scored, what, _ = scoring_data(data, ref_logits, calibration)
    model = fp8_model()
    plan = fp8_plan.plan(model, scored, calibration, ref_logits, ratio, token_budget, max_fallback)
    line = (
        f"precision fp8 (as asked): {plan.line()}; {what} {plan.f1_fp8:.2f} {plan.keeps()} {100 * ratio:g} % of fp32's "
        f"{plan.f1_fp32:.2f} on the {plan.calibration_questions} calibration questions"
    )
    if plan.verdict == "unsure":
        line += " (an accuracy run decides)"
    return Choice("fp8", line, [], model, plan.report())
