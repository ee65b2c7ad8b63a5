"""Every benchmark `subtool run` runs (the catalogue's, subtool/mlperf/benchmarks.py, with a model family) goes
through `subtool run` → `subtool package` → `subtool check`, and the check passes, in a round the benchmark
belongs to (see CASES): the run takes that round's seeds (--version), packaging lays out that round's tree, the
checker holds it to that round's rules.

Fast by construction: bert on the instant SUT (tests/runner/instant_sut.py) over the small SQuAD file, the LLMs on
their tiny demo checkpoints over 24-sample data sets in the reference's formats, with a user.conf that keeps the
Offline query at those 24 samples. Such a data set is the only thing the check waives: the accuracy run covers 24
(or 45) samples where the official set has thousands (acc.dataset_size), the performance run loaded as many
(perf.sample_count), and the run is short (perf.min_duration). Every other finding fails the test.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from subtool.cli import app
from subtool.mlperf.benchmarks import BENCHMARKS, runnable

runner = CliRunner()
SMALL = 24  # samples in the LLMs' data sets
SMALL_DATA_WAIVERS = ("acc.dataset_size", "perf.sample_count", "perf.min_duration")
# Each benchmark in the newest round that lists it; bert-99 (the cheapest run) in every round it belongs to, so
# that each round's layout (v5: measurements/ and compliance/ folders, v6: one results folder) and seeds are
# covered.
CASES = [(b.name, b.rounds[-1]) for b in runnable()] + [("bert-99", v) for v in BENCHMARKS["bert-99"].rounds[:-1]]


def _llm_args(name: str, tmp_path, tmp_path_factory) -> list[str]:
    pytest.importorskip("rouge_score")
    from subtool.runner.llm.demo import demo_assets
    from subtool.runner.llm.specs import LLM_SPECS

    spec = LLM_SPECS[name]
    # the same cache as tests/runner/llm/conftest.py: one set of assets per family and session
    assets = demo_assets(spec, cache=tmp_path_factory.getbasetemp() / "llm-assets", sample_count=SMALL)
    conf = tmp_path / "user.conf"
    m = spec.loadgen_model
    conf.write_text(
        f"{m}.Offline.performance_sample_count_override = {SMALL}\n{m}.Offline.min_query_count = {SMALL}\n"
        f"{m}.Offline.min_duration = 10\n{m}.Offline.target_qps = 1000\n"
    )
    return [
        "--model-path",
        str(assets.model_path),
        "--dataset-path",
        str(assets.dataset_path),
        "--user-conf",
        str(conf),
    ]


def _run_args(name: str, tmp_path, request) -> list[str]:
    if BENCHMARKS[name].family == "bert":
        backend = request.getfixturevalue("instant_backend")
        checkpoint, squad = request.getfixturevalue("tiny_checkpoint"), request.getfixturevalue("small_squad")
        return ["--model-path", str(checkpoint), "--dataset-path", str(squad), "--backend", backend]
    return _llm_args(name, tmp_path, request.getfixturevalue("tmp_path_factory"))


@pytest.mark.parametrize(("name", "version"), CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_run_package_check(name, version, tmp_path, request):
    res = runner.invoke(
        app,
        ["run", "--model", name, "--scenario", "Offline", "--version", version, "--out", str(tmp_path / "runs")]
        + _run_args(name, tmp_path, request),
    )
    assert res.exit_code == 0, res.output
    run_dir = tmp_path / "runs" / name / "Offline"
    assert json.loads((run_dir / "run.json").read_text())["seeds"]["round"] == version

    tree = tmp_path / "tree"
    common = ["--submitter", "TeamX", "--system", "box1", "--division", "open", "--version", version]
    res = runner.invoke(app, ["package", "--from", str(run_dir), *common, "--out", str(tree)])
    assert res.exit_code == 0, res.output

    waive = [arg for rule in SMALL_DATA_WAIVERS for arg in ("--waive", rule)]
    res = runner.invoke(app, ["check", str(tree), "--version", version, "--json", *waive])
    report = json.loads(res.stdout)
    unwaived = sorted({(f["severity"], f["rule"]) for f in report["findings"] if f["severity"] == "error"})
    assert res.exit_code == 0 and unwaived == [], res.output
    assert [(r["model"], r["scenario"]) for r in report["results"]] == [(name, "Offline")]
