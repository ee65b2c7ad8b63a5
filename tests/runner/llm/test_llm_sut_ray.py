"""The LLM benchmarks on Ray workers: `subtool all` on the llama3.1-8b demo over two workers (run → package →
check), Server, a worker killed mid-run, every worker lost, workers that cannot load the model, and the driver's
dispatch and the worker on their own (no cluster)."""

from __future__ import annotations

import json
import shutil
import threading
import time

import numpy as np
import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install 'mlperf-subtool[ray]')")
pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("mlperf_loadgen")

from typer.testing import CliRunner  # noqa: E402

from subtool.cli import app  # noqa: E402
from subtool.errors import SubtoolError  # noqa: E402
from subtool.runner.llm.ray_worker import GeneratorSpec, LlmWorker  # noqa: E402
from subtool.runner.llm.sut_ray import Dispatcher, RayLlmSUT, _Worker  # noqa: E402
from subtool.runner.llm.workload import Generation  # noqa: E402
from subtool.runner.ray_pool import RayPoolConfig  # noqa: E402

runner = CliRunner()
DEMO_TOKENS = 16  # every demo answer (random weights never say EOS first)


@pytest.fixture(scope="package")
def llama3_demo(subtool_cache):
    """The embedded llama3.1-8b demo (13,368 prompts), in the cache `subtool run --demo` children use too."""
    from subtool.runner.llm.workload import LlmWorkload

    workload = LlmWorkload("llama3.1-8b")
    model_path, dataset_path = workload.demo_assets()
    return model_path, dataset_path, workload.load(model_path, dataset_path, None).payload


def demo_spec(model_path, data, batch_size=64) -> GeneratorSpec:
    gen = Generation(
        max_new_tokens=DEMO_TOKENS, min_new_tokens=1, num_beams=1, output_dtype="int32", token_latencies=True
    )
    return GeneratorSpec(
        model_path=str(model_path),
        generation=gen,
        eos_token_id=data.tokenizer.eos_token_id,
        pad_token_id=data.tokenizer.pad_token_id,
        batch_size=batch_size,
        threads=1,
    )


def accuracy_tokens(log) -> dict[int, list[int]]:
    entries = json.loads(log.read_text())
    indices = [e["qsl_idx"] for e in entries]
    assert len(indices) == len(set(indices)), "a sample answered twice"
    return {e["qsl_idx"]: np.frombuffer(bytes.fromhex(e["data"]), dtype=np.int32).tolist() for e in entries}


def run_offline_accuracy(sut, samples: int, outdir):
    import mlperf_loadgen as lg

    from subtool.runner.harness import run_loadgen
    from subtool.runner.llm.workload import LlmQSL

    s = lg.TestSettings()
    s.scenario = lg.TestScenario.Offline
    s.offline_expected_qps = 1000
    s.use_token_latencies = True
    qsl = LlmQSL(samples, samples)
    try:
        run_loadgen(sut.handle, qsl.handle, s, scenario="Offline", mode="accuracy", outdir=outdir)
    finally:
        qsl.destroy()


