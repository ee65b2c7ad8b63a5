"""The Ray SUT for the LLM benchmarks: LoadGen stays in this process; N Ray actors (ray_worker.LlmWorker, one
per GPU or N CPU workers) each hold a full copy of the model and generate. The cluster, the worker count, the
ledger and the release are the generic part (runner/ray_pool.py).

Streaming, not chunk-at-a-time: continuous batching wants many samples in flight and LoadGen wants first tokens
early. Every worker gets the prompts once at start-up; afterwards the driver `submit`s (query id, index) pairs,
which join the worker's running batch, and keeps one `poll` in flight per worker, which comes back with the first
tokens and finished samples as they happen. Each is answered to LoadGen at once (FirstTokenComplete,
QuerySamplesComplete with the token count).

Balancing is pull-based: a worker holds at most `capacity` samples (default 2 × its slots or batch size: one
batch generating, the next waiting), and every finished sample makes room for one more. The samples of one issue
go out longest prompt first (the Offline query: long prompts start early and the short ones fill in at the end
so the workers finish together); Server samples leave in arrival order, and the backlog waits here, not in a
worker.

A lost worker (dead process or node, or silent past `task_timeout_s` while holding samples) has its samples put
back at the head of the queue for the survivors; the ledger (ray_pool.ExactlyOnceLedger) answers every issued
sample exactly once, and a first token is passed on once per sample. With no worker left, or when generation
fails inside a worker, every open sample is answered empty and stop() raises one SubtoolError.
"""

from __future__ import annotations

import dataclasses
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
from subtool.runner.llm.ray_worker import GeneratorSpec
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

POLL_WAIT_S = 0.25  # how long a worker's poll waits for its first new event
ACTOR_CONCURRENCY = 4  # a blocking poll, a submit, and room for stats
STATS_WAIT_S = 10.0


@dataclass
class _Worker(PoolWorker):
    slots: int = 0
    outstanding: dict = field(default_factory=dict)  # qid → sample index, in order of submission
    samples: int = 0
    tokens: int = 0
    submits: int = 0
    last_progress: float = field(default_factory=time.monotonic)


class Dispatcher:
    """Which worker gets which samples: the queue, each worker's outstanding samples and the ledger. No Ray and
    no LoadGen here: `take` says what to send, the caller sends it (and is unit-tested on its own)."""

    def __init__(self, workers: list[_Worker], lengths: np.ndarray, capacity: int):
        self.workers = workers
        self.lengths = np.asarray(lengths)
        self.capacity = max(1, int(capacity))
        self.pending: deque = deque()
        self.ledger = ExactlyOnceLedger()
        self.reissued = 0

    def issue(self, items: list[tuple[int, int]]) -> None:
        """One LoadGen issue: longest prompt first (an Offline query; a Server query is a single sample)."""
        items = sorted(items, key=lambda s: (-int(self.lengths[s[1]]), s[1]))
        self.ledger.issue(items)
        self.pending.extend(items)

    def take(self) -> list[tuple[_Worker, list]]:
        """Fill the workers with room: the emptiest first, each at most to capacity, and while the queue is short
        split it evenly among them (so the tail does not all land on one worker)."""
        sends: dict[int, tuple[_Worker, list]] = {}
        while self.pending:
            room = sorted(
                (w for w in self.workers if w.alive and len(w.outstanding) < self.capacity),
                key=lambda w: (len(w.outstanding), w.samples, w.number),
            )
            if not room:
                break
            share = math.ceil(len(self.pending) / len(room))
            for worker in room:
                n = min(self.capacity - len(worker.outstanding), len(self.pending), share)
                if n < 1:
                    break
                items = [self.pending.popleft() for _ in range(n)]
                if not worker.outstanding:
                    worker.last_progress = time.monotonic()
                worker.outstanding.update(items)
                sends.setdefault(worker.number, (worker, []))[1].extend(items)
        for worker, _ in sends.values():
            worker.submits += 1
        return list(sends.values())

    def finish(self, worker: _Worker, done: list) -> list[tuple[int, list]]:
        """The worker's finished samples that LoadGen still waits for: [(qid, tokens)] (anything else dropped)."""
        mine = [(qid, tokens) for qid, tokens in done if qid in worker.outstanding]
        keep = self.ledger.settle([(qid, worker.outstanding.pop(qid)) for qid, _ in mine])
        out = [mine[p] for p in keep]
        worker.samples += len(out)
        worker.tokens += sum(len(t) for _, t in out)
        return out

    def lose(self, worker: _Worker) -> list[tuple[int, int]]:
        """Write the worker off; its samples go back to the head of the queue (for a survivor, or for `drain`
        when nobody is left). Returns them."""
        items = list(worker.outstanding.items())
        worker.outstanding.clear()
        worker.alive = False
        self.pending.extendleft(reversed(items))
        if self.survivors:
            self.reissued += len(items)
        return items

    def drain(self) -> list[tuple[int, int]]:
        """Every open sample (queued or at a worker), taken out and closed in the ledger: to be answered empty."""
        items = list(self.pending)
        self.pending.clear()
        for w in self.workers:
            items.extend(w.outstanding.items())
            w.outstanding.clear()
        keep = self.ledger.settle(items)
        return [items[p] for p in keep]

    @property
    def survivors(self) -> int:
        return sum(1 for w in self.workers if w.alive)


