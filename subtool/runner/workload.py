"""What a workload (one model family) gives the runner, and the registry of benchmark names.

The session drives any workload the same way: load data → SUT and QSL → LoadGen modes → accuracy. A new model
family is one module implementing `Workload` plus an entry in `WORKLOAD_MODULES`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from subtool.errors import SubtoolError
from subtool.mlperf.benchmarks import runnable


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str  # official benchmark name, e.g. "bert-99"
    loadgen_model: str  # model name in LoadGen's mlperf.conf / user.conf, e.g. "bert"
    sample_count: int  # official data set size = performance_sample_count
    scenarios: tuple[str, ...] = ("Offline", "Server", "SingleStream", "MultiStream")
    backends: tuple[str, ...] = ("torch-cpu",)
    token_metrics: bool = False  # LLMs: tokens/s and TTFT/TPOT (use_token_latencies)
    compliance: tuple[str, ...] = ()  # compliance tests a closed-division result needs and subtool can run
    extra: dict = field(default_factory=dict)


@dataclass
class LoadedData:
    """Whatever the workload loaded, plus the facts the run record keeps."""

    payload: object  # workload-specific (features, prompts, …)
    sample_count: int  # samples the QSL holds
    description: str  # one line for the console, e.g. "10570 questions → 10833 features"
    dataset_sha256: str


@dataclass
class SutConfig:
    backend: str = "torch-cpu"
    precision: str = "fp32"
    batch_size: int = 32
    batch_size_given: bool = True  # False: the user left --batch-size alone, a workload may pick its own
    threads: int | None = None
    extra: dict = field(default_factory=dict)


class SutFailure:
    """What every SUT does once it fails: it answers LoadGen's queries empty (else LoadGen waits for ever) and keeps
    why in `_error` (the exception, or its words). `failure` says it, and the session ends the run after the mode
    in which it failed, so that no such mode is kept or reused as a result."""

    _error: BaseException | str | None = None

    @property
    def failure(self) -> str | None:
        error = self._error
        return None if error is None else error if isinstance(error, str) else repr(error)


class Sut(Protocol):
    handle: object  # from mlperf_loadgen.ConstructSUT

    @property
    def failure(self) -> str | None: ...  # why it answers empty since it failed; None while it works

    def stop(self) -> None: ...


class Qsl(Protocol):
    handle: object  # from mlperf_loadgen.ConstructQSL

    def destroy(self) -> None: ...


class Workload(Protocol):
    spec: BenchmarkSpec

    def check_model(self, model_path: Path) -> dict: ...
    def resolve_precision(self, backend: str, precision: str, model_path: Path | None = None) -> str:
        """The precision this family runs on `backend` (a concrete one, not auto or ray) for the user's
        --precision: `auto` becomes the family's choice (which may read the checkpoint's config at `model_path`);
        one the backend cannot run is refused in one line, before any data or weights load. The only place a
        precision is decided or checked."""
        ...

    def demo_assets(self) -> tuple[Path, Path]: ...
    def check_backend(self, model_path: Path, config: SutConfig) -> None:
        """What the backend's options (and a server it talks to) can be checked for before the data loads, refused
        in one line: a wrong one is then said in seconds, not after the data set is read."""
        ...

    def load(self, model_path: Path, dataset_path: Path, cache_dir: Path | None) -> LoadedData: ...
    def make_sut(self, model_path: Path, data: LoadedData, config: SutConfig) -> Sut: ...
    def make_qsl(self, data: LoadedData) -> Qsl: ...
    def accuracy(self, data: LoadedData, accuracy_log: Path) -> tuple[dict, str]: ...
    def measurements(self, demo: bool, model_path: Path, precision: str) -> dict: ...


# benchmark name → module defining `workload(name) -> Workload`: every catalogue benchmark with a model family
WORKLOAD_MODULES: dict[str, str] = {b.name: f"subtool.runner.{b.family}.workload" for b in runnable()}


def backend_names() -> tuple[str, ...]:
    """Every SUT backend a model family offers (its SUT_BACKENDS table, including one a test registered):
    the one list `--backend` is checked against. Imports the families' workload modules, never torch."""
    names: dict[str, None] = {}
    for module in dict.fromkeys(WORKLOAD_MODULES.values()):
        names.update(dict.fromkeys(importlib.import_module(module).SUT_BACKENDS))
    return tuple(names)


def get_workload(name: str) -> Workload:
    module = WORKLOAD_MODULES.get(name)
    if module is None:
        raise SubtoolError(
            f"unknown model {name!r}; subtool runs {', '.join(sorted(WORKLOAD_MODULES))}", rule="run.model"
        )
    return importlib.import_module(module).workload(name)
