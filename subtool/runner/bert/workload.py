"""The bert-99 / bert-99.9 workload: data loading, the QSL, and the accuracy step (checkpoint checks: checkpoint.py)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from subtool.errors import SubtoolError
from subtool.fsutil import atomic_output_file
from subtool.mlperf.benchmarks import BENCHMARKS
from subtool.runner.bert.checkpoint import check_checkpoint, load_tokenizer
from subtool.runner.bert.squad import (
    DOC_STRIDE,
    MAX_QUERY_LENGTH,
    MAX_SEQ_LENGTH,
    SquadExample,
    SquadFeatures,
    convert_examples_to_features,
    read_squad,
)
from subtool.runner.bert.squad_eval import best_answers, squad_v11_scores
from subtool.runner.harness import accuracy_entries

FEATURE_CACHE_VERSION = "1"


@dataclass(frozen=True)
class BertSpec:
    name: str  # official benchmark name
    loadgen_model: str  # the model name in LoadGen's mlperf.conf / user.conf
    sample_count: int  # features in the official data set = performance_sample_count
    f1_target: float  # closed-division accuracy threshold
    compliance: tuple[str, ...] = ()  # the compliance tests a closed-division result needs
    output_dtype: str = "float32"


# The benchmark facts come from the catalogue (subtool/mlperf/benchmarks.py); every benchmark of the bert family.
WORKLOADS = {
    b.name: BertSpec(b.name, b.conf_name, b.performance_sample_count, dict(b.targets())["f1"], b.compliance_tests)
    for b in BENCHMARKS.values()
    if b.family == "bert"
}


@dataclass
class BertData:
    examples: list[SquadExample]
    features: SquadFeatures
    tokenizer: object
    dataset_sha256: str


def load_data(model_path: Path, dataset_path: Path, cache_dir: Path | None, config: dict) -> BertData:
    tokenizer = load_tokenizer(model_path, config)
    examples, dataset_sha = read_squad(dataset_path)  # the hash of the very bytes the examples came from
    features = None
    cache_file = None
    if cache_dir is not None:
        vocab_sha = hashlib.sha256(
            "\n".join(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))).encode()
        ).hexdigest()
        key = hashlib.sha256(
            f"{FEATURE_CACHE_VERSION}:{dataset_sha}:{vocab_sha}:{MAX_SEQ_LENGTH}:"
            f"{MAX_QUERY_LENGTH}:{DOC_STRIDE}".encode()
        ).hexdigest()[:24]
        cache_file = cache_dir / f"squad-features-{key}.npz"
        if cache_file.exists():
            try:
                features = SquadFeatures.load(cache_file)
            except (OSError, ValueError, KeyError):
                features = None  # a damaged cache is rebuilt, never trusted
    built = features is None
    if built:
        features = convert_examples_to_features(examples, tokenizer)
    _refuse_unanswerable(examples, features, dataset_path)
    if built and cache_file is not None:
        with atomic_output_file(cache_file) as fh:
            np.savez(fh, **{k: getattr(features, k) for k in SquadFeatures.__dataclass_fields__})
    return BertData(examples=examples, features=features, tokenizer=tokenizer, dataset_sha256=dataset_sha)


def _refuse_unanswerable(examples, features: SquadFeatures, dataset_path: Path) -> None:
    """Every question has a feature: one whose paragraph tokenizes to nothing (a context of no-break and ideographic
    spaces) is never answered yet scored, a 0 among the others without a word; all of them, a run over no samples
    that reports 0 as a success."""
    answered = set(np.unique(features.example_index).tolist())
    missing = [i for i in range(len(examples)) if i not in answered]
    if missing:
        first = examples[missing[0]]
        raise SubtoolError(
            f"{len(missing)} of {len(examples)} questions give no features: their paragraphs tokenize to nothing "
            f"(the first: {first.qas_id!r})",
            path=dataset_path,
            rule="dataset.squad_v1.1",
        )


def read_accuracy_log(path: Path, seq_len: int = MAX_SEQ_LENGTH) -> dict[int, np.ndarray]:
    """qsl index → [seq_len, 2] float32 start/end logits, from LoadGen's mlperf_log_accuracy.json."""
    logits: dict[int, np.ndarray] = {}
    for idx, raw in accuracy_entries(path):
        if len(raw) % 8:
            raise SubtoolError(
                f"qsl_idx {idx}: {len(raw)} bytes is not a list of float32 (start, end) pairs",
                path=path,
                rule="acc.log_parse",
            )
        logits[idx] = np.frombuffer(raw, dtype=np.float32).reshape(-1, 2)
    return logits


