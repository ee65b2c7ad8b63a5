"""Decoding logits to answers at the edges the SQuAD reference decoder sets: a span starts only where its window
gives the token the most context, never ends before it starts, and is at most MAX_ANSWER_LENGTH tokens; and the
paired F1 judge counts a question the candidate lacks as 0 (pure: hand-built features, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from subtool.runner.bert.f1_judge import judge, mean_f1
from subtool.runner.bert.squad import MAX_SEQ_LENGTH, SquadExample, SquadFeatures
from subtool.runner.bert.squad_eval import MAX_ANSWER_LENGTH, best_answers, project_to_original, squad_v11_scores

DOC = 3  # [CLS] question [SEP]: the context starts at position 3
VOCAB_BASE = 100  # word i of the context is token VOCAB_BASE + i


def _one_window(n_words: int, not_max: tuple[int, ...] = ()):
    """One example over a context of `n_words` one-token words, in one window; `not_max`: the positions whose
    tokens have more context in another window (they may not start an answer here)."""
    words = [f"w{i}" for i in range(n_words)]
    n = DOC + n_words + 1
    ids = np.zeros((1, MAX_SEQ_LENGTH), np.int32)
    ids[0, DOC : DOC + n_words] = VOCAB_BASE + np.arange(n_words)
    to_word = np.full((1, MAX_SEQ_LENGTH), -1, np.int32)
    to_word[0, DOC : DOC + n_words] = np.arange(n_words)
    is_max = np.zeros((1, MAX_SEQ_LENGTH), bool)
    is_max[0, DOC : DOC + n_words] = True
    for pos in not_max:
        is_max[0, pos] = False
    features = SquadFeatures(
        input_ids=ids,
        input_mask=(np.arange(MAX_SEQ_LENGTH) < n).astype(np.int8)[None, :],
        segment_ids=np.zeros((1, MAX_SEQ_LENGTH), np.int8),
        seq_lengths=np.array([n], np.int32),
        example_index=np.array([0], np.int32),
        token_to_word=to_word,
        token_is_max_context=is_max,
    )
    example = SquadExample("q0", "which?", words, [words[0]], 0)
    return example, features


def _tokens(ids):
    return [f"w{i - VOCAB_BASE}" if i >= VOCAB_BASE else "[X]" for i in ids]


def _answer(example, features, starts: dict[int, float], ends: dict[int, float]) -> str:
    out = np.zeros((int(features.seq_lengths[0]), 2), np.float32)
    for pos, value in starts.items():
        out[pos, 0] = value
    for pos, value in ends.items():
        out[pos, 1] = value
    return best_answers([example], features, {0: out}, _tokens)["q0"]


def test_an_answer_never_starts_where_another_window_gives_the_token_more_context():
    example, features = _one_window(6, not_max=(DOC,))
    # the highest start logit is on w0, whose best window is another one: the answer starts at w1
    assert _answer(example, features, {DOC: 10.0, DOC + 1: 5.0}, {DOC + 1: 10.0}) == "w1"
    example, features = _one_window(6)
    assert _answer(example, features, {DOC: 10.0, DOC + 1: 5.0}, {DOC + 1: 10.0}) == "w0 w1"


def test_an_answer_never_ends_before_it_starts():
    example, features = _one_window(6)
    # the best end (w0) lies before the best start (w2): the best span that is one is w2 … w3
    assert _answer(example, features, {DOC + 2: 10.0}, {DOC: 10.0, DOC + 3: 1.0}) == "w2 w3"


def test_an_answer_is_at_most_max_answer_length_tokens():
    n = MAX_ANSWER_LENGTH + 5
    example, features = _one_window(n)
    longest, too_long = DOC + MAX_ANSWER_LENGTH - 1, DOC + MAX_ANSWER_LENGTH
    got = _answer(example, features, {DOC: 10.0}, {longest: 5.0, too_long: 10.0})
    assert got.split() == [f"w{i}" for i in range(MAX_ANSWER_LENGTH)]


def test_the_judge_scores_a_question_the_candidate_lacks_as_zero():
    ref = dict.fromkeys(range(300), 1.0)
    answered = {q: 1.0 for q in range(270)}  # 30 questions lost (not answered): 90 % of fp32's F1
    verdict, margin, _ = judge(answered, ref, 0.99)
    assert verdict == "fail" and margin == pytest.approx(100 * (0.9 - 0.99))


def test_the_judges_standard_error_is_the_sample_ones_of_the_paired_differences():
    ref = dict.fromkeys(range(4), 1.0)
    # differences 0, -100, 0, 0 (F1 points): mean -25, sample standard deviation 50, standard error 50 / 2
    verdict, margin, se = judge({0: 1.0, 1: 0.0, 2: 1.0, 3: 1.0}, ref, 1.0)
    assert (verdict, margin, se) == ("unsure", pytest.approx(-25.0), pytest.approx(25.0))


def test_mean_f1_over_no_questions_is_zero_whatever_is_scored():
    assert mean_f1({0: 1.0}, {}) == 0.0


def test_the_best_span_may_start_past_the_highest_two_start_logits():
    """The two highest start logits fall where another window gives their tokens more context: the answer starts at
    the third (the reference keeps the 20 best starts and ends)."""
    example, features = _one_window(4, not_max=(DOC, DOC + 1))
    assert _answer(example, features, {DOC: 10.0, DOC + 1: 9.0, DOC + 2: 8.0}, {DOC + 3: 5.0}) == "w2 w3"


def test_word_pieces_join_back_into_the_word_without_its_punctuation():
    tokens = {100: "un", 101: "##bel", 102: "##ievably", 103: "."}
    example, features = _one_window(1)
    example = SquadExample("q0", "how?", ["Unbelievably."], ["unbelievably"], 0)
    n = DOC + len(tokens) + 1
    features.input_ids[0, DOC : DOC + 4] = list(tokens)
    features.token_to_word[0, DOC : DOC + 4] = 0
    features.token_is_max_context[0, DOC : DOC + 4] = True
    features.seq_lengths[0] = n
    out = np.zeros((n, 2), np.float32)
    out[DOC, 0], out[DOC + 2, 1] = 10.0, 10.0  # "un" … "##ievably": the word, not its full stop
    got = best_answers([example], features, {0: out}, lambda ids: [tokens.get(i, "[X]") for i in ids])
    assert got == {"q0": "Unbelievably"}


def test_projection_strips_accents_to_find_the_answer_in_the_original():
    assert project_to_original("cafe", "Café au lait") == "Café"


def test_projection_that_cannot_align_the_characters_gives_the_whole_span():
    # NFD splits each Hangul syllable into its letters: the tokenized text is longer than the original
    assert project_to_original("abc", "한국 abc") == "한국 abc"


def test_the_scores_average_over_every_question_answered_or_not():
    examples = [SquadExample("1", "q", ["w"], ["Broncos"], 0), SquadExample("2", "q", ["w"], ["Panthers"], 0)]
    assert squad_v11_scores({"1": "Broncos"}, examples) == {"exact_match": 50.0, "f1": 50.0}
    assert squad_v11_scores({}, examples) == {"exact_match": 0.0, "f1": 0.0}
