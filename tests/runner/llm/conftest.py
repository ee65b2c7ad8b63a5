"""Small real inputs for the LLM tests: each family's tiny demo checkpoint with a short data set in the
reference's file format (made by the project's own demo generator), and a user.conf that keeps the Offline
performance query short."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("mlperf_loadgen")
pytest.importorskip("rouge_score")

SMALL = 24  # samples in the test data sets


def _assets(tmp_path_factory, name: str):
    from subtool.runner.llm.demo import demo_assets
    from subtool.runner.llm.specs import LLM_SPECS

    return demo_assets(LLM_SPECS[name], cache=tmp_path_factory.getbasetemp() / "llm-assets", sample_count=SMALL)


@pytest.fixture(scope="session")
def llama3_small(tmp_path_factory):
    return _assets(tmp_path_factory, "llama3.1-8b")


@pytest.fixture(scope="session")
def llama2_small(tmp_path_factory):
    return _assets(tmp_path_factory, "llama2-70b-99.9")


@pytest.fixture(scope="session")
def gptj_small(tmp_path_factory):
    return _assets(tmp_path_factory, "gptj-99")


def short_user_conf(path, loadgen_model: str, scenario: str, **settings) -> str:
    """A user.conf whose performance run covers SMALL samples (LoadGen's mlperf.conf would ask for 13,368)."""
    lines = [
        f"{loadgen_model}.{scenario}.performance_sample_count_override = {SMALL}",
        f"{loadgen_model}.{scenario}.min_query_count = {SMALL}",
        f"{loadgen_model}.{scenario}.min_duration = 10",
    ]  # 24 samples always take longer
    lines += [f"{loadgen_model}.{scenario}.{k} = {v}" for k, v in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="session")
def llama3_offline_run(tmp_path_factory, llama3_small):
    """One local-SUT llama3.1-8b Offline run (performance + accuracy) on the small data set: its run directory."""
    from typer.testing import CliRunner

    from subtool.cli import app

    out = tmp_path_factory.mktemp("llama3-offline")
    conf = short_user_conf(out / "user.conf", "llama3_1-8b", "Offline", target_qps=1000)
    res = CliRunner().invoke(
        app,
        [
            "run",
            "--model",
            "llama3.1-8b",
            "--model-path",
            str(llama3_small.model_path),
            "--dataset-path",
            str(llama3_small.dataset_path),
            "--out",
            str(out / "runs"),
            "--user-conf",
            conf,
        ],
    )
    assert res.exit_code == 0, res.output
    return out / "runs/llama3.1-8b/Offline"