def accuracy(data: BertData, accuracy_log: Path) -> dict[str, float]:
    logits = read_accuracy_log(accuracy_log)
    missing = len(data.features) - len(logits.keys() & set(range(len(data.features))))
    if missing:
        raise SubtoolError(
            f"the accuracy log answers {len(data.features) - missing} of {len(data.features)} "
            "samples; an accuracy run must cover every sample",
            path=accuracy_log,
            rule="acc.incomplete_log",
        )
    predictions = best_answers(data.examples, data.features, logits, data.tokenizer.convert_ids_to_tokens)
    return squad_v11_scores(predictions, data.examples)


def accuracy_on_samples(data: BertData, accuracy_log: Path, qsl_indices: set[int]) -> dict[str, float]:
    """EM/F1 over the questions whose features include one of qsl_indices, from those features' logits only.

    TEST01 scores the accuracy run and the compliance run on the same sampled features this way, so the two
    numbers are comparable.
    """
    logits = {i: v for i, v in read_accuracy_log(accuracy_log).items() if i in qsl_indices}
    covered = sorted({int(data.features.example_index[i]) for i in logits if i < len(data.features)})
    if not covered:
        raise SubtoolError(
            "no sampled feature belongs to the data set", path=accuracy_log, rule="compliance.empty_sample"
        )
    predictions = best_answers(data.examples, data.features, logits, data.tokenizer.convert_ids_to_tokens)
    return squad_v11_scores(predictions, [data.examples[i] for i in covered])


def accuracy_line(scores: dict[str, float]) -> str:
    """The line the official checker's F1 pattern reads: {"exact_match": 83.1, "f1": 90.8}."""
    return json.dumps({"exact_match": round(scores["exact_match"], 5), "f1": round(scores["f1"], 5)})


class BertQSL:
    """LoadGen's query sample library over features already in memory (loading is a no-op)."""

    def __init__(self, features: SquadFeatures, performance_count: int):
        import mlperf_loadgen as lg

        self.features = features
        self.count = len(features)
        self.performance_count = min(performance_count, self.count)
        self.handle = lg.ConstructQSL(self.count, self.performance_count, self._load, self._unload)

    def _load(self, indices):
        pass

    def _unload(self, indices):
        pass

    def destroy(self) -> None:
        import mlperf_loadgen as lg

        lg.DestroyQSL(self.handle)


