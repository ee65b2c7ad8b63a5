"""Two things no conformance case looks at: summary.csv's `inferred` column (a result filed under another scenario
than the one its log ran) and a model_mapping.json entry whose value is not a benchmark name."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

from support.official import official_errors

from subtool.checker.api import CheckOptions, check_tree
from subtool.checker.report import summary_csv_text

SINGLE = "closed/TeamX/results/box/bert-99/SingleStream"
OFFLINE = "closed/TeamX/results/box/bert-99/Offline"
L31_SERVER = "closed/TeamX/results/dc/llama3.1-8b/Server"
L31_INTERACTIVE = "closed/TeamX/results/dc/llama3.1-8b/Interactive"


def _inferred_column(csv_text: str) -> dict[tuple[str, str, str], str]:
    return {(r["Platform"], r["Model"], r["Scenario"]): r["inferred"] for r in csv.DictReader(io.StringIO(csv_text))}


def _offline_from_singlestream(tree: Path) -> None:
    """An edge system may file its SingleStream run as its Offline result too (the result is then inferred)."""
    shutil.rmtree(tree / OFFLINE)
    shutil.copytree(tree / SINGLE, tree / OFFLINE)


def test_summary_marks_an_offline_result_inferred_from_a_singlestream_run(tree_copy):
    tree = tree_copy("bert_closed_valid")
    _offline_from_singlestream(tree)
    report = check_tree(tree, CheckOptions())
    assert all(r.passed for r in report.results)
    assert _inferred_column(summary_csv_text(report)) == {
        ("box", "bert-99", "Offline"): "1",
        ("box", "bert-99", "SingleStream"): "0",
    }


def test_summary_inferred_column_is_the_official_checkers(tree_copy, official_checker, tmp_path):
    """The official summary writes inferred = 1 whenever the folder's scenario is not the log's (its exception
    for Interactive compares lower-case names, so an Interactive result, whose log says Server, is 1 there too)."""
    tree = tree_copy("bert_closed_valid")
    _offline_from_singlestream(tree)
    llm = tree_copy("llama31_closed_valid")
    (llm / L31_SERVER).rename(llm / L31_INTERACTIVE)
    for one in (tree, llm):
        ours = _inferred_column(summary_csv_text(check_tree(one, CheckOptions())))
        _, output = official_errors(official_checker, one, "v6.1", tmp_path / one.name)
        official = _inferred_column((tmp_path / one.name / "summary_v6.1.csv").read_text())
        assert official and ours == official, output[-3000:]
    assert ours[("dc", "llama3.1-8b", "Interactive")] == "1" and ours[("dc", "llama3.1-8b", "Offline")] == "0"


def test_a_model_mapping_value_that_is_not_a_name_fails_the_submitters_results(tree_copy):
    tree = tree_copy("bert_open_open_mapping")
    mapping = tree / "open" / "TeamX" / "model_mapping.json"
    assert check_tree(tree, CheckOptions()).ok
    mapping.write_text(json.dumps({"my-tiny-model": "bert-99", "my-other-model": ["bert-99"]}))
    report = check_tree(tree, CheckOptions())
    found = [f for f in report.findings if f.rule == "model.mapping_invalid"]
    assert [(f.path, f.severity) for f in found] == [("open/TeamX/model_mapping.json", "error")]
    assert "my-other-model" in found[0].message
    (result,) = report.results
    assert result.mlperf_model == "bert-99"  # the good entry still maps the folder
    assert not result.passed and "model.mapping_invalid" in result.failed