def _on_device(spec: GeneratorSpec, cfg: RayPoolConfig) -> GeneratorSpec:
    """The generator settings for the workers' device: `auto` precision (bf16 on GPUs, fp8 there for a
    pre-quantized FP8 checkpoint, fp32 on CPUs) and, on
    CPUs, the worker's CPU share as torch threads unless given."""
    from subtool.runner.llm.checkpoint import fp8_checkpoint

    device = "cuda" if cfg.resource == "GPU" else "cpu"
    precision = spec.precision
    if precision == "auto":  # as the local backends decide (LlmWorkload.resolve_precision)
        precision = "bf16" if device == "cuda" else "fp32"
        if device == "cuda" and spec.generation.num_beams == 1 and fp8_checkpoint(spec.model_path):
            precision = "fp8"
    threads = spec.threads or (cfg.cpus_per_worker if device == "cpu" else None)
    return dataclasses.replace(spec, device=device, precision=precision, threads=threads)


class RayLlmSUT(SutFailure):
    """An LLM's LoadGen SUT over a pool of Ray workers (ray_worker.LlmWorker)."""

    def __init__(
        self, spec: GeneratorSpec, prompts: list, cfg: RayPoolConfig, capacity: int | None = None, warm_up: int = 0
    ):
        import mlperf_loadgen as lg
        import ray

        from subtool.runner.llm.ray_worker import LlmWorker

        self.lg = lg
        self.ray = ray
        self.cfg = cfg
        self.np_dtype = np.dtype(spec.generation.output_dtype)
        self.token_latencies = bool(spec.generation.token_latencies)
        self.deaths: list[str] = []
        self._lock = threading.Lock()
        self._events: queue.Queue = queue.Queue()
        self._first_sent: set[int] = set()
        self._error: str | None = None
        self._stopping = False
        self._owns = connect(cfg)
        self.workers: list[_Worker] = []
        try:
            self.cfg = cfg = resolve_auto(ray, cfg)
            self.spec = spec = _on_device(spec, cfg)
            self.precision = spec.precision
            # an unsupported precision is refused by every worker's LlmGenerator, in one line (await_ready)
            self.workers, infos = start_workers(
                ray, cfg, LlmWorker, (spec, ray.put(list(prompts))), _Worker, max_concurrency=ACTOR_CONCURRENCY
            )
            for w, info in zip(self.workers, infos):
                w.slots = int(info.get("slots") or spec.batch_size)
            self.engine = infos[0].get("engine")
            self.capacity = int(capacity or cfg.depth * max(w.slots for w in self.workers))
            if warm_up:
                self._warm_up(warm_up, prompts)
        except BaseException:
            self._release()
            raise
        self.dispatch = Dispatcher(self.workers, np.array([len(p) for p in prompts]), self.capacity)
        say(
            f"{len(self.workers)} workers ({cfg.inner_backend}, {self.engine} engine, {self.capacity} samples "
            f"in flight each) on " + on_nodes(self.workers)
        )
        self._collector = threading.Thread(target=self._collect, name="subtool-ray-llm", daemon=True)
        self._collector.start()
        for w in self.workers:
            self._poll(w)
        self.handle = loadgen_watch.construct_sut(lg, self.issue_queries, self.flush_queries)

    def _warm_up(self, count: int, prompts: list) -> None:
        """Each worker generates `count` samples (the longest ones) before LoadGen starts: on CUDA the decode
        step's graph is captured here, not inside the timed run."""
        order = np.argsort([-len(p) for p in prompts], kind="stable")[:count]
        refs = [w.handle.warm_up.remote([int(i) for i in order]) for w in self.workers]
        try:
            seconds = self.ray.get(refs, timeout=self.cfg.start_timeout_s)
        except Exception as exc:
            raise SubtoolError(
                f"a Ray worker failed while warming up: {exc.__class__.__name__}: {first_line(exc)}",
                rule="run.ray_start",
            ) from None
        say(f"warm-up: {count} samples per worker in {max(seconds):.1f} s")

    # ------------------------------------------------------------------------------------ LoadGen side
    def issue_queries(self, query_samples) -> None:
        items = [(qs.id, qs.index) for qs in query_samples]
        with self._lock:
            self.dispatch.issue(items)
            if self._error is None:
                self._send_locked()
                return
            orphans = self.dispatch.drain()
        self._complete_empty(orphans)

    def flush_queries(self) -> None:
        pass

    def _send_locked(self) -> None:
        for worker, items in self.dispatch.take():
            ref = worker.handle.submit.remote(items)
            ref.future().add_done_callback(lambda f, w=worker: self._events.put(("submit", w, f)))

    def _poll(self, worker: _Worker) -> None:
        ref = worker.handle.poll.remote(POLL_WAIT_S)
        ref.future().add_done_callback(lambda f, w=worker: self._events.put(("poll", w, f)))

    # ---------------------------------------------------------------------------------------- collector
    def _collect(self) -> None:
        while True:
            try:
                event = self._events.get(timeout=1.0)
            except queue.Empty:
                self._check_overdue()
                continue
            if event is None:
                return
            kind, worker, future = event
            try:
                result = future.result()
            except loss_errors() as exc:
                self._lose(worker, exc.__class__.__name__)
                continue
            except Exception as exc:
                if worker.alive and self._error is None:
                    self._fail(f"{worker.name()} failed: {exc.__class__.__name__}: {first_line(exc)}")
                continue
            if kind == "poll":
                self._answer(worker, result)
            self._check_overdue()

    def _answer(self, worker: _Worker, events: dict) -> None:
        if events["error"]:
            self._fail(f"{worker.name()} failed while generating: {events['error']}")
            return
        with self._lock:
            if not worker.alive:
                return  # written off: its samples went elsewhere; never answer late
            if events["first"] or events["done"]:
                worker.last_progress = time.monotonic()
            firsts = []
            for qid, token in events["first"]:
                if qid in worker.outstanding and qid not in self._first_sent:
                    self._first_sent.add(qid)
                    firsts.append((qid, token))
            done = self.dispatch.finish(worker, events["done"])
            self._first_sent.difference_update(qid for qid, _ in done)
            self._send_locked()
        if firsts and self.token_latencies:
            arrays = [np.array([t], dtype=self.np_dtype) for _, t in firsts]
            loadgen_watch.first_token(
                self.lg,
                [self.lg.QuerySampleResponse(qid, a.ctypes.data, a.nbytes) for (qid, _), a in zip(firsts, arrays)],
            )
        if done:
            arrays = [np.asarray(t, dtype=self.np_dtype) for _, t in done]
            loadgen_watch.complete(
                self.lg,
                [
                    self.lg.QuerySampleResponse(qid, a.ctypes.data, a.nbytes, len(t))
                    for (qid, t), a in zip(done, arrays)
                ],
            )
        if worker.alive and not self._stopping:
            self._poll(worker)

    def _check_overdue(self) -> None:
        limit = self.cfg.task_timeout_s
        now = time.monotonic()
        with self._lock:
            late = [w for w in self.workers if w.alive and w.outstanding and now - w.last_progress > limit]
        for worker in late:
            self._lose(worker, f"no progress within {limit:g} s")

    def _lose(self, worker: _Worker, why: str) -> None:
        """Write a worker off and give its samples to the others (or, with none left, fail the run)."""
        kill_worker(self.ray, worker)  # a worker written off must never answer late
        with self._lock:
            if not worker.alive:
                return
            items = self.dispatch.lose(worker)
            survivors = self.dispatch.survivors
            self.deaths.append(f"{worker.name()}: {why}")
            if survivors and self._error is None:
                self._send_locked()
        if survivors:
            say(
                f"{worker.name()} lost ({why}); {len(items)} samples in flight re-issued to the {survivors} "
                f"remaining worker{'s' if survivors != 1 else ''}"
            )
            return
        self._fail(f"all {len(self.workers)} Ray workers are lost (the last: {worker.name()}, {why})")

    def _fail(self, message: str) -> None:
        """Stop computing: answer every open sample empty so LoadGen finishes, and keep the error for stop()."""
        with self._lock:
            first = self._error is None
            if first:
                self._error = message
            orphans = self.dispatch.drain()
        if first:
            say(f"{message}; the run stops (every open sample is answered empty and the run reports an error)")
        self._complete_empty(orphans)

    def _complete_empty(self, items) -> None:
        if items:
            loadgen_watch.complete(self.lg, [self.lg.QuerySampleResponse(qid, 0, 0, 0) for qid, _ in items])

    # -------------------------------------------------------------------------------------------- end
    def stats(self) -> dict:
        """The spread of the run (what run.json records): workers, samples and tokens per worker, lost workers,
        re-issued samples; plus each live worker's own generator counters (batches, engine steps)."""
        generators = self._worker_stats()
        with self._lock:
            d = self.dispatch
            return {
                "workers": len(self.workers),
                "alive": d.survivors,
                "engine": self.engine,
                "capacity": self.capacity,
                "per_worker": [
                    {
                        "node": w.node,
                        "node_ip": w.address,
                        "nice": w.nice,
                        "samples": w.samples,
                        "tokens": w.tokens,
                        "submits": w.submits,
                        "slots": w.slots,
                        "alive": w.alive,
                        **({"generator": generators[w.number]} if w.number in generators else {}),
                    }
                    for w in self.workers
                ],
                "nodes": node_descriptions(self.ray, self.workers),  # each node's hardware, for its system json
                **d.ledger.counts(),
                "reissued": d.reissued,
                "deaths": list(self.deaths),
                "error": self._error,
            }

    def _worker_stats(self) -> dict[int, dict]:
        live = [w for w in self.workers if w.alive]
        try:
            answers = self.ray.get([w.handle.stats.remote() for w in live], timeout=STATS_WAIT_S)
        except Exception:  # a worker lost meanwhile, or too busy to answer: the driver's own counts still stand
            return {}
        drop = ("node", "pid", "engine")
        return {w.number: {k: v for k, v in a.items() if k not in drop} for w, a in zip(live, answers)}

    def _release(self) -> None:
        release_workers(self.ray, self.workers, self._owns)
        self._owns = False

    def stop(self) -> None:
        self._stopping = True
        self._events.put(None)
        self._collector.join()
        self.lg.DestroySUT(self.handle)
        self._release()
        report_run_end(self.deaths, self.dispatch.reissued, self._error, self.dispatch.ledger)


def make_ray_llm_sut(model_path, prompts: list, config, options: dict, check_precision) -> RayLlmSUT:
    """SUT_BACKENDS factory for the LLMs: SutConfig.extra holds ray_address, workers and inner_backend. `options`
    are the torch generator's keywords (the workload's), `check_precision(backend, precision)` its precision
    rules, applied to the inner backend before any cluster starts."""
    require_ray()
    cfg = RayPoolConfig.from_sut_config(config)
    if cfg.inner_backend != AUTO:
        check_precision(cfg.inner_backend, config.precision)
    spec = generator_spec(model_path, config, options)
    return RayLlmSUT(spec, prompts, dataclasses.replace(cfg, chunk=spec.batch_size))


def generator_spec(model_path, config, options: dict) -> GeneratorSpec:
    """What every worker builds: the torch generator's keywords; with no --batch-size, each worker's continuous
    engine on a GPU sizes its slots from its own memory left after the weights (as the local torch-cuda SUT)."""
    auto = not getattr(config, "batch_size_given", True)
    return GeneratorSpec(model_path=str(Path(model_path).resolve()), auto_slots=auto, **options)
