"""The LLM accuracy step: token logs, ROUGE as the references compute it, and the accuracy.txt line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from subtool.errors import SubtoolError
from subtool.runner.llm.accuracy import accuracy_line, llm_accuracy, postprocess, read_token_log, rouge_scores
from subtool.runner.llm.specs import LLM_SPECS, accuracy_shortfalls

PREDS = [
    "The cats were sitting on the mats. They purred loudly.",
    "Stocks fell sharply on Monday.",
    "A storm is coming",
    "",
]
REFS = [
    "The cat sat on the mat. It purred.",
    "Stock markets fell on Monday after the news.",
    "Heavy storms are expected this week.",
    "Nothing happened.",
]


def _write_log(path, entries):
    path.write_text(
        json.dumps(
            [{"seq_id": i, "qsl_idx": idx, "data": arr.tobytes().hex().upper()} for i, (idx, arr) in enumerate(entries)]
        )
    )
    return path


def test_rouge_matches_rouge_score_with_the_stemmer():
    from rouge_score import rouge_scorer

    preds, refs = postprocess(PREDS), postprocess(REFS)
    reference = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    expected = {
        k: round(float(np.mean([reference.score(r, p)[k].fmeasure for p, r in zip(preds, refs)])) * 100, 4)
        for k in ("rouge1", "rouge2", "rougeL", "rougeLsum")
    }
    got = rouge_scores(preds, refs)
    assert got == pytest.approx(expected, abs=1e-4)
    # by hand: "stocks fell on monday" shares 4 stemmed unigrams with the 8-word reference
    one = rouge_scores([postprocess(PREDS)[1]], [postprocess(REFS)[1]])
    assert one["rouge1"] == pytest.approx(round(2 * (4 / 5) * (4 / 8) / (4 / 5 + 4 / 8) * 100, 4))


def test_rougelsum_scores_the_prediction_against_the_reference_not_the_other_way():
    """Summary-level LCS is not symmetric: each reference sentence is matched against every predicted sentence.
    Here: "eat" finds "eat", "bob bob bob" finds two bobs (one in "bob cat", two in "eat bob ant bob", union 2),
    3 hits of 4 reference and 7 predicted tokens: F = 18/33. The other way round it would be 8/11."""
    preds, refs = postprocess(["Cat. Bob cat. Eat bob ant bob."]), postprocess(["Eat. Bob bob bob."])
    assert preds == ["Cat.\nBob cat.\nEat bob ant bob."]
    assert rouge_scores(preds, refs)["rougeLsum"] == round(18 / 33 * 100, 4) == 54.5455
    assert rouge_scores(refs, preds)["rougeLsum"] == round(8 / 11 * 100, 4)


def test_sentences_go_on_their_own_lines_for_rougelsum():
    assert postprocess(["  First one. Second one!  "]) == ["First one.\nSecond one!"]


def test_token_log_first_entry_per_sample_wins_and_dtype_is_respected(tmp_path):
    a, b = np.array([5, 6, 7], dtype=np.int32), np.array([9], dtype=np.int32)
    log = _write_log(tmp_path / "acc.json", [(0, a), (1, b), (0, np.array([1], dtype=np.int32))])
    tokens = read_token_log(log, "int32")
    assert tokens[0].tolist() == [5, 6, 7] and tokens[1].tolist() == [9]
    with pytest.raises(SubtoolError) as err:  # 3 int32 = 12 bytes is not a list of int64
        read_token_log(log, "int64")
    assert err.value.rule == "acc.log_parse"


def test_accuracy_refuses_a_log_missing_samples(tmp_path, llama3_small):
    from subtool.runner.llm.datasets import load_tokenizer

    log = _write_log(tmp_path / "acc.json", [(0, np.array([5], dtype=np.int32))])
    with pytest.raises(SubtoolError) as err:
        llm_accuracy(read_token_log(log, "int32"), ["a", "b"], load_tokenizer(llama3_small.model_path), log)
    assert err.value.rule == "acc.incomplete_log" and "1 of 2" in err.value.message


def test_accuracy_line_reads_back_through_the_checker_patterns():
    from subtool.mlperf.round import ACCURACY_PATTERNS

    metrics = {
        "rouge1": 38.9,
        "rouge2": 16.01,
        "rougeL": 24.6,
        "rougeLsum": 35.9,
        "gen_len": 8167650,
        "gen_num": 13368,
        "gen_tok_len": 1711104,
        "tokens_per_sample": 128.0,
    }
    for as_strings in (True, False):
        line = accuracy_line(metrics, values_as_strings=as_strings)
        for key, value in (
            ("ROUGE1", 38.9),
            ("ROUGE2", 16.01),
            ("ROUGEL", 24.6),
            ("ROUGELSUM", 35.9),
            ("GEN_LEN", 8167650),
            ("TOKENS_PER_SAMPLE", 128.0),
        ):
            assert float(ACCURACY_PATTERNS[key].match(line).group(1)) == value
    assert accuracy_line(metrics, values_as_strings=True).startswith("{'rouge1': '38.9', 'rouge2': '16.01'")


def test_closed_division_targets():
    spec = LLM_SPECS["llama3.1-8b"]
    good = {"rouge1": 38.5, "rouge2": 15.8, "rougeL": 24.3, "rougeLsum": 35.5, "gen_len": 8000000}
    assert accuracy_shortfalls(spec, good) == []
    assert accuracy_shortfalls(spec, {**good, "gen_len": 9500000}) == ["gen_len 9500000 > 8984408.4"]  # no exponents
    assert [
        s.split()[0]
        for s in accuracy_shortfalls(LLM_SPECS["llama2-70b-99.9"], {"rouge1": 44.3, "tokens_per_sample": 250})
    ] == ["rouge1", "tokens_per_sample"]
    # the tiny demo on an H200 printed "rouge1 0.4843 < 43.98688799999999" (0.99 x 44.4312)
    short = accuracy_shortfalls(LLM_SPECS["llama2-70b-99"], {"rouge1": 0.4843})
    assert short == ["rouge1 0.4843 < 43.986888"], short
