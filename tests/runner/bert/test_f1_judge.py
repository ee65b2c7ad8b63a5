"""f1_judge: a candidate's per-question F1 against fp32's, paired, with its doubt (pure: no model)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subtool.runner.bert.f1_judge import judge, mean_f1


def test_judge_is_unsure_within_two_standard_errors_and_decides_beyond():
    ref = dict.fromkeys(range(300), 1.0)
    two_lost = {**ref, 0: 0.0, 1: 0.0}  # 99.33 %: 0.33 points over 99 % with a standard error of 0.47
    verdict, margin, se = judge(two_lost, ref, 0.99)
    assert verdict == "unsure" and margin == pytest.approx(100 * (298 / 300 - 0.99)) and 0 < se < margin * 2
    assert judge(ref, ref, 0.99)[0] == "pass"  # every question alike: no doubt at all
    assert judge(ref, ref, 1.0)[0] == "unsure"  # exactly at the target: more cannot hurt
    half = {q: float(q % 2) for q in ref}
    assert judge(half, ref, 0.99)[0] == "fail"
    many = dict.fromkeys(range(4800), 1.0)  # the same two lost in 4,800 questions: 99.96 %, decided
    assert judge({**many, 0: 0.0, 1: 0.0}, many, 0.99)[0] == "pass"
    assert judge({}, {}, 0.99) == ("unsure", 0.0, 0.0)  # nothing to judge on is no pass


def test_judge_is_unsure_on_one_question_whatever_it_scored():
    # one question has no spread to measure doubt by: a standard error of 0 would make its one answer decisive
    assert judge({7: 1.0}, {7: 1.0}, 0.99) == ("unsure", pytest.approx(1.0), 0.0)
    assert judge({7: 0.0}, {7: 1.0}, 0.99) == ("unsure", pytest.approx(-99.0), 0.0)
    assert judge({7: 0.0, 8: 0.0}, {7: 1.0, 8: 1.0}, 0.99)[0] == "fail"  # two alike: no spread, decided


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), max_size=300),
    st.floats(0.9, 1.0),
)
def test_judge_follows_its_margin_and_standard_error_and_never_fails_the_same_answers(pairs, ratio):
    mine = {i: c for i, (c, _) in enumerate(pairs)}
    ref = {i: r for i, (_, r) in enumerate(pairs)}
    verdict, margin, se = judge(mine, ref, ratio)
    assert np.isfinite(margin) and np.isfinite(se) and se >= 0
    if len(pairs) < 2:
        assert verdict == "unsure" and se == 0.0
    else:
        assert {"pass": margin > 2 * se, "fail": margin < -2 * se}.get(verdict, abs(margin) <= max(2 * se, 1e-9))
    assert judge(ref, ref, ratio)[0] != "fail"  # a ratio ≤ 1 of itself is kept


def test_mean_f1_counts_a_question_it_lacks_as_zero():
    assert mean_f1({0: 1.0, 1: 0.5}, {0: 1.0, 1: 1.0, 2: 1.0}) == pytest.approx(50.0)
    assert mean_f1({}, {}) == 0.0
