"""A SUT that answers every sample the moment LoadGen issues it (zero logits, millions of samples/s): the
fastest hardware there is. `register()` adds it as bert's backend "instant", the way the real backends are
registered (workloads/bert.SUT_BACKENDS); `sitecustomize(dir)` writes a sitecustomize.py that registers it in
the benchmark's child process too, so `subtool run --backend instant` runs it through the CLI's own path."""

from __future__ import annotations

from pathlib import Path

BACKEND = "instant"


class InstantSUT:
    def __init__(self, seq_len: int):
        import mlperf_loadgen as lg
        import numpy as np

        self._lg = lg
        self._answer = np.zeros((seq_len, 2), dtype=np.float32)  # start/end logits, as bert answers
        self._ptr, self._bytes = self._answer.ctypes.data, self._answer.nbytes
        self.samples = 0
        self.handle = lg.ConstructSUT(self._issue, self._flush)

    def _issue(self, samples) -> None:
        self.samples += len(samples)
        make = self._lg.QuerySampleResponse
        self._lg.QuerySamplesComplete([make(s.id, self._ptr, self._bytes) for s in samples])

    def _flush(self) -> None:
        pass

    def stop(self) -> None:
        self._lg.DestroySUT(self.handle)


def _factory(model_path, features, config):
    return InstantSUT(int(features.input_ids.shape[1]))


def register() -> None:
    from subtool.runner.bert import workload as bert

    bert.SUT_BACKENDS[BACKEND] = _factory


def sitecustomize(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve().parent
    (directory / "sitecustomize.py").write_text(
        f"import sys\nsys.path.insert(0, {str(here)!r})\nimport instant_sut\ninstant_sut.register()\n"
    )
    return directory
