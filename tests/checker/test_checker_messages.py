"""Findings say their numbers as a person reads them and use the article English wants: one test per kind of
message, on the conformance cases' real LoadGen trees, pinning the whole text."""

from __future__ import annotations

import re

import pytest

from subtool.checker.api import CheckOptions, check_tree
from subtool.wording import plain_number, with_article


def _messages(tree, rule: str) -> list[str]:
    return [f.message for f in check_tree(tree, CheckOptions(version="v6.1")).findings if f.rule == rule]


def test_a_threshold_is_written_as_a_whole_number_not_in_e_notation(tree_copy):
    tree = tree_copy("llama31_closed_valid")
    (path,) = tree.glob("closed/*/results/*/llama3.1-8b/Offline/accuracy/accuracy.txt")
    path.write_text(re.sub(r"'gen_len': [0-9.]+", "'gen_len': 7000000", path.read_text(), count=1))
    # v6.1: gen_len ≥ 0.9 × 8167644 = 7350879.6 (it was printed as 7.35088e+06)
    assert _messages(tree, "acc.below_threshold") == ["GEN_LEN 7000000 is below the v6.1 threshold 7350879.6"]


def test_an_offline_run_takes_an(case_trees):
    assert _messages(case_trees["inferred_from_offline"], "perf.inferred_scenario") == [
        "SingleStream cannot be inferred from an Offline run"
    ]


@pytest.mark.parametrize(
    "value, text",
    [
        (7350879.6, "7350879.6"),
        (7.35088e6, "7350880"),
        (8984408.4, "8984408.4"),
        (1234567.891, "1234567.9"),
        (15000000.0, "15000000"),
        (90.874 * 0.99, "89.9653"),
        (0.000123456789, "0.000123457"),
        (1e20, "100000000000000000000"),
        (42, "42"),
        (float("nan"), "nan"),
        (True, "True"),
    ],
)
def test_plain_numbers(value, text):
    assert plain_number(value) == text


def test_articles():
    assert [with_article(w) for w in ("Offline", "Server", "'Interactive'", "SingleStream", "edge")] == [
        "an Offline",
        "a Server",
        "an 'Interactive'",
        "a SingleStream",
        "an edge",
    ]
