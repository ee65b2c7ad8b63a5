"""Whether a candidate precision keeps a share of fp32's F1, judged on a sample of questions, with its doubt.

Most questions score alike in fp32 and in a candidate, so the two are compared question by question (paired): the
margin is the candidate's F1 less the target share of fp32's over the same questions, and its standard error comes
from the per-question differences. A few hundred questions cannot tell 98.9 % from 99.1 %: within Z standard errors
of zero the verdict is "unsure", and more questions (or a full accuracy run) must decide. Used by fp8's per-layer
fallback on its calibration questions (fp8_plan.py) and by `--precision auto`'s check (precision_choice.py).
"""

from __future__ import annotations

import numpy as np

Z = 2.0  # a verdict stands once the margin is more than Z standard errors from zero

__all__ = ["Z", "judge", "mean_f1"]


def judge(mine: dict[int, float], ref: dict[int, float], ratio: float, z: float = Z) -> tuple[str, float, float]:
    """("pass" | "fail" | "unsure", margin, its standard error): the margin is the candidate's F1 less `ratio` x
    fp32's over the same questions (`ref`'s, each 0 to 1; a question `mine` lacks scores 0), in F1 points.
    Unsure while the margin is within `z` standard errors of zero, and on fewer than two questions, whose spread
    (so whose doubt) cannot be known: one question is no evidence of a share of F1 either way."""
    t = 100.0 * np.array([mine.get(q, 0.0) - ratio * ref[q] for q in sorted(ref)], dtype=np.float64)
    if len(t) < 2:
        return "unsure", float(t.sum()), 0.0
    margin = float(t.mean())
    se = float(t.std(ddof=1) / np.sqrt(len(t)))
    if abs(margin) <= max(z * se, 1e-9):
        return "unsure", margin, se
    return ("pass" if margin > 0 else "fail"), margin, se


def mean_f1(scores: dict[int, float], over: dict[int, float]) -> float:
    """F1 in percent of `scores` over the questions `over` holds (a question `scores` lacks counts 0), summed and
    scaled as squad_v11_scores does it; 0 over no questions."""
    return 100.0 * sum(scores.get(q, 0.0) for q in over) / len(over) if over else 0.0
