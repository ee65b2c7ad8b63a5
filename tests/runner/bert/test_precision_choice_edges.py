"""`--precision auto`'s and the fp8 plan's decisions at their edges, without a model: when a check too close to call
passes (the point estimate at the target, never below it, never on no questions), how far it grows, when a plan
stands, that check questions are never calibration ones, and that a question's F1 is its best over its answers
(hand-built features and logits)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from subtool.runner.bert import fp8_plan, precision_choice
from subtool.runner.bert.fp8_plan import Fp8Plan
from subtool.runner.bert.squad import MAX_SEQ_LENGTH, SquadExample, SquadFeatures
from subtool.runner.bert.workload import BertData

DOC = 3  # [CLS] question [SEP]: each context starts at position 3
WORDS = ["w0", "w1", "w2", "w3"]
BASE = 100  # word i is token BASE + i


def _data(answers: list[list[str]], windows: int = 1):
    """One example per entry of `answers` (its ground truths) over the context w0 … w3, `windows` features each."""
    rows = len(answers) * windows
    n = DOC + len(WORDS) + 1
    ids = np.zeros((rows, MAX_SEQ_LENGTH), np.int32)
    ids[:, DOC : DOC + len(WORDS)] = BASE + np.arange(len(WORDS))
    to_word = np.full((rows, MAX_SEQ_LENGTH), -1, np.int32)
    to_word[:, DOC : DOC + len(WORDS)] = np.arange(len(WORDS))
    is_max = to_word >= 0
    features = SquadFeatures(
        input_ids=ids,
        input_mask=np.repeat((np.arange(MAX_SEQ_LENGTH) < n).astype(np.int8)[None, :], rows, 0),
        segment_ids=np.zeros((rows, MAX_SEQ_LENGTH), np.int8),
        seq_lengths=np.full(rows, n, np.int32),
        example_index=np.repeat(np.arange(len(answers), dtype=np.int32), windows),
        token_to_word=to_word,
        token_is_max_context=is_max,
    )
    examples = [SquadExample(f"q{i}", "which?", WORDS, list(a), 0) for i, a in enumerate(answers)]
    tokenizer = SimpleNamespace(convert_ids_to_tokens=lambda ids: [f"w{i - BASE}" if i >= BASE else "[X]" for i in ids])
    return BertData(examples, features, tokenizer, dataset_sha256="")


def _pointing_at(data, word: int) -> dict[int, np.ndarray]:
    """Logits of every feature that answer the one word `word`."""
    out = {}
    for fi in range(len(data.features)):
        logits = np.zeros((int(data.features.seq_lengths[fi]), 2), np.float32)
        logits[DOC + word] = 10.0
        out[fi] = logits
    return out


@pytest.mark.parametrize(
    "verdict, margin, questions, passes",
    [
        ("pass", 0.5, 300, True),
        ("unsure", 0.0, 4800, True),  # the point estimate exactly at the target keeps it
        ("unsure", 0.01, 120, True),
        ("unsure", -0.01, 4800, False),  # a hair below the target, doubt or not, does not
        ("unsure", 0.0, 0, False),  # no questions: nothing shown
        ("fail", -3.0, 300, False),
    ],
)
def test_a_check_that_cannot_grow_passes_on_the_point_estimate_only_at_or_above_the_target(
    verdict, margin, questions, passes
):
    assert precision_choice.settled(verdict, margin, questions) is passes


def test_an_unsure_check_grows_fourfold_up_to_its_largest():
    assert precision_choice.next_size(300, 4800) == 1200
    assert precision_choice.next_size(1200, 4800) == 4800
    assert precision_choice.next_size(2000, 4800) == 4800
    assert precision_choice.next_size(0, 4800) == 4


def test_a_strict_plan_stands_at_the_target_and_a_plain_one_unless_it_fails():
    at = Fp8Plan(layers=2, f1_fp32=80.0, f1_fp8=0.99 * 80.0, ratio_target=0.99, strict=True)
    assert at.passes
    below = Fp8Plan(layers=2, f1_fp32=80.0, f1_fp8=0.99 * 80.0 - 1e-6, ratio_target=0.99, strict=True)
    assert not below.passes
    assert Fp8Plan(layers=2, verdict="unsure").passes and Fp8Plan(layers=2, verdict="pass").passes
    assert not Fp8Plan(layers=2, verdict="fail").passes


def test_check_questions_are_never_calibration_questions():
    data = _data([["w0"]] * 12, windows=2)  # twelve questions of two windows each
    ex = data.features.example_index
    calibration, check = fp8_plan.subsets(data.features, 6, 4)
    held = {int(ex[i]) for i in calibration}
    assert len(held) == 4 and len({int(ex[i]) for i in check}) == 6
    assert not held & {int(ex[i]) for i in check}
    extra = fp8_plan.more_questions(data.features, calibration + check, 10)
    assert len({int(ex[i]) for i in extra}) == 2  # only two questions were left
    assert not {int(ex[i]) for i in extra} & {int(ex[i]) for i in calibration + check}


def test_a_questions_f1_is_its_best_over_its_ground_truths():
    data = _data([["w3", "w1"], ["w1"], ["w2"]])
    scores = fp8_plan.question_f1(data, _pointing_at(data, 1))
    assert scores == {0: 1.0, 1: 1.0, 2: 0.0}


def test_a_reference_that_answers_nothing_right_is_scored_by_agreement_with_its_own_answers():
    data = _data([["w3"], ["w3"], ["w3"]])
    logits = _pointing_at(data, 1)  # fp32 answers w1 where the data set says w3: its F1 is 0
    scored, what, reference = precision_choice.scoring_data(data, logits, [0, 1, 2])
    assert what.startswith("agreement with fp32's answers") and reference == {0: 1.0, 1: 1.0, 2: 1.0}
    assert [e.answers for e in scored.examples] == [["w1"]] * 3
    right = _data([["w1"], ["w1"], ["w1"]])
    assert precision_choice.scoring_data(right, logits, [0, 1, 2])[1] == "F1"
