"""The Ray SUT: LoadGen stays in this process; the model runs on N Ray actors (one per GPU, or N CPU workers).

LoadGen's thread puts the samples it issues into a work queue. Chunks of that queue go to the workers that have
room (each holds at most `depth` chunks: one running, the next already there), so a fast worker simply comes
back for more sooner: pull-based balancing, and no worker hoards a backlog it could die with. The samples of one
issue are ordered longest first (the single Offline query: chunks of similar length pad little, and the short
ones come last so the workers finish together); Server samples go out in arrival order, and whatever arrived
while every worker was busy leaves as one chunk, so chunks grow with the load and the backlog waits here rather
than in the actors' queues (back-pressure). Each reply is answered to LoadGen as soon as it arrives.

When a worker dies (process killed, node lost, out of memory) or stays silent past `task_timeout_s`, the chunks
it held go back to the head of the queue for the survivors and the console says so. A ledger keyed by LoadGen's
response id answers every issued sample exactly once and drops anything else. With no worker left the run fails
with one clear error: every open sample is answered empty (LoadGen never waits forever) and stop() raises.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from subtool import __version__
from subtool.errors import SubtoolError
from subtool.runner.bert.squad import MAX_SEQ_LENGTH

LOCAL = "local"
AUTO = "auto"
CONNECT_PROBE_S = 5.0
FREE_RESOURCES_WAIT_S = 15.0  # what a cluster may need to free the resources of actors just killed


@dataclass(frozen=True)
class RayPoolConfig:
    address: str = LOCAL  # local | auto | HOST:PORT | ray://HOST:PORT
    workers: int | None = None  # default: one per free GPU (torch-cuda) or per free CPU (torch-cpu)
    inner_backend: str = "torch-cpu"  # the model each worker runs (ray_worker.ENGINES), or auto
    cpus_per_worker: int = 1  # torch threads of a CPU worker, and the CPUs it reserves
    depth: int = 2  # chunks a worker holds at once
    chunk: int = 32  # most samples in one request (the batch size)
    start_timeout_s: float = 600.0  # for every worker to load its model
    task_timeout_s: float = 600.0  # a chunk unanswered this long counts as a lost worker

    @classmethod
    def from_sut_config(cls, config) -> RayPoolConfig:
        from subtool.runner.bert.ray_worker import ENGINES

        extra = dict(config.extra or {})
        address = str(extra.get("ray_address") or os.environ.get("RAY_ADDRESS") or LOCAL)
        inner = str(extra.get("inner_backend") or "torch-cpu")
        if inner not in ENGINES and inner != AUTO:
            raise SubtoolError(
                f"the ray backend cannot run {inner!r} on its workers; choose one of {', '.join(ENGINES)}",
                rule="run.backend",
            )
        workers = extra.get("workers")
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise SubtoolError(
                f"--workers must be a whole number of at least 1, not {workers!r}", rule="run.ray_workers"
            )
        numbers = {}
        for key in ("cpus_per_worker", "depth"):
            value = extra.get(key, getattr(cls, key))
            if not isinstance(value, int) or value < 1:
                raise SubtoolError(f"{key} must be a whole number of at least 1, not {value!r}", rule="run.ray")
            numbers[key] = value
        for key in ("start_timeout_s", "task_timeout_s"):
            value = extra.get(key, getattr(cls, key))
            if not isinstance(value, (int, float)) or value <= 0:
                raise SubtoolError(f"{key} must be a positive number of seconds, not {value!r}", rule="run.ray")
            numbers[key] = float(value)
        return cls(
            address=address, workers=workers, inner_backend=inner, chunk=max(1, int(config.batch_size)), **numbers
        )

    @property
    def resource(self) -> str:
        from subtool.runner.bert.ray_worker import ENGINES

        return ENGINES[self.inner_backend][2] if self.inner_backend != AUTO else "CPU"

    def resolved(self, cluster_gpus: float) -> RayPoolConfig:
        """`auto` workers: torch-cuda when the cluster has GPUs (wherever they are), else torch-cpu."""
        if self.inner_backend != AUTO:
            return self
        import dataclasses

        return dataclasses.replace(self, inner_backend="torch-cuda" if cluster_gpus >= 1 else "torch-cpu")

    @property
    def per_worker(self) -> int:
        return self.cpus_per_worker if self.resource == "CPU" else 1


def _say(line: str) -> None:
    print(f"ray: {line}", file=sys.stderr, flush=True)


def _probe(address: str) -> None:
    """Refuse an address nobody listens on at once: Ray itself retries such an address for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise SubtoolError(f"--ray-address {address!r} is not auto, local or HOST:PORT", rule="run.ray_connect")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_PROBE_S):
            pass
    except OSError as exc:
        raise SubtoolError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc})",
            rule="run.ray_connect",
            hint="start one with `ray start --head --port=6379` (and `ray start "
            "--address=HEAD:6379` on every other node), or use --ray-address local for a "
            "cluster on this machine only",
        ) from None


