"""bench/bert_proxy/auto_check.py: the fixed and the growing check rules on per-question F1s, and the bench end to
end on a tiny proxy trained for real."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "bert_proxy"))

import auto_check  # noqa: E402

from subtool.runner.bert.precision_choice import MAX_CHECK, N_CHECK  # noqa: E402


def pool(n: int, lost: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """fp32 right on 70 % of n questions; the candidate the same but wrong on `lost` of those it got right."""
    rng = np.random.default_rng(seed)
    r = (rng.random(n) < 0.7).astype(float)
    c = r.copy()
    c[rng.choice(np.flatnonzero(r), lost, replace=False)] = 0.0
    return c, r


def test_a_clear_check_stops_at_its_first_questions_and_a_close_one_grows_to_the_cap():
    c, r = pool(8000, 0)
    order = np.arange(8000)
    assert auto_check.growing(c, r, 0.99, order) == (True, N_CHECK)  # no question differs: 1 % clear of the target
    assert auto_check.fixed(c, r, 0.99, order) == (True, N_CHECK)
    c, r = pool(8000, 56)  # 1 % of the right ones lost: the ratio is 0.99 to a question
    passes, n = auto_check.growing(c, r, float(c.mean() / r.mean()), order)
    assert n == MAX_CHECK  # never decided within two standard errors: the largest check's point estimate decides
    assert passes == (c[:n].mean() >= c.mean() / r.mean() * r[:n].mean())
    assert auto_check.growing(c[:500], r[:500], 0.999, order[:500])[1] == 500  # capped by the pool too


def test_the_growing_rule_errs_less_than_the_fixed_one_half_a_point_from_the_target():
    c, r = pool(8000, 120, seed=3)  # ~2 % of the right answers lost: ratio ~0.979
    sim = auto_check.simulate(c, r, [-0.5, 0.5], draws=60, seed=5)
    below, above = sim["offsets"]
    assert below["truth"] == "pass" and above["truth"] == "fail" and sim["differing_questions"] == 120
    for row in (below, above):
        assert row["growing_wrong"] <= row["fixed_wrong"] and row["fixed_wrong"] > 0, row
        assert N_CHECK <= row["growing_questions_mean"] <= MAX_CHECK


def test_the_bench_end_to_end_on_a_tiny_proxy(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    out = tmp_path / "auto_check.json"
    auto_check.main(["--out", str(out), "--questions", "600", "--draws", "5", "--offsets=-1,1", "--train-steps", "60"])
    doc = json.loads(out.read_text())
    assert doc["questions"] == 600 and set(doc["f1"]) == {"fp32", "bf16", "fp8"}
    assert doc["rules"] == {"n_check": N_CHECK, "growth": 4, "max_check": MAX_CHECK, "z": 2.0}
    for cand in doc["candidates"].values():
        assert [row["truth"] for row in cand["offsets"]] == ["pass", "fail"]
        assert all(N_CHECK <= row["growing_questions_mean"] <= 600 for row in cand["offsets"])
    assert doc["command"].startswith("python bench/bert_proxy/auto_check.py") and "machine" in doc