# ------------------------------------------------------------------------------------------ the CLI
def test_llama3_demo_on_two_workers_passes_package_and_check(ray_cluster, tmp_path, llama3_demo):
    res = runner.invoke(
        app,
        [
            "all",
            "--submitter",
            "TeamX",
            "--model",
            "llama3.1-8b",
            "--demo",
            "--workers",
            "2",
            "--ray-address",
            ray_cluster,
            "--out",
            str(tmp_path),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    outcome = json.loads(res.stdout[res.stdout.index("{") :])
    assert outcome["check_ok"] is True and outcome["run"]["units"] == "Tokens/s"
    run_dir = next(tmp_path.rglob("llama3.1-8b/Offline/run.json")).parent
    record = json.loads((run_dir / "run.json").read_text())
    assert record["backend"] == "ray" and record["precision"] == "fp32"
    spread = record["sut"]  # how the run was spread is part of the record
    assert spread["workers"] == spread["alive"] == 2 and spread["engine"] == "batched"
    assert spread["issued"] == spread["answered"] == 2 * 13368  # performance + accuracy, each once
    assert spread["dropped"] == spread["duplicates"] == spread["reissued"] == 0
    assert all(w["samples"] > 0 and w["tokens"] == DEMO_TOKENS * w["samples"] for w in spread["per_worker"])
    assert [w["nice"] for w in spread["per_worker"]] == [0, 0]  # the suite's cluster is configured as a local one
    # the node the workers ran on described itself (subtool.hostinfo), for the system description
    assert [n["node_ip"] for n in spread["nodes"]] == sorted({w["node_ip"] for w in spread["per_worker"]})
    perf = record["modes"]["performance"]
    assert perf["result_validity"] == "VALID" and abs(perf["result"] / perf["samples_per_second"] - 16) < 0.01
    tokens = accuracy_tokens(run_dir / "accuracy/mlperf_log_accuracy.json")
    assert sorted(tokens) == list(range(13368)) and all(len(t) == DEMO_TOKENS for t in tokens.values())


def test_server_on_two_workers_reports_ttft_and_tpot(ray_cluster, tmp_path, subtool_cache):
    from subtool.runner.llm.demo import demo_assets
    from subtool.runner.llm.specs import LLM_SPECS

    small = demo_assets(LLM_SPECS["llama3.1-8b"], cache=subtool_cache, sample_count=24)
    conf = tmp_path / "user.conf"
    conf.write_text(
        "".join(
            f"llama3_1-8b.Server.{k} = {v}\n"
            for k, v in (
                ("performance_sample_count_override", 24),
                ("min_query_count", 48),
                ("min_duration", 10),
                ("target_qps", 40),
            )
        )
    )
    res = runner.invoke(
        app,
        [
            "run",
            "--model",
            "llama3.1-8b",
            "--scenario",
            "Server",
            "--mode",
            "performance",
            "--model-path",
            str(small.model_path),
            "--dataset-path",
            str(small.dataset_path),
            "--batch-size",
            "8",
            "--workers",
            "2",
            "--ray-address",
            ray_cluster,
            "--user-conf",
            str(conf),
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "llama3.1-8b/Server/run.json").read_text())
    perf = record["modes"]["performance"]
    assert perf["result_field"] == "result_completed_tokens_per_second" and perf["result"] > 0
    assert 0 < perf["ttft_ms"]["p50"] <= perf["ttft_ms"]["p99"] and perf["tpot_ms"]["p99"] > 0
    spread = record["sut"]
    assert spread["issued"] == spread["answered"] >= 48 and spread["capacity"] == 16
    assert all(w["samples"] > 0 for w in spread["per_worker"])  # single-sample queries reach both workers


def test_workers_that_cannot_load_the_model_give_one_clear_error(ray_cluster, tmp_path, llama3_demo):
    model_path, dataset_path, _ = llama3_demo
    broken = tmp_path / "model"
    shutil.copytree(model_path, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # present, the right size class, unreadable
    out = tmp_path / "runs"
    res = runner.invoke(
        app,
        [
            "run",
            "--model",
            "llama3.1-8b",
            "--model-path",
            str(broken),
            "--dataset-path",
            str(dataset_path),
            "--workers",
            "2",
            "--ray-address",
            ray_cluster,
            "--out",
            str(out),
        ],
    )
    assert res.exit_code != 0
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Ray worker" in errors[0] and "[model.load]" in errors[0], res.output
    assert not any(out.rglob("run.json"))


def test_a_precision_the_workers_cannot_run_is_refused_before_any_starts(tmp_path, llama3_demo, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    res = runner.invoke(
        app,
        [
            "run",
            "--model",
            "llama3.1-8b",
            "--demo",
            "--backend",
            "torch-cpu",
            "--precision",
            "fp16",
            "--workers",
            "2",
            "--out",
            str(tmp_path / "runs"),
        ],
    )
    assert res.exit_code != 0, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "[run.precision]" in errors[0], res.output
    assert "ray:" not in res.output  # refused before a cluster or worker started


# ---------------------------------------------------------------------------------- a worker killed
def test_a_worker_killed_mid_run_is_covered_by_the_survivor(ray_cluster, tmp_path, llama3_demo, capfd):
    import ray

    model_path, _, data = llama3_demo
    samples = 3000
    cfg = RayPoolConfig(address=ray_cluster, workers=2, inner_backend="torch-cpu")
    sut = RayLlmSUT(demo_spec(model_path, data), data.prompts[:samples], cfg)
    victim = sut.workers[0]

    def kill_mid_run():
        deadline = time.monotonic() + 60
        while sut.dispatch.ledger.answered < samples // 4 and time.monotonic() < deadline:
            time.sleep(0.005)
        ray.kill(victim.handle, no_restart=True)

    killer = threading.Thread(target=kill_mid_run, daemon=True)
    killer.start()
    run_offline_accuracy(sut, samples, tmp_path)
    killer.join()
    stats = sut.stats()
    sut.stop()  # no error: the survivor finished everything
    assert stats["alive"] == 1 and len(stats["deaths"]) == 1 and stats["deaths"][0].startswith("worker 0 ")
    assert stats["reissued"] > 0 and stats["issued"] == stats["answered"] == samples
    assert stats["dropped"] == stats["duplicates"] == 0
    assert stats["per_worker"][1]["samples"] > stats["per_worker"][0]["samples"]
    tokens = accuracy_tokens(tmp_path / "mlperf_log_accuracy.json")
    assert sorted(tokens) == list(range(samples)) and all(len(t) == DEMO_TOKENS for t in tokens.values())
    err = capfd.readouterr().err
    assert "ray: worker 0" in err and "re-issued to the 1 remaining worker" in err


def test_losing_every_worker_answers_everything_and_stop_raises(ray_cluster, tmp_path, llama3_demo):
    import ray

    model_path, _, data = llama3_demo
    samples = 2000
    cfg = RayPoolConfig(address=ray_cluster, workers=2, inner_backend="torch-cpu")
    sut = RayLlmSUT(demo_spec(model_path, data), data.prompts[:samples], cfg)

    def kill_all():
        deadline = time.monotonic() + 60
        while sut.dispatch.ledger.answered < 200 and time.monotonic() < deadline:
            time.sleep(0.005)
        for w in sut.workers:
            ray.kill(w.handle, no_restart=True)

    killer = threading.Thread(target=kill_all, daemon=True)
    killer.start()
    run_offline_accuracy(sut, samples, tmp_path)  # returns: every open sample answered empty
    killer.join()
    stats = sut.stats()
    assert stats["alive"] == 0 and stats["issued"] == stats["answered"] == samples
    with pytest.raises(SubtoolError, match="all 2 Ray workers are lost") as err:
        sut.stop()
    assert err.value.rule == "run.sut_error"


# ------------------------------------------------------------------------ the worker, in this process
def test_a_worker_streams_first_tokens_and_answers(llama3_demo):
    model_path, _, data = llama3_demo
    worker = LlmWorker(demo_spec(model_path, data, batch_size=4), data.prompts[:40])
    info = worker.ready()
    assert info["error"] is None and info["engine"] == "batched" and info["slots"] == 4
    assert worker.warm_up([0, 1]) > 0 and worker.stats()["samples"] == 0  # warm-up leaves no trace
    worker.submit([(100 + i, i) for i in range(10)])
    worker.submit([(200 + i, 10 + i) for i in range(30)])  # arrives while the first batches run
    firsts, done = {}, {}
    deadline = time.monotonic() + 60
    while len(done) < 40 and time.monotonic() < deadline:
        events = worker.poll(0.5)
        assert events["error"] is None
        for qid, token in events["first"]:
            assert qid not in done and qid not in firsts  # the first token comes first, once
            firsts[qid] = token
        for qid, tokens in events["done"]:
            assert qid not in done
            done[qid] = tokens
    assert sorted(done) == sorted([100 + i for i in range(10)] + [200 + i for i in range(30)])
    assert all(len(t) == DEMO_TOKENS and t[0] == firsts[q] for q, t in done.items())
    assert worker.stats()["samples"] == 40 and worker.stats()["generated_tokens"] == 40 * DEMO_TOKENS
    assert worker.poll(0.01) == {"first": [], "done": [], "error": None}  # nothing twice


def test_a_worker_that_cannot_load_reports_why_as_data(tmp_path, llama3_demo):
    _, _, data = llama3_demo
    worker = LlmWorker(demo_spec(tmp_path / "no-such-model", data), data.prompts[:4])
    info = worker.ready()
    assert info["error"]["message"] and info["engine"] is None and info["pid"] > 0
    with pytest.raises(RuntimeError, match="has no model"):
        worker.submit([(1, 0)])


# -------------------------------------------------------------------------------- dispatch, no Ray
def _dispatcher(workers=2, capacity=4, lengths=(5, 50, 20, 40, 10, 30, 60, 15, 25, 35)):
    pool = [_Worker(i, handle=None) for i in range(workers)]
    return Dispatcher(pool, np.array(lengths), capacity), pool


def test_dispatch_fills_each_worker_to_capacity_longest_prompt_first():
    d, (a, b) = _dispatcher()
    d.issue([(100 + i, i) for i in range(10)])
    sends = d.take()
    sent = [idx for _, items in sends for _, idx in items]
    assert sent == [6, 1, 3, 9, 5, 8, 2, 7]  # by prompt length, 60 … 15
    assert len(a.outstanding) == len(b.outstanding) == 4 and len(d.pending) == 2
    assert d.take() == []  # full: the rest waits in the driver
    answered = d.finish(a, [(100 + 6, [1, 2]), (999, [3])])  # 999: never issued, dropped
    assert answered == [(106, [1, 2])] and a.samples == 1 and a.tokens == 2
    ((worker, items),) = d.take()
    assert worker is a and items == [(104, 4)]  # one freed slot, one more sample


def test_a_short_queue_is_split_between_the_workers_with_room():
    d, (a, b) = _dispatcher(capacity=100)
    d.issue([(100 + i, i) for i in range(10)])
    sends = {w.number: items for w, items in d.take()}
    assert len(sends[0]) == len(sends[1]) == 5 and a.submits == b.submits == 1


def test_a_lost_workers_samples_go_back_first_and_are_answered_once():
    d, (a, b) = _dispatcher()
    d.issue([(100 + i, i) for i in range(10)])
    d.take()
    lost = d.lose(a)
    assert [idx for _, idx in lost] == [6, 1, 3, 9] and not a.alive
    assert [idx for _, idx in list(d.pending)[:4]] == [6, 1, 3, 9] and d.reissued == 4
    assert d.finish(a, [(106, [7])]) == []  # a late answer of the lost worker: dropped
    d.finish(b, [(qid, [1]) for qid in list(b.outstanding)])
    while d.pending:
        for w, items in d.take():
            assert w is b
            d.finish(b, [(qid, [1]) for qid, _ in items])
    assert d.ledger.issued == d.ledger.answered == 10 and d.ledger.problems() == []


def test_with_no_worker_left_drain_closes_every_open_sample_once():
    d, (a,) = _dispatcher(workers=1)
    d.issue([(100 + i, i) for i in range(10)])
    d.take()
    assert len(d.lose(a)) == 4 and d.reissued == 0 and d.take() == []  # nobody to re-issue to
    orphans = d.drain()
    assert sorted(qid for qid, _ in orphans) == list(range(100, 110))
    assert d.drain() == [] and d.ledger.answered == 10 and d.ledger.problems() == []