def connect(cfg: RayPoolConfig) -> bool:
    """Join or start the cluster; True when this call started the connection (stop() then ends it)."""
    import ray

    if ray.is_initialized():
        return False
    quiet = dict(logging_level=logging.WARNING, log_to_driver=True)
    if cfg.address == LOCAL:
        cpus = os.cpu_count() or 1
        need = (cfg.workers or 0) * cfg.per_worker if cfg.resource == "CPU" else 0
        # more CPU workers than cores is allowed on a local cluster (a scaling measurement asks for it)
        ray.init(address="local", num_cpus=max(cpus, need), include_dashboard=False, **quiet)
        return True
    if cfg.address != "auto" and not cfg.address.startswith("ray://"):
        _probe(cfg.address)
    try:
        ray.init(address=cfg.address, **quiet)
    except ConnectionError as exc:
        what = (
            "no Ray cluster runs on this node (--ray-address auto joins one started here with `ray start`)"
            if cfg.address == "auto"
            else f"cannot join the Ray cluster at {cfg.address}: {str(exc).splitlines()[0]}"
        )
        raise SubtoolError(
            what,
            rule="run.ray_connect",
            hint="start one with `ray start --head` on this or another node, set RAY_ADDRESS, "
            "or use --ray-address local",
        ) from None
    except Exception as exc:  # ray.exceptions.AuthenticationError and friends: name them, no traceback
        raise SubtoolError(
            f"cannot join the Ray cluster at {cfg.address}: {exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}",
            rule="run.ray_connect",
            hint="every node and this process need the same Ray version and, with token "
            "authentication, the same token (RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)",
        ) from None
    return True


def _loss_errors() -> tuple:
    """Errors that mean the worker (or its node) is gone, not that the model failed on the input."""
    import ray.exceptions as rex

    return (
        rex.RayActorError,
        rex.WorkerCrashedError,
        rex.NodeDiedError,
        rex.ObjectLostError,
        rex.OutOfMemoryError,
        rex.LocalRayletDiedError,
    )


class ExactlyOnceLedger:
    """LoadGen response ids issued and not yet answered. LoadGen hangs on a sample never answered and corrupts
    its log on one answered twice, so only `settle`'s survivors reach QuerySamplesComplete."""

    def __init__(self):
        self._open: dict[int, int] = {}
        self.issued = 0
        self.answered = 0
        self.duplicates = 0  # ids issued again while still open
        self.dropped = 0  # answers for ids not open (already answered, or never issued)

    def issue(self, items) -> None:
        for qid, idx in items:
            if qid in self._open:
                self.duplicates += 1
            self._open[qid] = idx
            self.issued += 1

    def settle(self, items) -> list[int]:
        """Close these (qid, index) samples; positions of the ones that were open, in order."""
        keep = []
        for pos, (qid, _) in enumerate(items):
            if self._open.pop(qid, None) is None:
                self.dropped += 1
            else:
                keep.append(pos)
                self.answered += 1
        return keep

    @property
    def outstanding(self) -> int:
        return len(self._open)

    def problems(self) -> list[str]:
        out = []
        if self.duplicates:
            out.append(f"{self.duplicates} query ids issued twice while still open")
        if self.dropped:
            out.append(f"{self.dropped} answers for samples already answered or never issued (not passed on)")
        if self._open:
            out.append(f"{len(self._open)} samples never answered")
        return out


