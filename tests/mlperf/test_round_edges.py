"""How a model folder's name becomes a benchmark (RoundConfig.resolve): a -99.9 variant is never read as its -99
sibling (whose accuracy target is lower), and a folder the round lists only in its tables goes through
model_mapping.json like any other unknown name."""

from __future__ import annotations

import pytest

from subtool.mlperf.round import round_config


@pytest.mark.parametrize(
    "folder, benchmark",
    [
        ("bert-99.9-int8", "bert-99.9"),
        ("my-bert-99.9", "bert-99.9"),
        ("bert-99-int8", "bert-99"),
        ("mobilenet-edge", "resnet"),
        ("efficientnet-lite", "resnet"),
        ("llama3_1-405b-fp8", "llama3.1-405b"),
        ("resnet50", "resnet"),
    ],
)
def test_a_folder_name_resolves_to_its_own_benchmark(folder, benchmark):
    assert round_config("v6.1").resolve(folder) == benchmark


def test_a_benchmark_the_round_does_not_list_goes_through_model_mapping():
    rules = round_config("v6.0")
    assert "dlrm-v2-99" not in rules.model_names  # in the round's tables, not in its model list
    assert rules.resolve("dlrm-v2-99", {"dlrm-v2-99": "dlrm-v2-99.9-custom"}) == "dlrm-v2-99.9-custom"
    assert rules.resolve("bert-99", {"bert-99": "bert-99.9"}) == "bert-99"  # a listed name is itself
