"""Accuracy thresholds at the boundary, metric by metric: a value exactly at the round's threshold passes, 0.01
over passes, 0.01 under fails naming that metric; an upper limit passes exactly at and fails 0.01 above. So a
checker that let any metric pass even a fraction of a point low (or high) fails here. The thresholds come from
the round's rules (reference × fraction), the accuracy lines from the accuracy scripts' formats; the trees are the
conformance cases' real LoadGen trees. The official checker is asked the same at the F1 boundary.

The thresholds are written out here as the rules publish them (reference × fraction), not read from subtool's
round tables: a test that took them from the code under test would move with a wrong threshold."""

from __future__ import annotations

import re
import shutil

import pytest
from support.official import official_errors

from subtool.checker.api import CheckOptions, check_tree

# where each metric's number sits in the accuracy script's line
KEYS = {
    "F1": '"f1": ',
    "ROUGE1": "'rouge1': ",
    "ROUGE2": "'rouge2': ",
    "ROUGEL": "'rougeL': ",
    "ROUGELSUM": "'rougeLsum': ",
    "GEN_LEN": "'gen_len': ",
    "TOKENS_PER_SAMPLE": "'tokens_per_sample': ",
}
CASES = {
    "bert_closed_valid": "bert-99",
    "llama2_closed_valid": "llama2-70b-99.9",
    "llama31_closed_valid": "llama3.1-8b",
}
STEP = 0.01
# closed-division lower limits and upper limits, v6.1 (tools/submission's accuracy targets at b66003e)
LOWER = {
    "bert-99": {"F1": 90.874 * 0.99},
    "llama2-70b-99.9": {
        "ROUGE1": 44.4312 * 0.999,
        "ROUGE2": 22.0352 * 0.999,
        "ROUGEL": 28.6162 * 0.999,
        "TOKENS_PER_SAMPLE": 294.45 * 0.9,
    },
    "llama3.1-8b": {
        "ROUGE1": 38.7792 * 0.99,
        "ROUGE2": 15.9075 * 0.99,
        "ROUGEL": 24.4957 * 0.99,
        "ROUGELSUM": 35.793 * 0.99,
        "GEN_LEN": 8167644 * 0.9,
    },
}
UPPER = {
    "bert-99": {},
    "llama2-70b-99.9": {"TOKENS_PER_SAMPLE": 294.45 * 1.1},
    "llama3.1-8b": {"GEN_LEN": 8167644 * 1.1},
}


def _accuracy_txt(tree, model):
    (path,) = tree.glob(f"closed/*/results/*/{model}/Offline/accuracy/accuracy.txt")
    return path


def _set(path, values: dict[str, float]) -> None:
    text = path.read_text()
    for metric, value in values.items():
        key = KEYS[metric]
        text, n = re.subn(re.escape(key) + r"[0-9.]+", key + repr(value), text, count=1)
        assert n == 1, f"{metric} not in {path}"
    path.write_text(text)


def _accuracy_findings(tree, model) -> list[tuple[str, str]]:
    report = check_tree(tree, CheckOptions(version="v6.1"))
    return [
        (f.rule, f.message)
        for f in report.findings
        if f.rule.startswith("acc.") and f.severity == "error" and f"/{model}/Offline" in f.path
    ]


def _bounds(model):
    return LOWER[model], UPPER[model]


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_metric_at_over_and_just_under_its_threshold(case, tree_copy):
    model = CASES[case]
    tree = tree_copy(case)
    path = _accuracy_txt(tree, model)
    lower, upper = _bounds(model)
    assert lower and set(lower) <= set(KEYS)
    at = {m: v for m, v in lower.items()}
    _set(path, at)
    assert _accuracy_findings(tree, model) == [], "exactly at every threshold must pass"
    _set(path, {m: v + STEP for m, v in lower.items() if m not in upper})
    assert _accuracy_findings(tree, model) == [], "just over every threshold must pass"
    for metric, value in lower.items():
        _set(path, {**at, metric: value - STEP})
        found = _accuracy_findings(tree, model)
        assert [rule for rule, _ in found] == ["acc.below_threshold"], (metric, found)
        assert found[0][1].startswith(f"{metric} ") and "below the v6.1 threshold" in found[0][1]
    _set(path, at)
    for metric, value in upper.items():
        _set(path, {metric: value})
        assert _accuracy_findings(tree, model) == [], f"{metric} exactly at its upper limit must pass"
        _set(path, {metric: value + STEP})
        found = _accuracy_findings(tree, model)
        assert [rule for rule, _ in found] == ["acc.above_upper_limit"], (metric, found)
        _set(path, at)


def test_the_official_checker_draws_the_f1_line_in_the_same_place(tree_copy, official_checker, tmp_path):
    tree = tree_copy("bert_closed_valid")
    path = _accuracy_txt(tree, "bert-99")
    (threshold,) = _bounds("bert-99")[0].values()
    verdicts = {}
    for name, value in (("at", threshold), ("under", threshold - STEP)):
        _set(path, {"F1": value})
        ours = _accuracy_findings(tree, "bert-99")
        errors, _ = official_errors(official_checker, tree, "v6.1", tmp_path / name)
        verdicts[name] = (bool(ours), any("accuracy" in e.lower() and "bert-99" in e for e in errors))
        shutil.rmtree(tmp_path / name / "official_copy_v6.1", ignore_errors=True)
    assert verdicts == {"at": (False, False), "under": (True, True)}, verdicts