def worker_count(ray, cfg: RayPoolConfig) -> int:
    """How many workers to start: --workers, or one per free GPU/CPU; refused when the cluster cannot hold them."""
    kind, per = cfg.resource, cfg.per_worker
    total = ray.cluster_resources().get(kind, 0.0)
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    count = cfg.workers or int(ray.available_resources().get(kind, 0.0) // per)
    if count < 1:
        raise SubtoolError(
            f"the Ray cluster has no free {kind} for a {cfg.inner_backend} worker "
            f"({total:g} in all on {nodes} node{'s' if nodes != 1 else ''})",
            rule="run.ray_resources",
            hint="start the worker nodes with `ray start --address=HEAD:6379`"
            + (" on machines with GPUs" if kind == "GPU" else ""),
        )
    if count * per > total:
        most = int(total // per)
        raise SubtoolError(
            f"{count} {cfg.inner_backend} workers need {count * per} {kind}; the Ray cluster "
            f"has {total:g} on {nodes} node{'s' if nodes != 1 else ''}",
            rule="run.ray_resources",
            hint=(f"ask for at most {most} workers, or add" if most else "add")
            + " nodes with `ray start --address=HEAD:6379`"
            + (
                " (GPU workers need nodes where Ray sees GPUs; --backend torch-cpu runs on CPUs)"
                if kind == "GPU" and not most
                else ""
            ),
        )
    deadline = time.monotonic() + FREE_RESOURCES_WAIT_S
    while ray.available_resources().get(kind, 0.0) < count * per:
        if time.monotonic() > deadline:
            free = ray.available_resources().get(kind, 0.0)
            raise SubtoolError(
                f"{count} {cfg.inner_backend} workers need {count * per} {kind}; only "
                f"{free:g} of the cluster's {total:g} are free (other Ray jobs hold the rest)",
                rule="run.ray_resources",
                hint="wait for those jobs or ask for fewer workers",
            )
        time.sleep(0.2)
    return count


def await_ready(ray, cfg: RayPoolConfig, workers: list) -> list[dict]:
    """Wait for every worker's `ready()`; the first setup failure (or version mismatch) is one clear error.
    Each worker's node and pid are filled in; the ready() answers come back in worker order."""
    pending = {w.handle.ready.remote(): w for w in workers}
    answers = {}
    deadline = time.monotonic() + cfg.start_timeout_s
    while pending:
        left = deadline - time.monotonic()
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, left))
        if not ready:
            raise SubtoolError(
                f"{len(pending)} of {len(workers)} Ray workers did not start within {cfg.start_timeout_s:g} s",
                rule="run.ray_start",
                hint="see `ray status` for pending resources; a large model may need a longer start_timeout_s",
            )
        worker = pending.pop(ready[0])
        try:
            info = ray.get(ready[0])
        except Exception as exc:
            raise SubtoolError(
                f"Ray worker {worker.number} died while starting: {exc.__class__.__name__}: {_first_line(exc)}",
                rule="run.ray_start",
                hint="every node needs subtool and its dependencies installed (the same versions as this one)",
            ) from None
        worker.node, worker.pid = info["node"], info["pid"]
        if info.get("subtool") != __version__:
            raise SubtoolError(
                f"Ray worker {worker.number} on {worker.node} runs subtool "
                f"{info.get('subtool')}, this process {__version__}",
                rule="run.ray_start",
                hint="install the same subtool on every node (or run them all from one container image)",
            )
        err = info["error"]
        if err:
            where = f"on {worker.node}: " if cfg.address != LOCAL else ""
            raise SubtoolError(
                f"Ray worker {worker.number} {where}{err['message']}",
                path=err.get("path"),
                rule=err.get("rule") or "run.ray_start",
                hint=err.get("hint"),
            )
        answers[worker.number] = info
    return [answers[w.number] for w in workers]