class BertWorkload:
    """bert-99 / bert-99.9 behind the runner's Workload interface (see runner/workload.py)."""

    def __init__(self, name: str):
        from subtool.runner.workload import BenchmarkSpec

        w = WORKLOADS[name]
        self.spec = BenchmarkSpec(
            name=w.name,
            loadgen_model=w.loadgen_model,
            sample_count=w.sample_count,
            backends=tuple(SUT_BACKENDS),
            compliance=w.compliance,
        )
        self._config: dict = {}

    def check_model(self, model_path: Path) -> dict:
        self._config = check_checkpoint(model_path)
        return self._config

    def demo_assets(self) -> tuple[Path, Path]:
        from subtool.runner.bert.demo import demo_assets

        assets = demo_assets()
        return assets.model_path, assets.dataset_path

    def load(self, model_path: Path, dataset_path: Path, cache_dir: Path | None):
        from subtool.runner.workload import LoadedData

        config = self._config or check_checkpoint(model_path)
        data = load_data(model_path, dataset_path, cache_dir, config)
        return LoadedData(
            payload=data,
            sample_count=len(data.features),
            description=f"{len(data.examples)} questions → {len(data.features)} features",
            dataset_sha256=data.dataset_sha256,
        )

    def resolve_precision(self, backend: str, precision: str, model_path: Path | None = None) -> str:
        """auto: fp32 on torch-cpu; on torch-cuda it stays `auto` (after checking the GPU is there) and is decided
        from evidence once the data and weights are loaded (make_sut → bert/precision_choice.py); refuses what the
        backend cannot run. Ray workers resolve it against the backend they run (sut_ray: fp32 on CPU workers; GPU
        workers start in GPU_PRECISION and take what the first of them decides from evidence)."""
        if backend == "ray":
            return precision
        if precision == "auto" and backend == "torch-cuda":
            from subtool.runner.bert.sut_cuda import check_request

            check_request(GPU_PRECISION)  # a GPU is there: refused now, before any data loads, if not
            return "auto"
        if precision == "auto":
            precision = "fp32"
        if backend == "torch-cuda":
            from subtool.runner.bert.sut_cuda import check_request

            check_request(precision)
        elif backend == "torch-cpu" and precision != "fp32":
            raise SubtoolError(
                f"precision {precision!r} is not supported by the torch-cpu backend",
                rule="run.precision",
                hint="use --precision fp32 on CPU, or --backend torch-cuda",
            )
        return precision

    def check_backend(self, model_path: Path, config) -> None:
        """bert's backends have nothing to check before the data loads: the precision was decided before the run
        (resolve_precision), and what remains (the weights, a Ray cluster) is checked as the SUT starts."""
        return None

    def make_sut(self, model_path: Path, data, config):
        factory = SUT_BACKENDS.get(config.backend)
        if factory is None:
            raise SubtoolError(
                f"unknown backend {config.backend!r} for {self.spec.name}; choose one of {', '.join(SUT_BACKENDS)}",
                rule="run.backend",
            )
        if factory in (_torch_cuda_sut, _ray_sut):  # auto and fp8 decide from the data set's questions
            return factory(model_path, data.payload.features, config, data.payload, self.f1_ratio)
        return factory(model_path, data.payload.features, config)

    @property
    def f1_ratio(self) -> float:
        """The accuracy target as a share of the reference's F1 (bert-99: 0.99), from the catalogue."""
        return next(frac for metric, _, frac in BENCHMARKS[self.spec.name].accuracy if metric == "F1")

    def make_qsl(self, data):
        return BertQSL(data.payload.features, self.spec.sample_count)

    def accuracy(self, data, accuracy_log: Path) -> tuple[dict, str]:
        scores = accuracy(data.payload, accuracy_log)
        return scores, accuracy_line(scores)

    def accuracy_on_samples(self, data, accuracy_log: Path, qsl_indices: set[int]) -> tuple[dict, str]:
        scores = accuracy_on_samples(data.payload, accuracy_log, qsl_indices)
        return scores, accuracy_line(scores)

    def measurements(self, demo: bool, model_path: Path, precision: str) -> dict:
        return {
            "input_data_types": "int32",
            "retraining": "No",
            "starting_weights_filename": ("subtool embedded demo: random weights" if demo else Path(model_path).name),
            "weight_data_types": precision,
            "weight_transformations": "none",
        }


def _torch_cpu_sut(model_path: Path, features: SquadFeatures, config):
    from subtool.runner.bert.sut_cpu import TorchBertSUT

    return TorchBertSUT(
        model_path, features, batch_size=config.batch_size, threads=config.threads, precision=config.precision
    )


def _torch_cuda_sut(model_path: Path, features: SquadFeatures, config, data: BertData | None = None, ratio=0.99):
    from subtool.runner.bert.sut_cuda import TorchCudaBertSUT

    model, record, precision = None, None, config.precision
    if data is not None and precision in ("auto", "fp8"):
        from subtool.runner.bert.precision_choice import prepare

        choice = prepare(model_path, data, precision, ratio, "cuda")
        print(choice.line, flush=True)
        model, record, precision = choice.model, choice.record(), choice.precision
    return TorchCudaBertSUT(
        model_path,
        features,
        precision=precision,
        batch_size=config.batch_size if config.batch_size_given else None,  # None: the SUT's own token budget
        token_budget=config.extra.get("token_budget"),
        slots=config.extra.get("slots", 2),
        model=model,
        precision_record=record,
    )


def _ray_sut(model_path: Path, features: SquadFeatures, config, data: BertData | None = None, ratio=0.99):
    from subtool.runner.bert.sut_ray import make_ray_sut

    return make_ray_sut(model_path, features, config, gpu_precision=GPU_PRECISION, data=data, ratio=ratio)


# the precision GPU workers of the ray backend load before `auto` is decided (and keep where no data set is given):
# fp16, whose torch-cuda path keeps the residual stream in float32 and agrees with fp32 answers at F1 99.6
# (bf16: 94.8), for 16 % less speed than bf16 (bench/results/bert_gpu_h100.json)
GPU_PRECISION = "fp16"
# backend name → factory(model_path, features, SutConfig); GPU backends register here too
SUT_BACKENDS = {"torch-cpu": _torch_cpu_sut, "torch-cuda": _torch_cuda_sut, "ray": _ray_sut}


def workload(name: str) -> BertWorkload:
    return BertWorkload(name)
