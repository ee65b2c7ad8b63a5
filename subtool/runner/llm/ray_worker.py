"""What runs inside one Ray actor for the LLM benchmarks: an LlmGenerator (sut_torch.py) fed from a queue.

The driver (sut_ray.py) sends each actor the prompts once (through Ray's object store) and a `GeneratorSpec`; the
actor builds or loads the model and starts its own generation thread, which runs the same code as the local SUT
(the continuous engine on CUDA, the batched engine on CPU, unless the spec names one). From then on:

- `submit(items)` only enqueues (query id, sample index) pairs; the engine pulls them through `more_work()`
  between decode steps, so new samples join a running batch;
- `poll(timeout_s)` hands back the first tokens and the finished samples since the last poll, waiting up to
  timeout_s for the first new one (the driver keeps one poll in flight per worker and never spins).

The actor is threaded (the driver gives it max_concurrency > 1) so a blocking poll never holds up a submit.
Nothing here imports Ray: the driver wraps `LlmWorker` in `ray.remote`, so it also runs (and is tested) in a
plain process.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from subtool.errors import SubtoolError


@dataclass(frozen=True)
class GeneratorSpec:
    """How a worker builds its LlmGenerator (everything picklable: it travels to every worker)."""

    model_path: str | None  # the checkpoint, at the same path on every node
    generation: object  # llm.workload.Generation
    eos_token_id: object
    pad_token_id: int | None
    batch_size: int  # the continuous engine's slots, or the batched engine's batch
    device: str = "cpu"
    precision: str = "fp32"
    threads: int | None = None
    engine: str = "auto"
    # builds the model in place of loading a checkpoint (the GPU bench's random weights); called on the worker
    model_factory: Callable[[], object] | None = None
    engine_options: dict | None = None  # the continuous engine's tuning keywords
    auto_slots: bool = False  # the continuous engine on a GPU sizes its slots from the memory left (no --batch-size)


class _Discard:
    """The sink of warm-up generations: their tokens go nowhere."""

    def first_token(self, query_id, token):
        pass

    def complete(self, query_id, tokens):
        pass

    def more_work(self):
        return []


class LlmWorker:
    """One actor's generator, its inbox and its outbox. A setup failure is kept and reported by `ready()` (as
    data, so the driver names the node and the cause in one line), never raised from the constructor."""

    def __init__(self, spec: GeneratorSpec, prompts: list):
        from subtool.runner.ray_pool import die_with_raylet

        die_with_raylet()  # a worker never outlives its node's raylet
        self.node = socket.gethostname()
        self.pid = os.getpid()
        self.generator = None
        self.error: dict | None = None
        self.failure: str | None = None  # generation failed after start-up
        self._inbox: queue.Queue = queue.Queue()
        self._cond = threading.Condition()
        self._first: list = []
        self._done: list = []
        self._busy = threading.Lock()  # the generator runs one loop at a time (warm-up or work)
        try:
            self.generator = self._build(spec, prompts)
        except SubtoolError as err:
            self.error = {"message": err.message, "path": err.path, "rule": err.rule, "hint": err.hint}
        except Exception as exc:  # torch, CUDA, transformers: whatever stops the model from loading
            self.error = {
                "message": f"{exc.__class__.__name__}: {_first_line(exc)}",
                "path": None,
                "rule": "run.ray_worker_setup",
                "hint": None,
            }
        if self.generator is not None:
            self._thread = threading.Thread(target=self._loop, name="subtool-llm-worker", daemon=True)
            self._thread.start()

    @staticmethod
    def _build(spec: GeneratorSpec, prompts: list):
        from pathlib import Path

        from subtool.runner.llm.sut_torch import LlmGenerator

        model = spec.model_factory() if spec.model_factory is not None else None
        return LlmGenerator(
            Path(spec.model_path) if spec.model_path else None,
            prompts,
            spec.generation,
            eos_token_id=spec.eos_token_id,
            pad_token_id=spec.pad_token_id,
            batch_size=spec.batch_size,
            device=spec.device,
            precision=spec.precision,
            threads=spec.threads,
            engine=spec.engine,
            model=model,
            engine_options=spec.engine_options,
            auto_slots=spec.auto_slots,
        )

    def ready(self) -> dict:
        from subtool import __version__
        from subtool.runner.ray_pool import node_address, process_niceness

        g = self.generator
        return {
            "node": self.node,
            "node_ip": node_address(),
            "pid": self.pid,
            "nice": process_niceness(),
            "subtool": __version__,
            "error": self.error,
            "engine": g.engine_name if g is not None else None,
            "slots": g.batch_size if g is not None else None,
        }

    def warm_up(self, indices: list[int]) -> float:
        """Generate these samples once, answers discarded (kernels, allocator, CUDA graph capture), before any
        work arrives; the counters are reset afterwards. Seconds it took."""
        import time

        from subtool.runner.llm.sut_torch import SutStats

        self._require_model()
        t0 = time.monotonic()
        g = self.generator
        with self._busy:
            g.run([(-1 - i, int(idx)) for i, idx in enumerate(indices)], _Discard())
            capture = getattr(g.engine, "warm_up", None)  # the decode graphs every prompt length needs
            if capture is not None:
                capture([int(n) for n in g.lengths])
            g.stats = SutStats()
        return time.monotonic() - t0

    # the driver's calls --------------------------------------------------------------------------------
    def submit(self, items) -> int:
        """Queue (query id, sample index) pairs for the generation thread; returns at once."""
        self._require_model()
        items = [(int(q), int(i)) for q, i in items]
        self._inbox.put(items)
        return len(items)

    def poll(self, timeout_s: float = 0.5) -> dict:
        """First tokens [(qid, token)] and finished samples [(qid, [tokens])] since the last poll; waits up to
        timeout_s for the first one. `error` is set once generation has failed (the worker then stops)."""
        with self._cond:
            if not (self._first or self._done or self.failure):
                self._cond.wait(timeout_s)
            first, done = self._first, self._done
            self._first, self._done = [], []
            return {"first": first, "done": done, "error": self.failure}

    def stats(self) -> dict:
        import dataclasses

        g = self.generator
        out = {
            "node": self.node,
            "pid": self.pid,
            "engine": g.engine_name if g is not None else None,
            **(dataclasses.asdict(g.stats) if g is not None else {}),
        }
        engine_stats = getattr(getattr(g, "engine", None), "stats", None)
        if dataclasses.is_dataclass(engine_stats):
            out["engine_stats"] = dataclasses.asdict(engine_stats)
        return out

    # the generator's sink ------------------------------------------------------------------------------
    def first_token(self, query_id: int, token: int) -> None:
        with self._cond:
            self._first.append((query_id, int(token)))
            self._cond.notify_all()

    def complete(self, query_id: int, tokens: list[int]) -> None:
        with self._cond:
            self._done.append((query_id, [int(t) for t in tokens]))
            self._cond.notify_all()

    def more_work(self) -> list:
        items: list = []
        while True:
            try:
                items.extend(self._inbox.get_nowait())
            except queue.Empty:
                return items

    # the generation thread -----------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            items = self._inbox.get()
            pending = list(items) + self.more_work()
            try:
                with self._busy:
                    self.generator.run(pending, self)
            except BaseException as exc:  # the driver learns it from poll() and stops the run
                with self._cond:
                    self.failure = f"{exc.__class__.__name__}: {_first_line(exc)}"
                    self._cond.notify_all()
                return

    def _require_model(self) -> None:
        if self.generator is None:
            raise RuntimeError(f"worker on {self.node} has no model: {self.error}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
