"""Catalogue helpers packaging and fetch lean on: the accuracy line for missing metrics, a custom model spec with
spaces, the benchmarks a total sample count points to, an accuracy line that is not the file's first, and the
reason a data set is not fetched."""

from __future__ import annotations

import json

import pytest

from subtool.errors import SubtoolError
from subtool.mlperf.assets import not_served
from subtool.mlperf.benchmarks import (
    BENCHMARKS,
    accuracy_line_ok,
    find_by_dataset_size,
    format_accuracy_line,
    split_model,
)

BERT = BENCHMARKS["bert-99"]


def test_the_bert_accuracy_line_needs_every_metric_and_writes_floats():
    with pytest.raises(SubtoolError) as err:
        format_accuracy_line(BERT, {"f1": 90.9})
    assert err.value.rule == "import.accuracy_missing" and "exact_match" in err.value.message
    line = format_accuracy_line(BERT, {"exact_match": 83, "f1": 91})
    assert line == '{"exact_match": 83.0, "f1": 91.0}' and json.loads(line)["f1"] == 91.0


def test_the_accuracy_line_may_follow_other_output():
    text = "reading 10833 features\n" + format_accuracy_line(BERT, {"exact_match": 83, "f1": 91}) + "\nhash=ab12\n"
    assert accuracy_line_ok(BERT, text)
    assert not accuracy_line_ok(BERT, "reading 10833 features\nhash=ab12\n")


@pytest.mark.parametrize(
    "spec, parts",
    [(" my-bert = bert-99 ", ("my-bert", "bert-99")), ("bert-99 ", ("bert-99", "bert-99")), ("a=b=c", ("a", "b=c"))],
)
def test_a_model_spec_is_split_and_trimmed(spec, parts):
    assert split_model(spec) == parts


def test_a_total_sample_count_names_the_benchmarks_of_that_data_set():
    assert [b.name for b in find_by_dataset_size(50000)] == ["resnet"]  # its performance count is 1024
    assert {b.name for b in find_by_dataset_size(10833)} == {"bert-99", "bert-99.9"}
    assert find_by_dataset_size(1024) == []


def test_each_gptj_variant_says_why_its_data_set_is_not_fetched():
    for name in ("gptj-99", "gptj-99.9"):
        assert "download_cnndm.py" in not_served(name, "dataset")
        assert not_served(name, "model") is None
    assert not_served("bert-99", "dataset") is None
