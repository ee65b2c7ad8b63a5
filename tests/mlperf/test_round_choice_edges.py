"""The round choice's edges: a benchmark the default round dropped goes to the NEWEST round that lists it (its
seeds are that round's), an unknown --version is refused by every form, folders that are no division of a tree
are not read for models, and the closed division refuses a variant the round does not list."""

from __future__ import annotations

import pytest

from subtool.errors import SubtoolError
from subtool.mlperf.benchmarks import BENCHMARKS
from subtool.mlperf.round_choice import (
    choose_round,
    choose_round_for_runs,
    choose_round_for_tree,
    filed_as,
    rounds_listing,
)


@pytest.mark.parametrize("name", ["retinanet", "mixtral-8x7b", "llama3.1-405b"])
def test_a_dropped_benchmark_goes_to_the_newest_round_that_lists_it(name):
    assert rounds_listing(name) == ["v5.0", "v5.1", "v6.0"]
    choice = choose_round([name], None)
    assert choice.version == "v6.0" and "v6.0 is the latest round that lists it" in choice.reason


def test_an_unknown_version_is_refused_by_every_form(tmp_path):
    for call in (
        lambda: choose_round(["bert-99"], "v9.9"),
        lambda: choose_round_for_tree(tmp_path, "v9.9"),
        lambda: choose_round_for_runs([tmp_path], ["bert-99"], "v9.9"),
    ):
        with pytest.raises(SubtoolError) as err:
            call()
        assert err.value.rule == "round.unknown"


def test_only_division_folders_of_a_tree_name_its_models(tmp_path):
    (tmp_path / "backup/TeamX/results/box1/gptj-99/Offline").mkdir(parents=True)
    (tmp_path / "closed/TeamX/results/box1/bert-99/Offline").mkdir(parents=True)
    assert choose_round_for_tree(tmp_path, None).version == "v6.1"


def test_the_closed_division_refuses_a_variant_the_round_does_not_list():
    with pytest.raises(SubtoolError) as err:
        filed_as(BENCHMARKS["llama2-70b-99"], "v6.1", "closed")
    assert err.value.rule == "package.model_not_in_round" and "--version v6.0" in err.value.hint
    assert filed_as(BENCHMARKS["llama2-70b-99"], "v6.0", "closed") is BENCHMARKS["llama2-70b-99"]


def _submitter(tree, division, name, folders, model):
    sub = tree / division / name
    (sub / "results" / "box1" / model / "Offline").mkdir(parents=True)
    for folder in folders:
        (sub / folder).mkdir()


@pytest.mark.parametrize(
    ("trees", "version", "said"),
    [
        # a v5 tree goes to the latest v5 round, or to the latest v5 round that lists its models
        ([("closed", "A", ("measurements", "code"), "bert-99")], "v5.1", "(closed/A holds measurements/)"),
        ([("open", "A", ("compliance", "measurements"), "gptj-99")], "v5.0", "gptj-99 is not in the v5.1 model list"),
        # a benchmark of v6.x only in a v5 tree: the layout decides, model.unknown says the rest
        ([("closed", "A", ("measurements",), "gpt-oss-120b")], "v5.1", "v5.1 is the latest of them"),
        # v6 trees, trees that show no layout or both: as before
        ([("closed", "A", ("src",), "bert-99")], "v6.1", None),
        ([("closed", "A", ("src",), "llama3.1-405b")], "v6.0", "llama3.1-405b is not in the v6.1 model list"),
        ([("closed", "A", ("src", "measurements"), "bert-99")], "v6.1", None),
        ([("closed", "A", ("src",), "bert-99"), ("closed", "B", ("measurements",), "bert-99")], "v6.1", None),
        ([("closed", "A", ("code",), "gptj-99")], "v5.0", "v5.0 is the latest round that lists it"),
    ],
)
def test_a_tree_is_checked_under_the_latest_round_of_its_layout(tmp_path, trees, version, said):
    for division, name, folders, model in trees:
        _submitter(tmp_path, division, name, folders, model)
    choice = choose_round_for_tree(tmp_path, None)
    assert choice.version == version
    assert choice.reason == said if said is None else said in choice.reason
    assert choose_round_for_tree(tmp_path, "v6.1").version == "v6.1"  # --version always wins
