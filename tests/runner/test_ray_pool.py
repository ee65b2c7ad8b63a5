"""The generic Ray plumbing every family's Ray SUT uses (runner/ray_pool.py): the exactly-once ledger, the options,
the refusals before a cluster is joined, the end-of-run report, and a pool start that fails without leaving
actors behind."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install 'mlperf-subtool[ray]')")

from subtool.errors import SubtoolError  # noqa: E402
from subtool.runner.ray_pool import (  # noqa: E402
    ExactlyOnceLedger,
    PoolWorker,
    RayPoolConfig,
    niceness_line,
    on_nodes,
    report_run_end,
    start_workers,
    worker_count,
)
from subtool.runner.workload import SutConfig  # noqa: E402


def test_the_ledger_passes_each_sample_on_exactly_once():
    ledger = ExactlyOnceLedger()
    ledger.issue([(10, 0), (11, 1), (12, 2)])
    assert ledger.settle([(11, 1), (10, 0)]) == [0, 1]
    assert ledger.settle([(10, 0), (12, 2), (99, 5)]) == [1]  # 10 again and 99 never issued: dropped
    assert ledger.issued == ledger.answered == 3 and ledger.dropped == 2 and ledger.outstanding == 0
    assert ledger.problems() == ["2 answers for samples already answered or never issued (not passed on)"]
    ledger.issue([(13, 3)])
    assert ledger.problems()[-1] == "1 samples never answered"
    ledger.issue([(13, 3)])
    assert ledger.problems()[0] == "1 query ids issued twice while still open"
    assert ledger.counts() == {"issued": 5, "answered": 3, "dropped": 2, "duplicates": 1}


def test_options_come_from_the_sut_config(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = RayPoolConfig.from_sut_config(SutConfig(backend="ray", batch_size=16))
    assert (cfg.address, cfg.workers, cfg.inner_backend, cfg.chunk, cfg.resource) == (
        "local",
        None,
        "torch-cpu",
        16,
        "CPU",
    )
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    cfg = RayPoolConfig.from_sut_config(SutConfig(extra={"workers": 16, "inner_backend": "torch-cuda"}))
    assert (cfg.address, cfg.workers, cfg.resource, cfg.per_worker) == ("10.0.0.1:6379", 16, "GPU", 1)
    auto = RayPoolConfig.from_sut_config(SutConfig(extra={"inner_backend": "auto"}))
    assert auto.resolved(0).inner_backend == "torch-cpu" and auto.resolved(4).inner_backend == "torch-cuda"
    for extra, message in (
        ({"workers": 0}, "--workers must be"),
        ({"workers": True}, "--workers must be"),
        ({"inner_backend": "tpu"}, "cannot run 'tpu'"),
        ({"depth": 0}, "depth must be"),
        ({"cpus_per_worker": 1.5}, "cpus_per_worker must be"),
        ({"task_timeout_s": -1}, "task_timeout_s must"),
        ({"start_timeout_s": "soon"}, "start_timeout_s must"),
    ):
        with pytest.raises(SubtoolError, match=message):
            RayPoolConfig.from_sut_config(SutConfig(extra=extra))


def test_a_worker_reserves_its_cpus_or_one_gpu():
    assert RayPoolConfig(cpus_per_worker=4).actor_options() == {"num_cpus": 4, "num_gpus": 0}
    assert RayPoolConfig(cpus_per_worker=4).per_worker == 4
    gpu = RayPoolConfig(inner_backend="torch-cuda", cpus_per_worker=4)
    assert gpu.actor_options() == {"num_cpus": 0, "num_gpus": 1} and gpu.per_worker == 1


def _free_port() -> int:
    with socket.socket() as s:  # free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "address, message",
    [
        ("cluster-without-port", "is not auto, local or HOST:PORT"),
        ("127.0.0.1:{port}", "no Ray cluster answers at 127.0.0.1:"),
    ],
)
def test_an_address_nobody_listens_on_is_refused_at_once(address, message):
    # in a fresh interpreter: this one may already be a Ray driver (the suite's ray_cluster), and connect() is
    # asked here what it does for a process that is not
    code = f"""
import time, ray
from subtool.errors import SubtoolError
from subtool.runner.ray_pool import RayPoolConfig, connect
t0 = time.monotonic()
try:
    connect(RayPoolConfig(address={address.format(port=_free_port())!r}))