@dataclass
class _Worker:
    number: int
    handle: object
    node: str = "?"
    pid: int = 0
    alive: bool = True
    inflight: int = 0
    samples: int = 0
    chunks: int = 0

    def name(self) -> str:
        return f"worker {self.number} ({self.node}, pid {self.pid})"


@dataclass
class _Task:
    worker: _Worker
    items: list  # [(qid, qsl index)]
    future: object
    sent: float = field(default_factory=time.monotonic)


class RayBertSUT:
    """BERT's LoadGen SUT over a pool of Ray workers (ray_worker.BertWorker)."""

    def __init__(self, model_path, features, cfg: RayPoolConfig, precision: str = "fp32", threads: int | None = None):
        import mlperf_loadgen as lg
        import ray

        from subtool.runner.bert.ray_worker import BertWorker, ModelInputs

        self.lg = lg
        self.ray = ray
        self.cfg = cfg
        self.lengths = np.asarray(features.seq_lengths)
        self.ledger = ExactlyOnceLedger()
        self.deaths: list[str] = []
        self.reissued = 0
        self._cond = threading.Condition()
        self._pending: deque = deque()
        self._inflight: dict = {}  # ObjectRef → _Task
        self._done: queue.Queue = queue.Queue()
        self._error: str | None = None
        self._owns = connect(cfg)
        self.workers: list[_Worker] = []
        try:
            if cfg.inner_backend == AUTO:
                self.cfg = cfg = cfg.resolved(ray.cluster_resources().get("GPU", 0.0))
                _say(f"workers run {cfg.inner_backend} (auto)")
            if precision == "auto":
                from subtool.runner.bert.workload import GPU_PRECISION

                precision = GPU_PRECISION if cfg.inner_backend == "torch-cuda" else "fp32"
            self.precision = precision
            check_precision(cfg.inner_backend, precision)
            count = worker_count(ray, cfg)
            threads = threads or (cfg.cpus_per_worker if cfg.resource == "CPU" else None)
            opts = (
                {"num_cpus": cfg.cpus_per_worker, "num_gpus": 0}
                if cfg.resource == "CPU"
                else {"num_cpus": 0, "num_gpus": 1}
            )
            actor = ray.remote(BertWorker).options(max_restarts=0, max_task_retries=0, **opts)
            inputs = ray.put(ModelInputs.from_features(features))
            handles = [
                actor.remote(cfg.inner_backend, str(Path(model_path).resolve()), inputs, precision, cfg.chunk, threads)
                for _ in range(count)
            ]
            self.workers = [_Worker(i, h) for i, h in enumerate(handles)]
            await_ready(ray, cfg, self.workers)
        except BaseException:
            self._release()
            raise
        nodes = sorted({w.node for w in self.workers})
        _say(
            f"{len(self.workers)} workers ({cfg.inner_backend}, {cfg.per_worker} {cfg.resource} each) on "
            f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}: {', '.join(nodes)}"
        )
        self._collector = threading.Thread(target=self._collect, name="subtool-ray-collect", daemon=True)
        self._collector.start()
        self.handle = lg.ConstructSUT(self.issue_queries, self.flush_queries)

    # ------------------------------------------------------------------------------------ LoadGen side
    def issue_queries(self, query_samples) -> None:
        items = sorted(((qs.id, qs.index) for qs in query_samples), key=lambda s: (-int(self.lengths[s[1]]), s[1]))
        with self._cond:
            self.ledger.issue(items)
            if self._error is None:
                self._pending.extend(items)
                self._dispatch_locked()
                return
            answer_now = self.ledger.settle(items)
        self._complete_empty([items[p] for p in answer_now])

    def flush_queries(self) -> None:
        pass

    # ----------------------------------------------------------------------------------------- dispatch
    def _dispatch_locked(self) -> None:
        depth = self.cfg.depth
        while self._pending:
            room = [w for w in self.workers if w.alive and w.inflight < depth]
            if not room:
                return
            worker = min(room, key=lambda w: (w.inflight, w.samples))
            free = sum(depth - w.inflight for w in room)
            n = min(self.cfg.chunk, len(self._pending), max(1, math.ceil(len(self._pending) / free)))
            items = [self._pending.popleft() for _ in range(n)]
            ref = worker.handle.infer.remote([idx for _, idx in items])
            task = _Task(worker, items, ref.future())
            self._inflight[ref] = task
            worker.inflight += 1
            worker.chunks += 1
            task.future.add_done_callback(lambda _f, ref=ref: self._done.put(ref))

    # ---------------------------------------------------------------------------------------- collector
    def _collect(self) -> None:
        while True:
            try:
                ref = self._done.get(timeout=1.0)
            except queue.Empty:
                self._check_overdue()
                continue
            if ref is None:
                return
            self._finish(ref)
            self._check_overdue()

    def _finish(self, ref) -> None:
        with self._cond:
            task = self._inflight.pop(ref, None)
            if task is None:
                return  # its worker was already written off; the chunk went elsewhere
            task.worker.inflight -= 1
        try:
            logits = task.future.result()
        except _loss_errors() as exc:
            self._lose(task.worker, f"{exc.__class__.__name__}", also=[task])
            return
        except Exception as exc:
            self._fail(
                f"{task.worker.name()} failed on a chunk of {len(task.items)} samples: "
                f"{exc.__class__.__name__}: {_first_line(exc)}",
                also=[task],
            )
            return
        with self._cond:
            keep = self.ledger.settle(task.items)
            task.worker.samples += len(keep)
            self._dispatch_locked()
        full = np.zeros((len(keep), MAX_SEQ_LENGTH, 2), dtype=np.float32)  # the reply stops at its longest
        full[:, : logits.shape[1]] = logits[keep]
        responses = []
        for row, pos in enumerate(keep):
            responses.append(self.lg.QuerySampleResponse(task.items[pos][0], full[row].ctypes.data, full[row].nbytes))
        if responses:
            self.lg.QuerySamplesComplete(responses)

    def _check_overdue(self) -> None:
        limit = self.cfg.task_timeout_s
        now = time.monotonic()
        with self._cond:
            late = {t.worker.number: t.worker for t in self._inflight.values() if now - t.sent > limit}
        for worker in late.values():
            self._lose(worker, f"no answer within {limit:g} s")

    def _lose(self, worker: _Worker, why: str, also: list | None = None) -> None:
        """Write a worker off and give its chunks (the one that failed plus any still in flight) to the others."""
        try:
            self.ray.kill(worker.handle, no_restart=True)  # a worker written off must never answer late
        except Exception:  # already gone
            pass
        with self._cond:
            tasks = list(also or [])
            for ref in [r for r, t in self._inflight.items() if t.worker is worker]:
                tasks.append(self._inflight.pop(ref))
            items = [item for t in tasks for item in t.items]
            first = worker.alive
            worker.alive = False
            worker.inflight = 0
            survivors = sum(1 for w in self.workers if w.alive)
            if self._error is None and survivors:
                self._pending.extendleft(reversed(items))
                self.reissued += len(items)
                if first:
                    self.deaths.append(f"{worker.name()}: {why}")
                self._dispatch_locked()
                orphans = None
            else:
                orphans = items
        if orphans is None:
            if first or items:
                _say(
                    f"{worker.name()} lost ({why}); {len(items)} in-flight samples re-issued to the "
                    f"{survivors} remaining worker{'s' if survivors != 1 else ''}"
                )
            return
        if first:
            self.deaths.append(f"{worker.name()}: {why}")
        self._fail(f"all {len(self.workers)} Ray workers are lost (the last: {worker.name()}, {why})", orphans=orphans)

    def _fail(self, message: str, also: list | None = None, orphans: list | None = None) -> None:
        """Stop computing: answer every open sample empty so LoadGen finishes, and keep the error for stop()."""
        with self._cond:
            first = self._error is None
            if first:
                self._error = message
            items = list(orphans or []) + [item for t in (also or []) for item in t.items]
            for ref in list(self._inflight):
                items.extend(self._inflight.pop(ref).items)
            items.extend(self._pending)
            self._pending.clear()
            keep = self.ledger.settle(items)
        if first:
            _say(f"{message}; the run stops (every open sample is answered empty and the run reports an error)")
        self._complete_empty([items[p] for p in keep])

    def _complete_empty(self, items) -> None:
        if items:
            self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(qid, 0, 0) for qid, _ in items])

    # -------------------------------------------------------------------------------------------- end
    def stats(self) -> dict:
        with self._cond:
            return {
                "workers": len(self.workers),
                "alive": sum(1 for w in self.workers if w.alive),
                "per_worker": [
                    {"node": w.node, "samples": w.samples, "chunks": w.chunks, "alive": w.alive} for w in self.workers
                ],
                "issued": self.ledger.issued,
                "answered": self.ledger.answered,
                "dropped": self.ledger.dropped,
                "duplicates": self.ledger.duplicates,
                "reissued": self.reissued,
                "deaths": list(self.deaths),
                "error": self._error,
            }

    def _release(self) -> None:
        release_workers(self.ray, self.workers, self._owns)
        self._owns = False

    def stop(self) -> None:
        self._done.put(None)
        self._collector.join()
        self.lg.DestroySUT(self.handle)
        self._release()
        report_run_end(self.deaths, self.reissued, self._error, self.ledger)


