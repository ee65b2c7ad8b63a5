"""What runs inside one Ray actor: a copy of the BERT model and its forward over feature indices.

The driver (sut_ray.py) sends each actor the checkpoint path and, once, the four feature arrays the forward
reads (through Ray's object store, so a node fetches them once and its actors share that copy); from then on a
request is a list of feature indices and a reply is their float32 logits, [n, longest of them, 2].
Nothing here imports Ray:
the driver wraps `BertWorker` in `ray.remote`, so the class also runs (and is tested) in a plain process.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import numpy as np

from subtool.errors import SubtoolError
from subtool.runner.bert.squad import MAX_SEQ_LENGTH


@dataclass(frozen=True)
class ModelInputs:
    """The part of SquadFeatures a forward reads (the answer-decoding maps stay with the driver)."""

    input_ids: np.ndarray  # int32 [n, 384]
    input_mask: np.ndarray  # int8  [n, 384]
    segment_ids: np.ndarray  # int8  [n, 384]
    seq_lengths: np.ndarray  # int32 [n]

    @classmethod
    def from_features(cls, features) -> ModelInputs:
        return cls(features.input_ids, features.input_mask, features.segment_ids, features.seq_lengths)

    def __len__(self) -> int:
        return int(self.seq_lengths.shape[0])


class PaddedEngine:
    """The torch-cpu backend's model and forward (transformers' BERT, batches padded to their longest)."""

    def __init__(
        self, model_path: str, inputs: ModelInputs, precision: str, batch_size: int, device: str, threads: int | None
    ):
        from subtool.runner.bert.sut_cpu import load_qa_model

        self.inputs = inputs
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.model = load_qa_model(model_path, device, precision, threads)

    def infer(self, indices: np.ndarray) -> np.ndarray:
        from subtool.runner.bert.sut_cpu import bert_qa_logits, plan_batches

        out = np.empty((len(indices), MAX_SEQ_LENGTH, 2), np.float32)
        for batch in plan_batches(list(indices), self.inputs.seq_lengths, self.batch_size):
            out[batch] = bert_qa_logits(self.model, self.inputs, [int(indices[i]) for i in batch], self.device)
        return out


class PackedEngine:
    """The torch-cuda backend's model (packed variable-length forward) run eagerly, one token-budget batch at
    a time: the GPU SUT's arithmetic without its CUDA graphs and copy streams."""

    def __init__(
        self, model_path: str, inputs: ModelInputs, precision: str, batch_size: int, device: str, threads: int | None
    ):
        from subtool.runner.bert.packed_model import PackedBert
        from subtool.runner.bert.sut_cuda import check_request

        check_request(precision, device)
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.inputs = inputs
        self.model_path = model_path
        self.precision = precision
        self.lengths = np.asarray(inputs.seq_lengths, dtype=np.int64)
        self.budget = max(1, int(batch_size)) * MAX_SEQ_LENGTH
        self.model = PackedBert(model_path, device=device, precision=precision)
        self.device = self.model.device

    def decide(self, data, ratio: float, asked: str) -> dict:
        """`--precision fp8` (planned: scales calibrated, per-layer fallback) or `auto` (chosen from evidence) on this
        engine's checkpoint against `data`'s answers, as precision_choice does on one GPU; this engine then runs
        what was decided. Returns the precision, the line that says why, the record, and fp8's settings (None for
        any other precision) for the other workers to `take`."""
        from subtool.runner.bert import fp8_plan, precision_choice
        from subtool.runner.bert.packed_model import PackedBert
        from subtool.runner.bert.sut_cuda import check_request

        def build(p: str):
            check_request(p, self.device.type)  # fp8 on a GPU without it: that candidate refused, with the reason
            return PackedBert(self.model_path, device=self.device, precision=p)

        if asked == "fp8":
            self._need_fp8()
            fp32 = lambda: build("fp32")  # noqa: E731
            choice = precision_choice.plan_fp8(lambda: self.model, fp32, data, ratio, token_budget=self.budget)
        elif asked == "auto":
            self.model = None  # its memory for the candidates; the chosen one replaces it
            choice = precision_choice.choose(data, build, ratio, token_budget=self.budget)
        else:
            raise ValueError(f"nothing to decide for precision {asked!r}")
        self.model, self.precision = choice.model, choice.precision
        settings = fp8_plan.settings(self.model) if choice.precision == "fp8" else None
        return {"precision": choice.precision, "line": choice.line, "record": choice.record(), "settings": settings}

    def take(self, precision: str, settings: dict | None) -> None:
        """Run what another worker decided: the model loaded again in `precision` where that differs from this one's,
        and fp8's scales and fallback (fp8_plan.apply_settings)."""
        from subtool.runner.bert import fp8_plan
        from subtool.runner.bert.packed_model import PackedBert

        if precision != self.precision:
            self.model = None
            self.model = PackedBert(self.model_path, device=self.device, precision=precision)
            self.precision = precision
        if settings is not None:
            self._need_fp8()
            fp8_plan.apply_settings(self.model, settings)

    def _need_fp8(self) -> None:
        if self.precision != "fp8":
            raise ValueError(f"no fp8 plan for a {self.precision} engine")

    def infer(self, indices: np.ndarray) -> np.ndarray:
        from subtool.runner.bert.packed_plan import TokenBatcher, pack_inputs

        torch = self.model.torch
        dev = self.model.device
        f = self.inputs
        result = np.zeros((len(indices), MAX_SEQ_LENGTH, 2), np.float32)
        batcher = TokenBatcher(self.lengths, self.budget)
        batcher.add(np.arange(len(indices), dtype=np.uint64), np.asarray(indices, dtype=np.int64))
        with torch.inference_mode():
            while (batch := batcher.take()) is not None:
                p = pack_inputs(f.input_ids, f.segment_ids, self.lengths, batch.indices, batch.bucket, batch.capacity)
                t = [
                    torch.from_numpy(np.ascontiguousarray(a)).to(dev)
                    for a in (p.input_ids, p.segment_ids, p.position_ids, p.out_rows, p.cu_seqlens)
                ]
                out = torch.empty((batch.capacity * MAX_SEQ_LENGTH + 1, 2), dtype=torch.float32, device=dev)
                self.model.forward(*t, out, sequences=p.sequences)
                rows = out[: p.sequences * MAX_SEQ_LENGTH].view(p.sequences, MAX_SEQ_LENGTH, 2).cpu().numpy()
                result[batch.query_ids.astype(np.int64)] = rows
        return result