except SubtoolError as err:
    print("RULE", err.rule, "SECONDS", round(time.monotonic() - t0, 1), "INIT", ray.is_initialized())
    print("MESSAGE", err)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "RULE run.ray_connect" in proc.stdout and "INIT False" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert message in proc.stdout
    assert float(proc.stdout.split("SECONDS ")[1].split()[0]) < 30


def test_the_run_end_names_the_lost_workers_and_raises_the_runs_error(capsys):
    ledger = ExactlyOnceLedger()
    ledger.issue([(1, 0)])
    ledger.settle([(1, 0)])
    report_run_end(["worker 1 (n2, pid 7): no answer within 5 s"], 12, None, ledger)
    assert "completed after losing 1 worker (12 samples re-issued): worker 1 (n2" in capsys.readouterr().err
    with pytest.raises(SubtoolError, match="the Ray SUT failed during the run: all 2 Ray workers are lost"):
        report_run_end([], 0, "all 2 Ray workers are lost", ledger)
    ledger.issue([(2, 1)])
    with pytest.raises(SubtoolError, match="do not match what LoadGen issued: 1 samples never answered"):
        report_run_end([], 0, None, ledger)


def test_workers_are_described_by_node():
    workers = [PoolWorker(0, None, node="b"), PoolWorker(1, None, node="a"), PoolWorker(2, None, node="b")]
    assert on_nodes(workers) == "2 nodes: a, b" and on_nodes(workers[:1]) == "1 node: b"
    assert workers[1].name() == "worker 1 (a, pid 0)"


def test_workers_below_normal_priority_are_said_with_their_nodes():
    workers = [
        PoolWorker(0, None, node="h", address="10.0.0.1", nice=15),
        PoolWorker(1, None, node="h", address="10.0.0.2", nice=0),
        PoolWorker(2, None, node="h", address="10.0.0.1", nice=15),
        PoolWorker(3, None, node="g", address="10.0.0.3", nice=None),  # a worker that could not say
    ]
    line = niceness_line(workers)
    assert line.startswith("2 of 4 workers run at nice 15 (Ray's default) on h 10.0.0.1: ")
    assert "RAY_worker_niceness=0 ray start" in line
    workers[1].nice = 5
    assert "3 of 4 workers run at nice 5/15 on h 10.0.0.1, h 10.0.0.2: " in niceness_line(workers)
    workers[0].nice = workers[2].nice = True  # not a niceness: only the worker at 5 is said
    assert niceness_line(workers).startswith("1 of 4 workers run at nice 5 on h 10.0.0.2: ")
    assert niceness_line([workers[3], PoolWorker(4, None, nice=0)]) is None


def test_a_cluster_started_here_runs_its_workers_at_the_drivers_priority():
    # in a fresh interpreter, as `--ray-address local` runs: connect() starts the cluster, start_workers() its pool
    code = """
import os, ray
from subtool import __version__
from subtool.runner.ray_pool import LOCAL, RayPoolConfig, connect, process_niceness, start_workers

class Probe:
    def ready(self):
        return {"node": "here", "pid": os.getpid(), "nice": process_niceness(), "subtool": __version__, "error": None}

assert connect(RayPoolConfig(address=LOCAL, workers=1))
workers, _ = start_workers(ray, RayPoolConfig(address=LOCAL, workers=1), Probe, ())
print("NICE", [w.nice for w in workers], "DRIVER", process_niceness())
ray.shutdown()
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert "NICE [0] DRIVER 0" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert "workers run at nice" not in proc.stderr


# ----------------------------------------------------------------------------------- on a real cluster
def test_more_workers_than_the_cluster_holds_are_refused(ray_cluster):
    import ray

    with pytest.raises(SubtoolError, match="3 torch-cpu workers need 3 CPU; the Ray cluster has 2 on 1 node") as err:
        worker_count(ray, RayPoolConfig(workers=3))
    assert err.value.rule == "run.ray_resources"


def test_a_pool_that_fails_to_start_leaves_no_actor_behind(ray_cluster, tmp_path):
    import ray

    from subtool.runner.bert.ray_worker import BertWorker, ModelInputs

    inputs = ModelInputs(*(np.zeros((2, 384), np.int32) for _ in range(3)), np.full(2, 8, np.int32))
    args = ("torch-cpu", str(tmp_path / "no-such-model"), inputs)
    with pytest.raises(SubtoolError, match="Ray worker [01] .*model directory not found") as err:
        start_workers(ray, RayPoolConfig(workers=2), BertWorker, args)
    assert err.value.rule == "model.missing"
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0.0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ray.available_resources().get("CPU", 0.0) == 2  # both workers were killed, their CPUs are free
