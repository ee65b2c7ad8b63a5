"""A Ray worker never outlives its node's raylet: a real local cluster in a child process, a real BertWorker actor on
it, the raylet SIGKILLed (the OOM killer's doing on a cluster node, or the driver's local cluster going down), and
the worker's process must end by itself within seconds. Ray's own workers lived on, reparented, holding their
model (on a GPU node, that GPU's memory) until someone found and killed them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install 'mlperf-subtool[ray]')")
pytest.importorskip("torch")
pytest.importorskip("transformers")

DRIVER = r"""
import json, logging, os, sys, time
import numpy as np
import ray
from subtool.runner.bert.ray_worker import BertWorker, ModelInputs

ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level=logging.WARNING)
n = 2
inputs = ModelInputs(np.zeros((n, 384), np.int32), np.ones((n, 384), np.int8), np.zeros((n, 384), np.int8),
                     np.full(n, 8, np.int32))
worker = ray.remote(BertWorker).options(num_cpus=1, max_restarts=0).remote("torch-cpu", sys.argv[1], inputs)
info = ray.get(worker.ready.remote(), timeout=180)
with open(f"/proc/{info['pid']}/stat") as fh:
    parent = int(fh.read().rsplit(")", 1)[1].split()[1])
print(json.dumps({"worker": info["pid"], "raylet": parent, "error": info["error"]}), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _in_session(sid: int) -> list[int]:
    """Every process of the driver's session: the driver, its cluster and the cluster's workers (all started here)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3]) == sid:
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_a_worker_ends_when_its_raylet_dies(tmp_path, tiny_checkpoint):
    project = str(Path(__file__).resolve().parents[3])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [project, os.environ.get("PYTHONPATH")]))}
    log = (tmp_path / "driver.log").open("w")
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tiny_checkpoint)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
        start_new_session=True,  # its session holds everything it starts: cleaned up by that below
    )
    try:
        line = driver.stdout.readline()
        assert line, (tmp_path / "driver.log").read_text()[-2000:]
        started = json.loads(line)
        assert started["error"] is None and _alive(started["worker"])
        assert "raylet" in Path(f"/proc/{started['raylet']}/cmdline").read_bytes().decode()
        os.kill(started["raylet"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _alive(started["worker"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(started["worker"]), "the worker outlived its raylet"
    finally:
        for pid in _in_session(driver.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        driver.wait(timeout=30)
        log.close()