# inner backend name → (engine class, device); the Ray resources one actor asks for: ray_pool.WORKER_RESOURCES
ENGINES = {
    "torch-cpu": (PaddedEngine, "cpu"),
    "torch-cuda": (PackedEngine, "cuda"),
}


class BertWorker:
    """One actor's state. A setup failure is kept and reported by `ready()` (as data, so the driver can name
    the node and the cause in one line), never raised from the constructor where Ray would bury it."""

    def __init__(
        self,
        inner_backend: str,
        model_path: str,
        inputs: ModelInputs,
        precision: str = "fp32",
        batch_size: int = 32,
        threads: int | None = None,
        device: str | None = None,
    ):
        from subtool.runner.ray_pool import die_with_raylet

        die_with_raylet()  # a worker never outlives its node's raylet
        self.node = socket.gethostname()
        self.pid = os.getpid()
        self.engine = None
        self.error: dict | None = None
        self.samples = 0
        try:
            engine_cls, default_device = ENGINES[inner_backend]
            from pathlib import Path

            from subtool.runner.bert.checkpoint import check_checkpoint

            check_checkpoint(Path(model_path))
            self.engine = engine_cls(model_path, inputs, precision, batch_size, device or default_device, threads)
        except SubtoolError as err:
            self.error = {"message": err.message, "path": err.path, "rule": err.rule, "hint": err.hint}
        except Exception as exc:  # torch, CUDA, transformers: whatever stops the model from loading
            self.error = {
                "message": f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                "path": None,
                "rule": "run.ray_worker_setup",
                "hint": None,
            }

    def ready(self) -> dict:
        from subtool import __version__
        from subtool.runner.ray_pool import node_address, process_niceness

        return {
            "node": self.node,
            "node_ip": node_address(),
            "pid": self.pid,
            "nice": process_niceness(),
            "subtool": __version__,
            "error": self.error,
        }

    def decide(self, data, ratio: float, asked: str) -> dict:
        """The precision decided on this worker's model (PackedEngine.decide), for the driver to hand to the others."""
        return self._engine(f"decide --precision {asked}").decide(data, ratio, asked)

    def take(self, precision: str, settings: dict | None) -> None:
        self._engine(f"take {precision}").take(precision, settings)

    def _engine(self, what: str):
        if self.engine is None:
            raise RuntimeError(f"worker on {self.node} has no model: {self.error}")
        if not hasattr(self.engine, "decide"):
            raise RuntimeError(f"worker on {self.node} runs {type(self.engine).__name__}, which cannot {what}")
        return self.engine

    def infer(self, indices) -> np.ndarray:
        """[n, m, 2] float32 logits of these samples, m the longest of them: positions past m are zero for every
        sample, so the driver pads them back to 384 instead of receiving them (about half the bytes on SQuAD)."""
        if self.engine is None:
            raise RuntimeError(f"worker on {self.node} has no model: {self.error}")
        indices = np.asarray(indices, dtype=np.int64)
        out = self.engine.infer(indices)
        self.samples += len(indices)
        longest = int(self.engine.inputs.seq_lengths[indices].max()) if len(indices) else 0
        return np.ascontiguousarray(out[:, :longest])
