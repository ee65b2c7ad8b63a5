"""BERT's Ray SUT: LoadGen stays in this process; the model runs on N Ray actors (one per GPU, or N CPU workers).

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

The cluster, the worker count, the ledger and the release are the generic part (runner/ray_pool.py); what a
worker computes is ray_worker.py.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from subtool.errors import SubtoolError
from subtool.runner import loadgen_watch
from subtool.runner.bert.squad import MAX_SEQ_LENGTH
from subtool.runner.ray_pool import (
    AUTO,
    ExactlyOnceLedger,
    PoolWorker,
    RayPoolConfig,
    connect,
    first_line,
    kill_worker,
    loss_errors,
    node_descriptions,
    on_nodes,
    release_workers,
    report_run_end,
    require_ray,
    resolve_auto,
    say,
    start_workers,
)
from subtool.runner.workload import SutFailure


@dataclass
class _Worker(PoolWorker):
    inflight: int = 0
    samples: int = 0
    chunks: int = 0


@dataclass
class _Task:
    worker: _Worker
    items: list  # [(qid, qsl index)]
    future: object
    sent: float = field(default_factory=time.monotonic)


class RayBertSUT(SutFailure):
    """BERT's LoadGen SUT over a pool of Ray workers (ray_worker.BertWorker).

    precision "auto" means fp32 on torch-cpu workers; on torch-cuda ones the workers start in `gpu_precision` (the
    workload's GPU preference) and, given the data set, take what one of them decides (decide_across). The inner
    backend is known only once the cluster is joined."""

    def __init__(
        self,
        model_path,
        features,
        cfg: RayPoolConfig,
        precision: str = "fp32",
        threads: int | None = None,
        gpu_precision: str | None = None,
        data=None,
        ratio: float = 0.99,
    ):
        """`data` (the data set with its answers): on torch-cuda workers `auto` is chosen from evidence and fp8
        planned (scales calibrated, per-layer fallback), once, and handed to every worker, as on one GPU; without
        it `auto` means `gpu_precision` there and fp8 runs with scales bound from the weights."""
        import mlperf_loadgen as lg
        import ray

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
        self.precision_record: dict | None = None
        try:
            self.cfg = cfg = resolve_auto(ray, cfg)
            self.precision = _resolve_precision(cfg.inner_backend, precision, gpu_precision)
            self.workers = self._start_workers(model_path, features, threads)
            if cfg.inner_backend == "torch-cuda" and precision in ("auto", "fp8") and data is not None:
                handles = [w.handle for w in self.workers]
                decided = decide_across(ray, handles, precision, data, ratio, cfg.start_timeout_s)
                say(decided["line"])
                self.precision, self.precision_record = decided["precision"], decided["record"]
        except BaseException:
            self._release()
            raise
        say(
            f"{len(self.workers)} workers ({cfg.inner_backend}, {cfg.per_worker} {cfg.resource} each) on "
            + on_nodes(self.workers)
        )
        self._collector = threading.Thread(target=self._collect, name="subtool-ray-collect", daemon=True)
        self._collector.start()
        self.handle = loadgen_watch.construct_sut(lg, self.issue_queries, self.flush_queries)

    def _start_workers(self, model_path, features, threads: int | None) -> list[_Worker]:
        """One BertWorker per GPU or CPU share, each given the feature arrays once through the object store."""
        from subtool.runner.bert.ray_worker import BertWorker, ModelInputs

        cfg = self.cfg
        threads = threads or (cfg.cpus_per_worker if cfg.resource == "CPU" else None)
        inputs = self.ray.put(ModelInputs.from_features(features))
        args = (cfg.inner_backend, str(Path(model_path).resolve()), inputs, self.precision, cfg.chunk, threads)
        workers, _ = start_workers(self.ray, cfg, BertWorker, args, worker_type=_Worker)
        return workers

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
        except loss_errors() as exc:
            self._lose(task.worker, f"{exc.__class__.__name__}", also=[task])
            return
        except Exception as exc:
            self._fail(
                f"{task.worker.name()} failed on a chunk of {len(task.items)} samples: "
                f"{exc.__class__.__name__}: {first_line(exc)}",
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
            loadgen_watch.complete(self.lg, responses)

    def _check_overdue(self) -> None:
        limit = self.cfg.task_timeout_s
        now = time.monotonic()
        with self._cond:
            late = {t.worker.number: t.worker for t in self._inflight.values() if now - t.sent > limit}
        for worker in late.values():
            self._lose(worker, f"no answer within {limit:g} s")

    def _lose(self, worker: _Worker, why: str, also: list | None = None) -> None:
        """Write a worker off and give its chunks (the one that failed plus any still in flight) to the others."""
        kill_worker(self.ray, worker)  # a worker written off must never answer late
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
                say(
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
            say(f"{message}; the run stops (every open sample is answered empty and the run reports an error)")
        self._complete_empty([items[p] for p in keep])

    def _complete_empty(self, items) -> None:
        if items:
            loadgen_watch.complete(self.lg, [self.lg.QuerySampleResponse(qid, 0, 0) for qid, _ in items])

    # -------------------------------------------------------------------------------------------- end
    @property
    def weight_data_types(self) -> str:
        """The system description's weight_data_types: fp8 as planned (bf16 for the layers that fell back)."""
        from subtool.runner.bert.fp8_plan import weight_types

        return weight_types((self.precision_record or {}).get("fp8_plan"), self.precision)

    def stats(self) -> dict:
        with self._cond:
            return {
                "workers": len(self.workers),
                "alive": sum(1 for w in self.workers if w.alive),
                "per_worker": [
                    {
                        "node": w.node,
                        "node_ip": w.address,
                        "nice": w.nice,
                        "samples": w.samples,
                        "chunks": w.chunks,
                        "alive": w.alive,
                    }
                    for w in self.workers
                ],
                "nodes": node_descriptions(self.ray, self.workers),  # each node's hardware, for its system json
                **self.ledger.counts(),
                "reissued": self.reissued,
                "deaths": list(self.deaths),
                "error": self._error,
                **({"precision": self.precision_record} if self.precision_record else {}),
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


def make_ray_sut(model_path, features, config, gpu_precision: str, data=None, ratio: float = 0.99) -> RayBertSUT:
    """SUT_BACKENDS factory: SutConfig.extra holds ray_address, workers and inner_backend (default torch-cpu);
    gpu_precision is what `--precision auto` means on torch-cuda workers; `data` and `ratio` plan fp8 there."""
    require_ray()
    cfg = RayPoolConfig.from_sut_config(config)
    if cfg.inner_backend != AUTO and config.precision != "auto":
        check_precision(cfg.inner_backend, config.precision)  # before any cluster starts
    return RayBertSUT(
        model_path,
        features,
        cfg,
        precision=config.precision,
        threads=config.threads,
        gpu_precision=gpu_precision,
        data=data,
        ratio=ratio,
    )


def decide_across(ray, actors: list, asked: str, data, ratio: float, timeout_s: float) -> dict:
    """`--precision fp8` planned, or `auto` chosen, once, on the first worker (against the data set's answers, as
    on one GPU: precision_choice), and what it decided taken by every other — the same precision, and for fp8 the
    same scales and bf16 layers — so the pool answers with one model. Returns the first worker's precision, line,
    record and settings."""
    ref = ray.put(data)
    try:
        decided = ray.get(actors[0].decide.remote(ref, ratio, asked), timeout=timeout_s)
        ray.get([a.take.remote(decided["precision"], decided["settings"]) for a in actors[1:]], timeout=timeout_s)
    except Exception as exc:  # a worker's own error, or Ray's timeout: the run cannot start as asked
        raise SubtoolError(
            f"--precision {asked} could not be decided on the Ray workers: {first_line(exc)}",
            rule="run.ray_worker_setup",
            hint="name another --precision, or run on one GPU (--backend torch-cuda) to see the decision alone",
        ) from exc
    return decided


def _resolve_precision(inner: str, precision: str, gpu_precision: str | None) -> str:
    if precision == "auto":
        if inner == "torch-cuda" and gpu_precision is None:
            raise ValueError("precision 'auto' on torch-cuda workers needs the workload's gpu_precision")
        precision = gpu_precision if inner == "torch-cuda" else "fp32"
    check_precision(inner, precision)
    return precision


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
