"""The runner's tests need the model stack; the shared fixtures live in tests/conftest.py."""

import os
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("mlperf_loadgen")


@pytest.fixture
def instant_backend(tmp_path, monkeypatch):
    """bert's backend "instant" (tests/runner/instant_sut.py), in this process and in the benchmark's child
    process (through a sitecustomize on PYTHONPATH), so `subtool run --backend instant` takes the CLI's path."""
    return use_instant_backend(monkeypatch, tmp_path / "site")


def use_instant_backend(monkeypatch, site_dir) -> str:
    """instant_backend's work, for fixtures of a wider scope (with their own pytest.MonkeyPatch.context())."""
    import instant_sut

    from subtool.runner.bert import workload as bert

    for name, factory in instant_sut.BACKENDS.items():
        monkeypatch.setitem(bert.SUT_BACKENDS, name, factory)
    site = instant_sut.sitecustomize(site_dir)
    # prepended, never replacing: the child must import the same subtool as this process (a scratch copy under
    # tests/mutations.py would otherwise run the installed code in the child and hide every mutation there)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    return instant_sut.BACKEND


@pytest.fixture(scope="module")
def instant_test01_run(tmp_path_factory, tiny_checkpoint, small_squad):
    """`subtool run --backend instant --compliance TEST01` of the tiny checkpoint on the small SQuAD file (both
    modes, then TEST01), made once per module: its run directory. Tests that change it work on a copy."""
    from typer.testing import CliRunner

    from subtool.cli import app

    out = tmp_path_factory.mktemp("instant_test01")
    with pytest.MonkeyPatch.context() as mp:  # the instant backend for this run only
        backend = use_instant_backend(mp, out / "site")
        argv = ["run", "--model-path", str(tiny_checkpoint), "--dataset-path", str(small_squad)]
        res = CliRunner().invoke(app, [*argv, "--out", str(out), "--backend", backend, "--compliance", "TEST01"])
    assert res.exit_code == 0, res.output
    return out / "bert-99" / "Offline"


# The Ray backend's tests (bert and llm): one local Ray cluster (2 CPUs), started once and shared. Ray's own start-up
# takes seconds; in-process SUTs join it directly, `subtool run` children through --ray-address HOST:PORT. It is
# configured as `--ray-address local` configures the cluster it starts (workers at nice 0, not Ray's 15: at 15 the
# workers of these tests got a sliver of the CPU whenever other xdist workers were busy, and ran 8x slower).
@pytest.fixture(scope="session")
def ray_cluster():
    """The cluster's GCS address (HOST:PORT); this process is connected to it as a driver."""
    import logging

    import ray

    if ray.is_initialized():
        ray.shutdown()
    from subtool.runner.ray_pool import LOCAL_CLUSTER_CONFIG

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, _system_config=LOCAL_CLUSTER_CONFIG)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def tiny_offline_run(tmp_path_factory, tiny_checkpoint, small_squad):
    """One `subtool run --json` of the tiny checkpoint on the small SQuAD file, both modes, made once per session
    (whichever worker asks first): its run directory (runs/bert-99/Offline). Its Offline query holds the official
    10,833 samples, so it is the costliest run of that checkpoint: test_run_cli reads it, test_bert_full compares
    with its accuracy log, and tests that change it work on a copy."""
    from support.once import once_per_session
    from typer.testing import CliRunner

    from subtool.cli import app

    def build(work):
        runs = work / "runs"
        argv = ["run", "--model-path", str(tiny_checkpoint), "--dataset-path", str(small_squad), "--out", str(runs)]
        res = CliRunner().invoke(app, [*argv, "--json"])
        assert res.exit_code == 0, res.output
        return {"run_dir": str(runs / "bert-99" / "Offline")}

    return Path(once_per_session(tmp_path_factory, "tiny_offline_run", build)["run_dir"])
