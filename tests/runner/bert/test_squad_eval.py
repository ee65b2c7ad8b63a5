"""The SQuAD v1.1 metric on hand-computed cases, and decoding logits back to answer text."""

from __future__ import annotations

import numpy as np
import pytest

from subtool.runner.bert.squad import SquadExample, convert_examples_to_features
from subtool.runner.bert.squad_eval import (
    best_answers,
    exact_match,
    f1,
    normalize_answer,
    project_to_original,
    squad_v11_scores,
)


def test_normalisation_drops_case_punctuation_articles_and_extra_spaces():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("theater") == "theater"  # 'the' only as a word


def test_exact_match_and_f1_by_hand():
    assert exact_match("the Broncos", "Broncos.") == 1.0
    assert exact_match("Denver Broncos", "Broncos") == 0.0
    # pred {denver, broncos, won}, gold {broncos, won, title}: overlap 2, P=2/3, R=2/3 → F1 2/3
    assert f1("Denver Broncos won", "Broncos won title") == pytest.approx(2 / 3)
    assert f1("nothing here", "Broncos") == 0.0
    # repeated tokens count by multiplicity: pred {a2? no: 'x x y'} vs gold 'x y y' → overlap x1,y1 = 2
    assert f1("x x y", "x y y") == pytest.approx(2 / 3)


def test_scores_take_the_best_ground_truth_and_average_in_percent():
    examples = [
        SquadExample("1", "q", ["w"], ["Denver Broncos", "Broncos"], 0),
        SquadExample("2", "q", ["w"], ["Carolina Panthers"], 0),
    ]
    scores = squad_v11_scores({"1": "Broncos", "2": "Panthers"}, examples)
    assert scores["exact_match"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx((100 + 100 * 2 * (1 * 0.5) / 1.5) / 2)


def test_projection_restores_original_characters():
    assert project_to_original("1895 - 1943", "(1895-1943).") == "1895-1943"
    assert project_to_original("steve smith", "Steve Smith's") == "Steve Smith"
    assert project_to_original("zzz", "Steve") == "Steve"  # cannot align → whole original span


def test_oracle_logits_decode_to_the_ground_truth(tiny_checkpoint, tiny_words):
    """Logits that peak on each answer's tokens must decode to exactly that answer: F1 = EM = 100."""
    from subtool.runner.bert.checkpoint import wordpiece_tokenizer

    tok = wordpiece_tokenizer(tiny_checkpoint / "vocab.txt")
    words = [w.capitalize() + ("." if i % 7 == 6 else "") for i, w in enumerate((tiny_words * 2)[:500])]
    examples, answers = [], []
    for i, (start, length) in enumerate([(3, 2), (100, 1), (420, 3), (480, 4)]):
        text = " ".join(words[start : start + length]).rstrip(".")
        examples.append(SquadExample(f"q{i}", " ".join(tiny_words[10:18]) + "?", words, [text], 0))
        answers.append((start, start + length - 1))
    feats = convert_examples_to_features(examples, tok)
    logits = {}
    for fi in range(len(feats)):
        start_w, end_w = answers[int(feats.example_index[fi])]
        out = np.zeros((384, 2), np.float32)
        pos_start = np.where(feats.token_to_word[fi] == start_w)[0]
        pos_end = np.where(feats.token_to_word[fi] == end_w)[0]
        if len(pos_start) and len(pos_end):
            out[pos_start[0], 0] = 10.0
            out[pos_end[-1], 1] = 10.0
        logits[fi] = out
    preds = best_answers(examples, feats, logits, tok.convert_ids_to_tokens)
    scores = squad_v11_scores(preds, examples)
    assert scores == {"exact_match": 100.0, "f1": 100.0}, preds
