"""The bert-99 / bert-99.9 workload: checkpoint and data loading, the QSL, and the accuracy step."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from subtool.errors import SubtoolError
from subtool.fsutil import atomic_output_file
from subtool.runner.bert.squad import (
    DOC_STRIDE,
    MAX_QUERY_LENGTH,
    MAX_SEQ_LENGTH,
    SquadExample,
    SquadFeatures,
    convert_examples_to_features,
    read_squad_examples,
)
from subtool.runner.bert.squad_eval import best_answers, squad_v11_scores

FEATURE_CACHE_VERSION = "1"


@dataclass(frozen=True)
class BertSpec:
    name: str  # official benchmark name
    loadgen_model: str  # the model name in LoadGen's mlperf.conf / user.conf
    sample_count: int  # features in the official data set = performance_sample_count
    f1_target: float  # closed-division accuracy threshold
    output_dtype: str = "float32"


WORKLOADS = {
    "bert-99": BertSpec("bert-99", "bert", 10833, 90.874 * 0.99),
    "bert-99.9": BertSpec("bert-99.9", "bert", 10833, 90.874 * 0.999),
}


@dataclass
class BertData:
    examples: list[SquadExample]
    features: SquadFeatures
    tokenizer: object
    dataset_sha256: str


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# The MLPerf reference PyTorch checkpoint (zenodo 3733896 / build/data/bert_tf_v1_1_large_fp32_384_v2): a state
# dict of transformers' BertForQuestionAnswering plus Google's bert_config.json (no model_type field).
REFERENCE_WEIGHTS = "model.pytorch"
REFERENCE_CONFIG = "bert_config.json"
BERT_CONFIG_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")


def checkpoint_format(model_path: Path) -> str:
    """'hf' (config.json + model.safetensors|pytorch_model.bin) or 'mlperf-pytorch' (the reference files)."""
    if (model_path / REFERENCE_WEIGHTS).exists() and (model_path / REFERENCE_CONFIG).exists():
        return "mlperf-pytorch"
    return "hf"


def check_checkpoint(model_path: Path) -> dict:
    """Refuse checkpoints that are not a BERT question-answering model before loading any weights."""
    if not model_path.is_dir():
        raise SubtoolError(
            "model directory not found",
            path=model_path,
            rule="model.missing",
            hint="--model-path takes a Hugging Face checkpoint directory (config.json, "
            "model.safetensors or pytorch_model.bin, vocab.txt) or the MLPerf reference "
            "files (bert_config.json, model.pytorch, vocab.txt)",
        )
    fmt = checkpoint_format(model_path)
    config_path = model_path / ("config.json" if fmt == "hf" else REFERENCE_CONFIG)
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SubtoolError(
            "config.json missing",
            path=config_path,
            rule="model.config",
            hint="a Hugging Face checkpoint needs config.json; the MLPerf reference one needs "
            "bert_config.json and model.pytorch",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SubtoolError(f"{config_path.name} is not valid JSON", path=config_path, rule="model.config") from None
    if not isinstance(config, dict):
        raise SubtoolError(f"{config_path.name} is not a JSON object", path=config_path, rule="model.config")
    if fmt == "mlperf-pytorch":
        missing = [k for k in BERT_CONFIG_KEYS if k not in config]
        if missing:
            raise SubtoolError(
                f"not a BERT config: no {', '.join(missing)}", path=config_path, rule="model.architecture"
            )
        config = {**config, "model_type": "bert", "architectures": ["BertForQuestionAnswering"]}
    if config.get("model_type") != "bert":
        raise SubtoolError(
            f"model_type is {config.get('model_type')!r}, bert-99 needs a BERT checkpoint",
            path=config_path,
            rule="model.architecture",
        )
    archs = config.get("architectures") or ["BertForQuestionAnswering"]
    if "BertForQuestionAnswering" not in archs:
        raise SubtoolError(
            f"architectures {archs} has no BertForQuestionAnswering head",
            path=config_path,
            rule="model.architecture",
            hint="use a SQuAD fine-tuned BERT (e.g. the MLPerf bert-large checkpoint)",
        )
    if not (model_path / "vocab.txt").exists() and not (model_path / "tokenizer.json").exists():
        raise SubtoolError("vocab.txt missing", path=model_path / "vocab.txt", rule="model.vocab")
    if fmt == "hf" and not any((model_path / f).exists() for f in ("model.safetensors", "pytorch_model.bin")):
        raise SubtoolError("no weights (model.safetensors or pytorch_model.bin)", path=model_path, rule="model.weights")
    return config


def load_bert_qa(model_path: Path, dtype=None):
    """transformers' BertForQuestionAnswering with the checkpoint's weights, from either format.

    The reference harness loads its state dict with strict=False, which silently keeps random weights for any
    key that does not match; here every model weight must come from the file.
    """
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    dtype = dtype or torch.float32
    if checkpoint_format(model_path) == "hf":
        try:
            return BertForQuestionAnswering.from_pretrained(str(model_path), dtype=dtype)
        except (OSError, ValueError, RuntimeError) as exc:
            raise SubtoolError(
                f"cannot load the checkpoint: {str(exc).splitlines()[0]}", path=model_path, rule="model.load"
            ) from None
    config = json.loads((model_path / REFERENCE_CONFIG).read_text(encoding="utf-8"))
    known = {k: v for k, v in config.items() if k in BertConfig().to_dict()}
    model = BertForQuestionAnswering(BertConfig(**known))
    weights = model_path / REFERENCE_WEIGHTS
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a damaged or foreign file
        raise SubtoolError(
            f"cannot read the state dict: {exc.__class__.__name__}", path=weights, rule="model.load"
        ) from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing:
        raise SubtoolError(
            f"{len(missing)} weights missing from the state dict (e.g. {missing[0]})",
            path=weights,
            rule="model.weights",
            hint="model.pytorch must be a state dict of transformers' BertForQuestionAnswering",
        )
    return model.to(dtype)


def wordpiece_tokenizer(vocab_file: Path):
    """An uncased WordPiece tokenizer over vocab.txt, on transformers 4 (vocab_file=) and 5 (vocab=) alike."""
    import inspect

    from transformers import BertTokenizerFast

    params = inspect.signature(BertTokenizerFast.__init__).parameters
    key = "vocab" if "vocab" in params else "vocab_file"
    tokenizer = BertTokenizerFast(**{key: str(vocab_file)}, do_lower_case=True)
    with open(vocab_file, encoding="utf-8") as fh:
        lines = sum(1 for line in fh if line.rstrip("\n"))
    if len(tokenizer) < lines:
        # transformers silently ignores a vocabulary passed under a name it does not know: every word → [UNK]
        raise SubtoolError(
            f"the tokenizer read {len(tokenizer)} of the {lines} tokens in vocab.txt",
            path=vocab_file,
            rule="model.vocab",
        )
    return tokenizer


def load_tokenizer(model_path: Path, config: dict):
    from transformers import BertTokenizerFast

    vocab = model_path / "vocab.txt"
    if vocab.exists():
        tokenizer = wordpiece_tokenizer(vocab)
    else:
        tokenizer = BertTokenizerFast.from_pretrained(str(model_path))
    vocab_size = config.get("vocab_size")
    if vocab_size is not None and len(tokenizer) > int(vocab_size):
        raise SubtoolError(
            f"vocabulary has {len(tokenizer)} tokens but the model embeds only {vocab_size}",
            path=vocab if vocab.exists() else model_path,
            rule="model.vocab_mismatch",
            hint="the vocab.txt must be the one the checkpoint was trained with",
        )
    return tokenizer


def load_data(model_path: Path, dataset_path: Path, cache_dir: Path | None, config: dict) -> BertData:
    tokenizer = load_tokenizer(model_path, config)
    examples = read_squad_examples(dataset_path)
    dataset_sha = _sha256(dataset_path)
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
    if features is None:
        features = convert_examples_to_features(examples, tokenizer)
        if cache_file is not None:
            with atomic_output_file(cache_file) as fh:
                np.savez(fh, **{k: getattr(features, k) for k in SquadFeatures.__dataclass_fields__})
    return BertData(examples=examples, features=features, tokenizer=tokenizer, dataset_sha256=dataset_sha)


def read_accuracy_log(path: Path, seq_len: int = MAX_SEQ_LENGTH) -> dict[int, np.ndarray]:
    """qsl index → [seq_len, 2] float32 start/end logits, from LoadGen's mlperf_log_accuracy.json."""
    try:
        with open(path, "rb") as fh:
            entries = json.load(fh)
    except FileNotFoundError:
        raise SubtoolError("accuracy log missing", path=path, rule="acc.log_missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SubtoolError("accuracy log is not valid JSON (cut short?)", path=path, rule="acc.log_parse") from None
    logits: dict[int, np.ndarray] = {}
    for entry in entries:
        try:
            raw = bytes.fromhex(entry["data"])
            idx = int(entry["qsl_idx"])
        except (KeyError, TypeError, ValueError):
            raise SubtoolError("accuracy log entry without qsl_idx/data hex", path=path, rule="acc.log_parse") from None
        arr = np.frombuffer(raw, dtype=np.float32)
        if arr.size % 2:
            raise SubtoolError(
                f"qsl_idx {idx}: {arr.size} floats is not a list of (start, end) pairs", path=path, rule="acc.log_parse"
            )
        logits[idx] = arr.reshape(-1, 2)
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
    """bert-99 / bert-99.9 behind the runner's Workload interface (see workloads/base.py)."""

    def __init__(self, name: str):
        from subtool.runner.workload import BenchmarkSpec

        w = WORKLOADS[name]
        self.spec = BenchmarkSpec(
            name=w.name,
            loadgen_model=w.loadgen_model,
            sample_count=w.sample_count,
            backends=tuple(SUT_BACKENDS),
            compliance=("TEST01",),
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

    def resolve_precision(self, backend: str, precision: str) -> str:
        """auto: fp16 on torch-cuda (GPU_PRECISION), fp32 elsewhere; refuses what the backend cannot run. Ray
        workers resolve it against the backend they run, once they see the cluster (sut_ray)."""
        if backend == "ray":
            return precision
        if precision == "auto":
            precision = GPU_PRECISION if backend == "torch-cuda" else "fp32"
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

    def make_sut(self, model_path: Path, data, config):
        factory = SUT_BACKENDS.get(config.backend)
        if factory is None:
            raise SubtoolError(
                f"unknown backend {config.backend!r} for {self.spec.name}; choose one of {', '.join(SUT_BACKENDS)}",
                rule="run.backend",
            )
        return factory(model_path, data.payload.features, config)

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


def _torch_cuda_sut(model_path: Path, features: SquadFeatures, config):
    from subtool.runner.bert.sut_cuda import TorchCudaBertSUT

    return TorchCudaBertSUT(
        model_path,
        features,
        precision=config.precision,
        batch_size=config.batch_size,
        token_budget=config.extra.get("token_budget"),
        slots=config.extra.get("slots", 2),
    )


def _ray_sut(model_path: Path, features: SquadFeatures, config):
    from subtool.runner.bert.sut_ray import make_ray_sut

    return make_ray_sut(model_path, features, config)


# `--precision auto` on the GPU: fp16, whose torch-cuda path keeps the residual stream in float32 and agrees
# with fp32 answers at F1 99.6 (bf16: 94.8), for 16 % less speed than bf16 (bench/results/bert_gpu_h100.json)
GPU_PRECISION = "fp16"
# backend name → factory(model_path, features, SutConfig); GPU backends register here too
SUT_BACKENDS = {"torch-cpu": _torch_cpu_sut, "torch-cuda": _torch_cuda_sut, "ray": _ray_sut}


def workload(name: str) -> BertWorkload:
    return BertWorkload(name)