def release_workers(ray, workers, owns_ray: bool) -> None:
    """Kill the pool's actors, and shut Ray down if this process started it."""
    for w in workers:
        try:
            ray.kill(w.handle, no_restart=True)
        except Exception:  # already gone
            pass
    if owns_ray:
        ray.shutdown()


def report_run_end(deaths: list[str], reissued: int, error: str | None, ledger: ExactlyOnceLedger) -> None:
    """After a Ray run: say which workers were lost, then raise the run's error or a mismatch with LoadGen."""
    if deaths and error is None:
        _say(
            f"the run completed after losing {len(deaths)} worker{'s' if len(deaths) != 1 else ''}"
            f" ({reissued} samples re-issued): " + "; ".join(deaths)
        )
    if error is not None:
        raise SubtoolError(
            f"the Ray SUT failed during the run: {error}",
            rule="run.sut_error",
            hint="see the `ray:` lines above; `ray status` and the Ray logs on the node "
            "(/tmp/ray/session_latest/logs) say why a worker died",
        )
    problems = ledger.problems()
    if problems:
        raise SubtoolError(
            "the Ray SUT's answers do not match what LoadGen issued: " + "; ".join(problems), rule="run.sut_error"
        )


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    text = str(cause if isinstance(cause, BaseException) else exc).strip()
    return text.splitlines()[0] if text else ""


