"""The fast BERT SUT for one GPU: packed token-budget batches, CUDA graphs per bucket, overlapped copies.

LoadGen's thread only records what it was asked (`issue_queries` → a TokenBatcher). A launcher thread takes
batches of at most `token_budget` real tokens, packs their tokens into a pinned buffer, and queues on the GPU:
the host→device copy on a copy stream, the CUDA graph of the batch's bucket on the compute stream, and the
device→host copy of the logits on the copy stream again. A completer thread waits for each batch's last copy
and answers all its samples in one `QuerySamplesComplete`. With two batches in flight the GPU works on one
while the host packs the next and answers the last, which is also how the Server scenario batches: whatever
arrived while the GPU was busy goes into the next batch, so batches grow with the load and latency stays near
two batch times.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import numpy as np

from subtool.errors import SubtoolError
from subtool.runner import loadgen_watch
from subtool.runner.bert.fp8_plan import weight_types
from subtool.runner.bert.packed_model import PRECISIONS, PackedBert
from subtool.runner.bert.packed_plan import (
    Batch,
    PackedInputs,
    ResponseLedger,
    TokenBatcher,
    capacities,
    pack_inputs,
    sequence_capacity,
    token_buckets,
)
from subtool.runner.bert.squad import MAX_SEQ_LENGTH, SquadFeatures
from subtool.runner.workload import SutFailure

RESPONSE_BYTES = MAX_SEQ_LENGTH * 2 * 4  # [384, 2] float32 per sample
# real tokens a batch may hold when neither --batch-size nor a token budget is given: the budget bench/bert_gpu.py
# measures at (the old default, 32 × 384 = 12,288, ran bf16 Offline as fast on one H100 within the runs' spread:
# bench/results/bert_run_h100_token_budget.json)
DEFAULT_TOKEN_BUDGET = 16384


def check_request(precision: str, device: str = "cuda") -> None:
    """Refuse what cannot run before any weights are loaded: an unknown precision, no GPU, fp8 without Hopper/Ada."""
    if precision not in PRECISIONS:
        raise SubtoolError(
            f"precision {precision!r} is not supported by the torch-cuda backend; choose one of "
            f"{', '.join(PRECISIONS)}",
            rule="run.precision",
        )
    if device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise SubtoolError(
            "the torch-cuda backend needs a CUDA GPU, and torch sees none "
            f"(torch {torch.__version__}, torch.cuda.is_available() is False)",
            rule="run.device",
            hint="use --backend torch-cpu, or check the driver and CUDA_VISIBLE_DEVICES",
        )
    if precision == "fp8" and torch.cuda.get_device_capability() < (8, 9):
        name = torch.cuda.get_device_name()
        raise SubtoolError(
            f"fp8 needs an Ada or Hopper GPU (compute capability 8.9+); {name} has "
            f"{'.'.join(map(str, torch.cuda.get_device_capability()))}",
            rule="run.precision",
            hint="use --precision bf16",
        )


@dataclass
class _Slot:
    """Buffers of one batch in flight."""

    number: int
    host_in: object  # pinned int32 tensor (or numpy on the eager path)
    host_out: object  # pinned float32 [rows, 2]
    dev_in: object = None
    dev_out: object = None
    h2d: object = None
    computed: object = None
    d2h: object = None


class EagerExecutor:
    """Runs the forward directly, one batch at a time (CPU, and fp32 where no variable-length kernel exists)."""

    def __init__(self, model: PackedBert, buckets: tuple, slots: int):
        self.model = model
        rows = sequence_capacity(buckets[-1]) * MAX_SEQ_LENGTH + 1
        self.slots = [_Slot(i, None, np.zeros((rows, 2), np.float32)) for i in range(slots)]

    def submit(self, slot: _Slot, packed: PackedInputs) -> None:
        torch = self.model.torch
        dev = self.model.device

        def t(a):
            return torch.from_numpy(np.ascontiguousarray(a)).to(dev)

        rows = (packed.cu_seqlens.size - 1) * MAX_SEQ_LENGTH + 1
        out = torch.empty((rows, 2), dtype=torch.float32, device=dev)
        with torch.inference_mode():
            self.model.forward(
                t(packed.input_ids),
                t(packed.segment_ids),
                t(packed.position_ids),
                t(packed.out_rows),
                t(packed.cu_seqlens),
                out,
                sequences=packed.sequences,
            )
        n = packed.sequences * MAX_SEQ_LENGTH
        slot.host_out[:n] = out[:n].cpu().numpy()

    def wait(self, slot: _Slot) -> None:
        pass

    def outputs(self, slot: _Slot, sequences: int) -> np.ndarray:
        return slot.host_out[: sequences * MAX_SEQ_LENGTH]


class GraphExecutor:
    """One CUDA graph per (bucket, capacity) over shared static buffers; copies on their own stream, pinned
    host memory."""

    def __init__(self, model: PackedBert, buckets: tuple, slots: int):
        torch = model.torch
        self.model = model
        self.torch = torch
        self.buckets = buckets
        self.tmax = buckets[-1]
        self.capmax = sequence_capacity(self.tmax)
        width = 4 * self.tmax + self.capmax + 1
        out_rows = self.capmax * MAX_SEQ_LENGTH + 1
        dev = model.device
        self.compute = torch.cuda.Stream(dev)
        self.copy = torch.cuda.Stream(dev)
        self.static_in = torch.zeros(width, dtype=torch.int32, device=dev)
        self.static_out = torch.zeros((out_rows, 2), dtype=torch.float32, device=dev)
        self.slots = []
        for i in range(slots):
            s = _Slot(
                i,
                torch.zeros(width, dtype=torch.int32).pin_memory(),
                torch.zeros((out_rows - 1, 2), dtype=torch.float32).pin_memory(),
            )
            s.host_in_np = s.host_in.numpy()
            s.host_out_np = s.host_out.numpy()
            s.dev_in = torch.zeros(width, dtype=torch.int32, device=dev)
            s.dev_out = torch.zeros((out_rows - 1, 2), dtype=torch.float32, device=dev)
            s.h2d, s.computed, s.d2h = (torch.cuda.Event() for _ in range(3))
            self.slots.append(s)
        self.graphs: dict[tuple[int, int], object] = {}
        self._capture()

    def _views(self, buf, bucket: int, cap: int):
        t = self.tmax
        return (
            buf[0:bucket],
            buf[t : t + bucket],
            buf[2 * t : 2 * t + bucket],
            buf[3 * t : 3 * t + bucket],
            buf[4 * t : 4 * t + cap + 1],
        )

    def _fill(self, host: np.ndarray, packed: PackedInputs) -> None:
        t, b = self.tmax, packed.input_ids.size
        host[0:b] = packed.input_ids
        host[t : t + b] = packed.segment_ids
        host[2 * t : 2 * t + b] = packed.position_ids
        host[3 * t : 3 * t + b] = packed.out_rows
        host[4 * t : 4 * t + packed.cu_seqlens.size] = packed.cu_seqlens

    def _run(self, bucket: int, cap: int) -> None:
        ids, seg, pos, rows, cu = self._views(self.static_in, bucket, cap)
        self.model.forward(ids, seg, pos, rows, cu, self.static_out[: cap * MAX_SEQ_LENGTH + 1])

    def _capture(self) -> None:
        torch = self.torch
        pool = torch.cuda.graph_pool_handle()
        side = torch.cuda.Stream(self.model.device)
        with torch.inference_mode():
            for bucket in sorted(self.buckets, reverse=True):
                for cap in capacities(bucket):
                    lengths = _capture_lengths(bucket, cap)
                    n = int(lengths.sum())
                    ids = np.arange(n, dtype=np.int64) % self.model.word.shape[0]
                    fake = np.zeros((lengths.size, MAX_SEQ_LENGTH), np.int32)
                    fake[np.arange(MAX_SEQ_LENGTH)[None, :] < lengths[:, None]] = ids[:n]
                    packed = pack_inputs(
                        fake, np.zeros_like(fake), lengths.astype(np.int32), np.arange(lengths.size), bucket, cap
                    )
                    host = np.zeros(self.static_in.numel(), np.int32)
                    self._fill(host, packed)
                    self.static_in.copy_(torch.from_numpy(host))
                    side.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(side):
                        self._run(bucket, cap)  # warm-up: cuBLAS handles, Triton compilation
                    torch.cuda.current_stream().wait_stream(side)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph, pool=pool, stream=side):
                        self._run(bucket, cap)
                    self.graphs[(bucket, cap)] = graph
        torch.cuda.synchronize()

    def submit(self, slot: _Slot, packed: PackedInputs) -> None:
        torch = self.torch
        self._fill(slot.host_in_np, packed)
        n = packed.sequences * MAX_SEQ_LENGTH
        with torch.cuda.stream(self.copy):
            slot.dev_in.copy_(slot.host_in, non_blocking=True)
            slot.h2d.record(self.copy)
        self.compute.wait_event(slot.h2d)
        with torch.cuda.stream(self.compute):
            self.static_in.copy_(slot.dev_in, non_blocking=True)
            self.graphs[(packed.input_ids.size, packed.cu_seqlens.size - 1)].replay()
            slot.dev_out[:n].copy_(self.static_out[:n], non_blocking=True)
            slot.computed.record(self.compute)
        self.copy.wait_event(slot.computed)
        with torch.cuda.stream(self.copy):
            slot.host_out[:n].copy_(slot.dev_out[:n], non_blocking=True)
            slot.d2h.record(self.copy)

    def wait(self, slot: _Slot) -> None:
        slot.d2h.synchronize()

    def outputs(self, slot: _Slot, sequences: int) -> np.ndarray:
        return slot.host_out_np[: sequences * MAX_SEQ_LENGTH]


def _capture_lengths(bucket: int, capacity: int) -> np.ndarray:
    """Sequence lengths that fill a bucket within a capacity (what they hold does not matter to the graph)."""
    count = min(capacity, bucket)
    lengths = np.full(count, bucket // count, dtype=np.int64)
    lengths[: bucket % count] += 1
    if lengths.max() > MAX_SEQ_LENGTH:
        raise ValueError(f"capacity {capacity} cannot fill a bucket of {bucket}")
    return lengths


class TorchCudaBertSUT(SutFailure):
    def __init__(
        self,
        model_path,
        features: SquadFeatures,
        precision: str = "bf16",
        batch_size: int | None = None,
        token_budget: int | None = None,
        device: str = "cuda",
        slots: int = 2,
        graphs: bool | None = None,
        kernels: str = "auto",
        model: PackedBert | None = None,
        precision_record: dict | None = None,
    ):
        """`model`: one already built (and, for fp8, calibrated and planned: bert/fp8_plan.py), else it loads one;
        `precision_record`: how the precision was chosen (run.json's sut.precision). A batch holds at most
        `token_budget` real tokens, else `batch_size` × 384, else DEFAULT_TOKEN_BUDGET."""
        check_request(precision, device)
        self.features = features
        self.lengths = np.asarray(features.seq_lengths, dtype=np.int64)
        by_samples = max(1, int(batch_size)) * MAX_SEQ_LENGTH if batch_size is not None else DEFAULT_TOKEN_BUDGET
        self.budget = int(token_budget or by_samples)
        if self.budget < MAX_SEQ_LENGTH:
            raise SubtoolError(
                f"a token budget of {self.budget} cannot hold a {MAX_SEQ_LENGTH}-token sample",
                rule="run.batch_size",
                hint=f"use a token budget of at least {MAX_SEQ_LENGTH}",
            )
        self.buckets = token_buckets(self.budget)
        self.model = model or PackedBert(model_path, device=device, precision=precision, kernels=kernels)
        self.precision = self.model.precision
        self.precision_record = precision_record
        use_graphs = self.model.attention != "padded" if graphs is None else graphs
        if use_graphs:
            self.executor = GraphExecutor(self.model, self.buckets, slots)
        else:
            self.executor = EagerExecutor(self.model, self.buckets, slots)
        self.batcher = TokenBatcher(self.lengths, self.budget, self.buckets)
        self.ledger = ResponseLedger()
        self.batches = 0
        self.padded_tokens = 0
        self.real_tokens = 0
        self._free: queue.Queue = queue.Queue()
        for s in self.executor.slots:
            self._free.put(s)
        self._done: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        import mlperf_loadgen as lg

        self.lg = lg
        self._launcher = threading.Thread(target=self._launch_loop, name="subtool-cuda-launch", daemon=True)
        self._completer = threading.Thread(target=self._complete_loop, name="subtool-cuda-complete", daemon=True)
        self._launcher.start()
        self._completer.start()
        self.handle = loadgen_watch.construct_sut(lg, self.issue_queries, self.flush_queries)

    # LoadGen callbacks ------------------------------------------------------------------------------
    def issue_queries(self, query_samples) -> None:
        ids = [qs.id for qs in query_samples]
        idx = [qs.index for qs in query_samples]
        self.ledger.issue(ids)
        self.batcher.add(ids, idx)

    def flush_queries(self) -> None:
        pass

    # the two threads ----------------------------------------------------------------------------------
    def _launch_loop(self) -> None:
        while self.batcher.wait():
            batch = self.batcher.take()
            if batch is None:
                continue
            slot = self._free.get()
            try:
                if self._error is not None:
                    raise RuntimeError("an earlier batch failed")
                packed = pack_inputs(
                    self.features.input_ids,
                    self.features.segment_ids,
                    self.lengths,
                    batch.indices,
                    batch.bucket,
                    batch.capacity,
                )
                self.executor.submit(slot, packed)
            except BaseException as exc:  # reported by stop(); LoadGen would otherwise wait forever
                if self._error is None:
                    self._error = exc
                self._done.put((batch, slot, False))
                continue
            self.batches += 1
            self.real_tokens += batch.tokens
            self.padded_tokens += batch.bucket
            self._done.put((batch, slot, True))
        self._done.put(None)

    def _complete_loop(self) -> None:
        while True:
            item = self._done.get()
            if item is None:
                return
            batch, slot, ok = item
            try:
                if ok:
                    self.executor.wait(slot)
                    self._answer(batch, self.executor.outputs(slot, len(batch)))
                else:
                    self._answer(batch, None)
            except BaseException as exc:
                if self._error is None:
                    self._error = exc
                self._answer(batch, None)
            finally:
                self._free.put(slot)

    def _answer(self, batch: Batch, logits: np.ndarray | None) -> None:
        lg = self.lg
        ids = batch.query_ids.tolist()
        if logits is None:
            responses = [lg.QuerySampleResponse(q, 0, 0) for q in ids]
        else:
            base = logits.ctypes.data
            responses = [
                lg.QuerySampleResponse(q, base + i * RESPONSE_BYTES, RESPONSE_BYTES) for i, q in enumerate(ids)
            ]
        self.ledger.answer(ids)
        loadgen_watch.complete(lg, responses)

    # ------------------------------------------------------------------------------------------------
    @property
    def weight_data_types(self) -> str:
        """The system description's weight_data_types: fp8 as planned (bf16 for the layers that fell back)."""
        return weight_types((self.precision_record or {}).get("fp8_plan"), self.precision)

    def stats(self) -> dict:
        return {
            "batches": self.batches,
            "real_tokens": self.real_tokens,
            "padded_tokens": self.padded_tokens,
            "token_budget": self.budget,
            "buckets": len(self.buckets),
            "graph_shapes": len(getattr(self.executor, "graphs", {})),
            "graphs": isinstance(self.executor, GraphExecutor),
            "issued": self.ledger.issued,
            "answered": self.ledger.answered,
            **({"precision": self.precision_record} if self.precision_record else {}),
        }

    def stop(self) -> None:
        self.batcher.close()
        self._launcher.join()
        self._completer.join()
        self.lg.DestroySUT(self.handle)
        if self._error is not None:
            raise SubtoolError(f"the SUT failed during the run: {self._error!r}", rule="run.sut_error")
        problems = self.ledger.problems()
        if self.ledger.outstanding:
            problems.append(f"{self.ledger.outstanding} samples never answered")
        if problems:
            raise SubtoolError(
                "the SUT's answers do not match what LoadGen issued: " + "; ".join(problems), rule="run.sut_error"
            )
