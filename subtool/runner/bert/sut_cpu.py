"""A PyTorch SUT for BERT question answering.

LoadGen hands queries to `issue_queries` from its own thread; a worker thread drains them in batches. Within a
batch, samples are sorted by length and padded only to the longest one, so short questions cost less. Each
response carries the [384, 2] float32 start/end logits that the reference accuracy script reads.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from subtool.errors import SubtoolError
from subtool.runner import loadgen_watch
from subtool.runner.bert.squad import MAX_SEQ_LENGTH, SquadFeatures
from subtool.runner.workload import SutFailure


@dataclass
class SutStats:
    samples: int = 0
    batches: int = 0


def plan_batches(indices: list[int], lengths: np.ndarray, batch_size: int) -> list[list[int]]:
    """Positions into `indices`, grouped by sequence length (longest first) into batches of batch_size.

    Ties are broken by sample index, so the same set of samples always forms the same batches: results then
    do not depend on the order LoadGen issued them in (TEST01 compares answers byte for byte).
    """
    order = sorted(range(len(indices)), key=lambda i: (-int(lengths[indices[i]]), indices[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def load_qa_model(model_path, device: str = "cpu", precision: str = "fp32", threads: int | None = None):
    """transformers' BertForQuestionAnswering in eval mode on `device`, fp32 (the torch-cpu backend's model;
    the Ray workers load theirs the same way)."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    if precision != "fp32":
        raise SubtoolError(
            f"precision {precision!r} is not supported by the torch-cpu backend",
            rule="run.precision",
            hint="use --precision fp32 on CPU",
        )
    if threads:
        torch.set_num_threads(threads)
    from subtool.runner.bert.checkpoint import load_bert_qa

    model = load_bert_qa(Path(model_path), torch.float32)
    return model.eval().to(torch.device(device))


def bert_qa_logits(model, features, indices, device) -> np.ndarray:
    """[len(indices), 384, 2] float32 start/end logits for these feature indices, in their order, from one
    forward padded only to the longest of them. `features` needs input_ids, input_mask, segment_ids and
    seq_lengths (a SquadFeatures, or the Ray workers' copy of those four arrays)."""
    import torch

    n = int(max(features.seq_lengths[i] for i in indices))
    ids = torch.from_numpy(features.input_ids[indices, :n].astype(np.int64)).to(device)
    mask = torch.from_numpy(features.input_mask[indices, :n].astype(np.int64)).to(device)
    seg = torch.from_numpy(features.segment_ids[indices, :n].astype(np.int64)).to(device)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=seg)
    logits = torch.stack([out.start_logits, out.end_logits], dim=-1).float().cpu().numpy()
    full = np.zeros((len(indices), MAX_SEQ_LENGTH, 2), dtype=np.float32)
    full[:, :n, :] = logits
    return full


class TorchBertSUT(SutFailure):
    def __init__(
        self,
        model_path,
        features: SquadFeatures,
        batch_size: int = 32,
        device: str = "cpu",
        threads: int | None = None,
        precision: str = "fp32",
    ):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.model = load_qa_model(model_path, device, precision, threads)
        self.features = features
        self.batch_size = max(1, int(batch_size))
        self.stats = SutStats()
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._worker = threading.Thread(target=self._work, name="subtool-sut", daemon=True)
        self._worker.start()
        import mlperf_loadgen as lg

        self.lg = lg
        self.handle = loadgen_watch.construct_sut(lg, self.issue_queries, self.flush_queries)

    # LoadGen callbacks ------------------------------------------------------------------------------
    def issue_queries(self, query_samples) -> None:
        self._queue.put([(qs.id, qs.index) for qs in query_samples])

    def flush_queries(self) -> None:
        pass

    # the worker ---------------------------------------------------------------------------------------
    def _drain(self, first: list) -> list:
        pending = list(first)
        while len(pending) < self.batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            pending.extend(item)
        return pending

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            pending = self._drain(item)
            try:
                self.run_samples(pending)
            except BaseException as exc:  # reported by stop(); LoadGen would otherwise wait forever
                self._error = exc
                self._complete_empty(pending)

    def _complete_empty(self, samples) -> None:
        responses = [self.lg.QuerySampleResponse(qid, 0, 0) for qid, _ in samples]
        loadgen_watch.complete(self.lg, responses)

    def infer(self, indices: list[int]) -> np.ndarray:
        """[len(indices), 384, 2] float32 logits for these feature indices, in their order."""
        return bert_qa_logits(self.model, self.features, indices, self.device)

    def run_samples(self, samples: list[tuple[int, int]]) -> None:
        indices = [idx for _, idx in samples]
        for batch in plan_batches(indices, self.features.seq_lengths, self.batch_size):
            out = self.infer([indices[i] for i in batch])
            responses = []
            for row, pos in enumerate(batch):
                arr = out[row]
                responses.append(self.lg.QuerySampleResponse(samples[pos][0], arr.ctypes.data, arr.nbytes))
            loadgen_watch.complete(self.lg, responses)
            self.stats.samples += len(batch)
            self.stats.batches += 1

    def stop(self) -> None:
        self._queue.put(None)
        self._worker.join()
        self.lg.DestroySUT(self.handle)
        if self._error is not None:
            raise SubtoolError(f"the SUT failed during the run: {self._error!r}", rule="run.sut_error")