def require_ray() -> None:
    """One clear line when the ray backend is asked for without Ray installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise SubtoolError(
            "the ray backend needs Ray, which is not installed",
            rule="run.backend",
            hint="pip install 'mlperf-subtool[ray]' (or pip install 'ray>=2.9') on every node",
        ) from None


def make_ray_sut(model_path, features, config) -> RayBertSUT:
    """SUT_BACKENDS factory: SutConfig.extra holds ray_address, workers and inner_backend (default torch-cpu)."""
    require_ray()
    cfg = RayPoolConfig.from_sut_config(config)
    if cfg.inner_backend != AUTO and config.precision != "auto":
        check_precision(cfg.inner_backend, config.precision)  # before any cluster starts
    return RayBertSUT(model_path, features, cfg, precision=config.precision, threads=config.threads)


def check_precision(inner: str, precision: str) -> None:
    if inner == "torch-cpu" and precision != "fp32":
        raise SubtoolError(
            f"precision {precision!r} is not supported by torch-cpu workers",
            rule="run.precision",
            hint="use --precision fp32, or --backend torch-cuda workers",
        )
    if inner == "torch-cuda":
        from subtool.runner.bert.sut_cuda import check_request

        check_request(precision, device="cpu")  # the precision only: this node may have no GPU
