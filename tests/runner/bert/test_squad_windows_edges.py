"""Which window a context token belongs to when two give it the same context on both sides: the first, as the
reference decides it (a tie happens in the real data set whenever the window length is odd; stride 128)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from subtool.runner.bert.squad import (
    MAX_QUERY_LENGTH,
    SquadExample,
    _best_window,
    convert_examples_to_features,
    window_starts,
)


def test_a_token_with_equal_context_in_two_windows_belongs_to_the_first():
    spans = window_starts(20, 10, stride=3)
    assert spans[:2] == [(0, 10), (3, 10)]
    # token 6: 3 tokens of context on its shorter side in both windows
    assert _best_window(spans, 0, 6) and not _best_window(spans, 1, 6)
    # token 7: more context in the second window (4 against 2)
    assert _best_window(spans, 1, 7) and not _best_window(spans, 0, 7)


class _WordTokenizer:
    """One token per whitespace-separated word (ids by first appearance); [CLS] 1, [SEP] 2."""

    is_fast = False

    def __init__(self):
        self.ids = {"[CLS]": 1, "[SEP]": 2}

    def tokenize(self, text):
        return text.split()

    def convert_tokens_to_ids(self, tokens):
        return [self.ids.setdefault(t, len(self.ids) + 1) for t in tokens]


def test_a_long_question_is_cut_to_max_query_length_tokens():
    question = " ".join(f"q{i}" for i in range(MAX_QUERY_LENGTH + 36))
    example = SquadExample("id", question, [f"c{i}" for i in range(10)], ["c1"], 0)
    features = convert_examples_to_features([example], _WordTokenizer())
    ids, segments = features.input_ids[0], features.segment_ids[0]
    assert ids[0] == 1 and ids[1 + MAX_QUERY_LENGTH] == 2  # [CLS] 64 question tokens [SEP]
    assert int(np.argmax(segments)) == 2 + MAX_QUERY_LENGTH and int(features.seq_lengths[0]) == MAX_QUERY_LENGTH + 13


def test_a_longer_window_outweighs_a_token_or_two_more_context_in_a_shorter_one():
    """The reference's score is the shorter side's context plus 0.01 x the window's length: a 64-token question's
    317-token window beats the 190-token last one for token 223 (93 + 3.17 against 94 + 1.90)."""
    spans = window_starts(318, 317)
    assert spans == [(0, 317), (128, 190)]
    assert _best_window(spans, 0, 223) and not _best_window(spans, 1, 223)
    assert _best_window(spans, 0, 316) and _best_window(spans, 1, 317)  # the last token is in the second only


def test_the_input_mask_covers_exactly_the_sequence():
    example = SquadExample("id", "which one", [f"c{i}" for i in range(10)], ["c1"], 0)
    features = convert_examples_to_features([example], _WordTokenizer())
    assert int(features.input_mask[0].sum()) == int(features.seq_lengths[0]) == 2 + 10 + 3


def test_a_squad_v2_file_or_one_without_questions_is_refused(tmp_path):
    import json

    import pytest

    from subtool.errors import SubtoolError
    from subtool.runner.bert.squad import read_squad_examples

    qa = {"id": "a", "question": "q?", "answers": [{"text": "x", "answer_start": 0}]}
    v2 = {"version": "v2.0", "data": [{"paragraphs": [{"context": "x y", "qas": [{**qa, "is_impossible": True}]}]}]}
    (tmp_path / "v2.json").write_text(json.dumps(v2))
    with pytest.raises(SubtoolError, match="unanswerable questions"):
        read_squad_examples(tmp_path / "v2.json")
    (tmp_path / "none.json").write_text(json.dumps({"data": [{"paragraphs": [{"context": "x y", "qas": []}]}]}))
    with pytest.raises(SubtoolError, match="holds no questions"):
        read_squad_examples(tmp_path / "none.json")


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 3000), st.integers(1, 400), st.integers(1, 300))
def test_the_windows_that_can_hold_a_token_are_the_overlapping_neighbours(n_tokens, max_tokens, stride):
    """Only the windows overlapping window si can hold its tokens, and they are found as neighbours: the best-window
    mask over them is the mask over every window (looking at all for every token was quadratic in the paragraph)."""
    from subtool.runner.bert.squad import _best_window, overlapping_windows, window_starts

    spans = window_starts(n_tokens, max_tokens, stride)
    # the windows at both ends and 40 between: the oracle looks at every window for each, so checking all of up
    # to 3,000 windows was quadratic in the test itself (20 s of the suite)
    ends = set(range(min(10, len(spans)))) | set(range(max(0, len(spans) - 10), len(spans)))
    checked = sorted(ends | set(range(0, len(spans), max(1, len(spans) // 40))))
    for si in checked:
        start, length = spans[si]
        lo, hi = overlapping_windows(spans, si)
        holding = {j for j, (s, n) in enumerate(spans) if s <= start + length - 1 and s + n - 1 >= start}
        assert set(range(lo, hi + 1)) == holding
        for pos in range(start, start + length, max(1, length // 7)):
            assert _best_window(spans[lo : hi + 1], si - lo, pos) == _best_window(spans, si, pos)
