"""A SUT that answers every sample the moment LoadGen issues it (zero logits, millions of samples/s): the
fastest hardware there is. `register()` adds it as bert's backend "instant", the way the real backends are
registered (workloads/bert.SUT_BACKENDS); `sitecustomize(dir)` writes a sitecustomize.py that registers it in
the benchmark's child process too, so `subtool run --backend instant` runs it through the CLI's own path."""

from __future__ import annotations

import os
from pathlib import Path

from subtool.runner import loadgen_watch

BACKEND = "instant"


class InstantSUT:
    def __init__(self, seq_len: int):
        import mlperf_loadgen as lg
        import numpy as np

        self._lg = lg
        self._answer = np.zeros((seq_len, 2), dtype=np.float32)  # start/end logits, as bert answers
        self._ptr, self._bytes = self._answer.ctypes.data, self._answer.nbytes
        self.samples = 0
        self.handle = loadgen_watch.construct_sut(lg, self._issue, self._flush)

    def _issue(self, samples) -> None:
        self.samples += len(samples)
        make = self._lg.QuerySampleResponse
        loadgen_watch.complete(self._lg, [make(s.id, self._ptr, self._bytes) for s in samples])

    def _flush(self) -> None:
        pass

    def stop(self) -> None:
        self._lg.DestroySUT(self.handle)


class AbortingSUT(InstantSUT):
    """Answers as InstantSUT; its shutdown kills the process the way a native library failing in its own teardown
    does (SIGABRT: glibc's assertions, as seen once from a Ray run's teardown)."""

    def stop(self) -> None:
        super().stop()
        os.abort()


class FailingStopSUT(InstantSUT):
    """Answers as InstantSUT; its shutdown finds a problem with the run and says so (as the Ray SUTs do when a
    worker failed or an answer went missing)."""

    def stop(self) -> None:
        from subtool.errors import SubtoolError

        super().stop()
        raise SubtoolError("the SUT found a problem at the end of the run", rule="run.sut_error")


class BrokenStopSUT(InstantSUT):
    """Answers as InstantSUT; its shutdown raises a plain Python error (a bug, not a finding)."""

    def stop(self) -> None:
        super().stop()
        raise RuntimeError("shutdown bug")


class InterruptedStopSUT(InstantSUT):
    """Answers as InstantSUT; Ctrl-C reaches its shutdown (Python's SIGINT handler raises KeyboardInterrupt there,
    as a user pressing Ctrl-C while the SUT shuts down would)."""

    def stop(self) -> None:
        super().stop()
        raise KeyboardInterrupt


class MixedWeightsSUT(InstantSUT):
    """Answers as InstantSUT, and knows its weights ran in two precisions (as bert's fp8 SUT does when some layers
    fell back to bf16): the system description must say so, not the precision's name."""

    weight_data_types = "fp8, bf16"


class FailingSUT(InstantSUT):
    """Fails on LoadGen's first query, as a Ray SUT does that lost its last worker: it answers that query and every
    later one empty, at once, and says why in `failure` (runner/workload.SutFailure)."""

    failure: str | None = None

    def _issue(self, samples) -> None:
        self.failure = "every worker was lost"
        self.samples += len(samples)
        loadgen_watch.complete(self._lg, [self._lg.QuerySampleResponse(s.id, 0, 0) for s in samples])


class LateSUT(InstantSUT):
    """Answers as InstantSUT, each query LATE_S seconds after LoadGen issued it (a slow model: LoadGen waits on
    the SUT, not the other way round)."""

    LATE_S = 3.0

    def _issue(self, samples) -> None:
        import threading

        answer = super()._issue
        threading.Timer(self.LATE_S, answer, args=(list(samples),)).start()


def _factory_of(cls):
    """bert's backend factory for one of these SUTs: answers as wide as the features."""

    def factory(model_path, features, config):
        return cls(int(features.input_ids.shape[1]))

    return factory


def _broken_factory(model_path, features, config):
    """A backend whose loading raises an exception no check foresaw (as a library can on a file it parses)."""
    return {}["no such key"]


_factory = _factory_of(InstantSUT)
# bert backends by name: the instant SUT, three whose shutdown fails (natively, with a finding, with a bug), one
# whose shutdown Ctrl-C stops, one
# whose weights ran in two precisions, one whose loading raises, one that fails on the first query, and one that
# answers each query seconds late
BACKENDS = {
    BACKEND: _factory,
    "instant-abort": _factory_of(AbortingSUT),
    "instant-stop-error": _factory_of(FailingStopSUT),
    "instant-stop-bug": _factory_of(BrokenStopSUT),
    "instant-stop-ctrl-c": _factory_of(InterruptedStopSUT),
    "instant-mixed-weights": _factory_of(MixedWeightsSUT),
    "instant-load-bug": _broken_factory,
    "instant-failing": _factory_of(FailingSUT),
    "instant-late": _factory_of(LateSUT),
}


def register() -> None:
    from subtool.runner.bert import workload as bert

    bert.SUT_BACKENDS.update(BACKENDS)


def sitecustomize(directory: Path) -> Path:
    import subtool

    directory.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve().parent
    # the subtool this process imported, first: site runs before the child puts its own folder on sys.path, so
    # `import instant_sut` here would otherwise import whichever subtool is installed (another checkout's)
    project = Path(subtool.__file__).resolve().parents[1]
    (directory / "sitecustomize.py").write_text(
        f"import sys\nsys.path[:0] = [{str(project)!r}, {str(here)!r}]\nimport instant_sut\ninstant_sut.register()\n"
    )
    return directory
