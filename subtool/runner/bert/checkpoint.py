"""BERT checkpoints: which format a directory holds, the checks that refuse a wrong one before any weights load,
and the loaders (model and WordPiece tokenizer) every BERT SUT and the workload share."""

from __future__ import annotations

import json
import math
import os
import re
from contextlib import contextmanager
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.mlperf.json_file import read_json
from subtool.mlperf.logs import describe_os_error, read_bounded
from subtool.runner.bert.squad import MAX_SEQ_LENGTH

# The MLPerf reference PyTorch checkpoint (zenodo 3733896 / build/data/bert_tf_v1_1_large_fp32_384_v2): a state
# dict of transformers' BertForQuestionAnswering plus Google's bert_config.json (no model_type field).
REFERENCE_WEIGHTS = "model.pytorch"
REFERENCE_CONFIG = "bert_config.json"
BERT_CONFIG_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
SHAPE_KEYS = (*BERT_CONFIG_KEYS, "max_position_embeddings", "type_vocab_size")  # positive integers when present
VOCAB_LIMIT = 64 << 20  # vocab.txt: bert-large's is 226 kB
SPECIAL_TOKENS = ("[UNK]", "[CLS]", "[SEP]")  # the features are [CLS] question [SEP] context [SEP]
# weights a checkpoint may hold that the question-answering model leaves out: the pooler and the pre-training
# heads of a checkpoint converted from BertForPreTraining, and position-id buffers
UNUSED_OK = re.compile(r"(bert\.)?pooler\.|cls\.|.*position_ids$")
# the config fields that size the model, each with a tensor of the weights that has that size (name, axis)
FIELD_TENSORS = (
    ("vocab_size", "embeddings.word_embeddings.weight", 0),
    ("hidden_size", "embeddings.word_embeddings.weight", 1),
    ("max_position_embeddings", "embeddings.position_embeddings.weight", 0),
    ("type_vocab_size", "embeddings.token_type_embeddings.weight", 0),
    ("intermediate_size", "encoder.layer.0.intermediate.dense.weight", 0),
)
LAYER_KEY = re.compile(r"(?:bert\.)?encoder\.layer\.(\d+)\.")


def checkpoint_format(model_path: Path) -> str:
    """'hf' (config.json + model.safetensors|pytorch_model.bin) or 'mlperf-pytorch' (the reference files)."""
    if (model_path / REFERENCE_WEIGHTS).exists() and (model_path / REFERENCE_CONFIG).exists():
        return "mlperf-pytorch"
    return "hf"


def check_checkpoint(model_path: Path) -> dict:
    """Refuse checkpoints that are not a BERT question-answering model before loading any weights."""
    if not model_path.is_dir():
        raise SubtoolError(
            "is a file, not a checkpoint folder" if model_path.exists() else "model directory not found",
            path=model_path,
            rule="model.missing",
            hint="--model-path takes a Hugging Face checkpoint directory (config.json, "
            "model.safetensors or pytorch_model.bin, vocab.txt) or the MLPerf reference "
            "files (bert_config.json, model.pytorch, vocab.txt)",
        )
    fmt = checkpoint_format(model_path)
    config_path = model_path / ("config.json" if fmt == "hf" else REFERENCE_CONFIG)
    config = read_config(config_path)
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
    if not isinstance(archs, list) or "BertForQuestionAnswering" not in archs:
        raise SubtoolError(
            f"architectures {archs} has no BertForQuestionAnswering head",
            path=config_path,
            rule="model.architecture",
            hint="use a SQuAD fine-tuned BERT (e.g. the MLPerf bert-large checkpoint)",
        )
    check_config_values(config, config_path)
    if not (model_path / "vocab.txt").exists() and not (model_path / "tokenizer.json").exists():
        raise SubtoolError("vocab.txt missing", path=model_path / "vocab.txt", rule="model.vocab")
    if fmt == "hf" and not any((model_path / f).exists() for f in ("model.safetensors", "pytorch_model.bin")):
        raise SubtoolError("no weights (model.safetensors or pytorch_model.bin)", path=model_path, rule="model.weights")
    return config


def read_config(config_path: Path) -> dict:
    """config.json (or the reference bert_config.json) as a dict; refused by name when it is not one."""
    hint = (
        "a Hugging Face checkpoint needs config.json; the MLPerf reference one needs bert_config.json and model.pytorch"
    )
    try:
        config = read_json(config_path, "model.config")
    except FileNotFoundError:
        raise SubtoolError(f"{config_path.name} missing", path=config_path, rule="model.config", hint=hint) from None
    if not isinstance(config, dict):
        raise SubtoolError(f"{config_path.name} is not a JSON object", path=config_path, rule="model.config")
    return config


def check_config_values(config: dict, config_path: Path) -> None:
    """The model's shape numbers are positive integers (a bool is not one), layer_norm_eps a finite positive
    number, and the heads divide the hidden size: a checkpoint that says otherwise is refused before loading."""

    def bad(message: str) -> SubtoolError:
        return SubtoolError(message, path=config_path, rule="model.config")

    for key in SHAPE_KEYS:
        value = config.get(key)
        if key in config and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise bad(f"{key} {_shown(value)} is not a positive integer")
    if "layer_norm_eps" in config:
        eps = config["layer_norm_eps"]
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
            raise bad(f"layer_norm_eps {_shown(eps)} is not a finite positive number")
    hidden, heads = config.get("hidden_size"), config.get("num_attention_heads")
    if hidden is not None and heads is not None and hidden % heads:
        raise bad(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
    positions = config.get("max_position_embeddings")
    if positions is not None and positions < MAX_SEQ_LENGTH:
        raise bad(f"max_position_embeddings {positions} is below the {MAX_SEQ_LENGTH}-token sequences bert-99 runs")
    if config.get("type_vocab_size", 2) < 2:
        raise bad(f"type_vocab_size {config['type_vocab_size']} leaves no token type for the paragraph (SQuAD's 1)")
    why = _model_options_problem(config)
    if why:
        raise bad(why)


_DROPOUTS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout")


def _model_options_problem(config: dict) -> str | None:
    """What in config.json would make transformers fail while building the model (found there as a KeyError, an
    ImportError or its own validation error, each an internal error): an id, activation or dropout it cannot
    take, a quantization or attention implementation it needs another package for."""
    pad, vocab = config.get("pad_token_id"), config.get("vocab_size")
    if pad is not None and (isinstance(pad, bool) or not isinstance(pad, int) or pad < 0 or (vocab and pad >= vocab)):
        return f"pad_token_id {_shown(pad)} is not a token id of the {vocab or '?'}-token vocabulary"
    act = config.get("hidden_act")
    if act is not None and (not isinstance(act, str) or not _known_activation(act)):
        return f"hidden_act {_shown(act)} is no activation transformers knows (BERT's is gelu)"
    for key in _DROPOUTS:
        p = config.get(key)
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1):
            return f"{key} {_shown(p)} is not a probability"
    if config.get("quantization_config") is not None:
        return "quantization_config: a quantized checkpoint is not what bert-99 runs; give its full-precision weights"
    attn = config.get("attn_implementation", config.get("_attn_implementation"))
    if attn is not None and attn not in ("eager", "sdpa"):
        return f"attn_implementation {_shown(attn)}: subtool runs eager or sdpa attention; remove the key"
    return None


# Activations every transformers release subtool supports knows (tests/runner/bert/test_checkpoint_edges.py
# holds the installed one to it): a config naming one is accepted without importing transformers.activations, which
# imports torch and transformers' distributed-tensor code (3 s of a run that builds no model: --backend instant,
# the CLI's own checks before the benchmark starts). Any other name is looked up in transformers' own table.
COMMON_ACTIVATIONS = frozenset({"gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "relu", "silu", "swish", "tanh"})


def _known_activation(name: str) -> bool:
    return name in COMMON_ACTIVATIONS or name in _activations()


def _activations() -> frozenset[str]:
    try:
        from transformers.activations import ACT2FN
    except ImportError:  # the run imports transformers anyway; without it nothing is refused here
        return frozenset({"gelu"})
    return frozenset(ACT2FN)


def refuse_irregular(weights: Path) -> None:
    """A weights file that is there but is no regular file (a FIFO would hang the load, a folder or /dev/zero
    be misreported as missing) is refused by name."""
    import stat

    try:
        mode = os.stat(weights).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SubtoolError(f"{weights.name} {describe_os_error(exc)}", path=weights, rule="model.load") from None
    if not stat.S_ISREG(mode):
        raise SubtoolError(
            f"{weights.name} is not a regular file (a folder, FIFO or device)", path=weights, rule="model.load"
        )


def _shown(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def load_bert_qa(model_path: Path, dtype=None):
    """transformers' BertForQuestionAnswering with the checkpoint's weights, from either format.

    The reference harness loads its state dict with strict=False, which silently keeps random weights for any
    key that does not match; here every model weight must come from the file, every weight in the file must be
    one the model uses (a pooler or pre-training head aside), and every weight must be a finite number.
    """
    import torch

    dtype = dtype or torch.float32
    if checkpoint_format(model_path) == "hf":
        model, missing, unused, weights = _load_hf(model_path, dtype)
    else:
        model, missing, unused, weights = _load_reference(model_path)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing:
        raise SubtoolError(
            f"{len(missing)} weights missing from the checkpoint (e.g. {missing[0]})",
            path=weights,
            rule="model.weights",
            hint="the weights must be a state dict of transformers' BertForQuestionAnswering",
        )
    check_unused(unused, weights)
    check_finite(model.state_dict().items(), weights)
    return model.to(dtype)


def _load_hf(model_path: Path, dtype):
    """(model, missing keys, unused keys, weights file) of a Hugging Face checkpoint directory."""
    import pickle

    from safetensors import SafetensorError
    from transformers import BertForQuestionAnswering

    st = model_path / "model.safetensors"
    weights = st if os.path.lexists(st) else model_path / "pytorch_model.bin"
    refuse_irregular(weights)
    check_sizes(read_config(model_path / "config.json"), _file_shapes(weights), weights, "config.json")
    try:
        with _quiet_transformers():
            model, info = BertForQuestionAnswering.from_pretrained(
                str(model_path), dtype=dtype, output_loading_info=True
            )
    except SafetensorError as exc:
        raise SubtoolError(
            f"not a readable safetensors file: {_first_line(exc)}", path=weights, rule="model.load"
        ) from None
    except pickle.UnpicklingError:
        raise _pickled_objects(weights) from None
    except Exception as exc:  # transformers' loading raises many types (ImportError, KeyError, its validation)
        raise SubtoolError(
            f"cannot load the checkpoint: {exc.__class__.__name__}: {_first_line(exc)}", path=weights, rule="model.load"
        ) from None
    return model, list(info.get("missing_keys", ())), list(info.get("unexpected_keys", ())), weights


def _pickled_objects(weights: Path) -> SubtoolError:
    return SubtoolError(
        "holds pickled objects other than tensors, which subtool never unpickles (they could run code)",
        path=weights,
        rule="model.load",
        hint="save the weights as model.safetensors (or a plain state dict of tensors)",
    )


def _load_reference(model_path: Path):
    """(model, missing keys, unused keys, weights file) of the MLPerf reference files."""
    import pickle

    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    config = read_config(model_path / REFERENCE_CONFIG)
    check_config_values(config, model_path / REFERENCE_CONFIG)
    known = {k: v for k, v in config.items() if k in BertConfig().to_dict()}
    weights = model_path / REFERENCE_WEIGHTS
    refuse_irregular(weights)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise _pickled_objects(weights) from None
    except Exception as exc:  # torch raises several unrelated types for a damaged or foreign file
        raise SubtoolError(
            f"cannot read the state dict: {exc.__class__.__name__}", path=weights, rule="model.load"
        ) from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise SubtoolError(f"holds a {type(state).__name__}, not a state dict", path=weights, rule="model.weights")
    shapes = {k: tuple(v.shape) for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    check_sizes(config, shapes, weights, REFERENCE_CONFIG)
    try:
        model = BertForQuestionAnswering(BertConfig(**known))
    except Exception as exc:  # a value transformers refuses that check_config_values did not foresee
        raise SubtoolError(
            f"transformers cannot build the model it describes: {exc.__class__.__name__}: {_first_line(exc)}",
            path=model_path / REFERENCE_CONFIG,
            rule="model.config",
        ) from None
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor whose shape is not the config's
        raise SubtoolError(
            f"the weights do not fit {REFERENCE_CONFIG}: {_first_line(exc, 1)}", path=weights, rule="model.weights"
        ) from None
    return model, result.missing_keys, result.unexpected_keys, weights


@contextmanager
def _quiet_transformers():
    """transformers' logging at error level and its progress bars off, restored after: its LOAD REPORT table of
    unused or missing weights would print ahead of the one-line refusal that names them (check_unused)."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _file_shapes(weights: Path) -> dict[str, tuple] | None:
    """Each tensor's shape in a Hugging Face weights file, read without its data: the safetensors header, or a
    pytorch_model.bin loaded onto the meta device. None where it cannot be read (transformers' load says why), or
    is not a regular file (a FIFO would hang the read)."""
    import torch

    if not weights.is_file():
        return None
    try:
        if weights.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(weights), framework="pt", device="cpu") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        state = torch.load(weights, map_location="meta", weights_only=True)
    except Exception:  # a damaged or foreign file: refused by the load itself, in its own words
        return None
    if not isinstance(state, dict):
        return None
    return {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}


def check_sizes(config: dict, shapes: dict[str, tuple] | None, weights: Path, config_name: str) -> None:
    """Refuse, before the model is built (which allocates what the config says), a config whose sizes the weights
    do not have: num_hidden_layers more layers than the file holds tensors of, or a FIELD_TENSORS field whose
    tensor has another size (or is missing). A field the config leaves out (transformers' small default) is not
    compared."""
    if shapes is None:
        return
    layers = len({m.group(1) for k in shapes if (m := LAYER_KEY.match(k))})
    wanted = config.get("num_hidden_layers")
    if isinstance(wanted, int) and wanted > layers:
        raise SubtoolError(
            f"{config_name} says num_hidden_layers {wanted}, but the weights hold {layers} layers",
            path=weights,
            rule="model.weights",
        )
    for field, name, axis in FIELD_TENSORS:
        if field not in config:
            continue
        key = next((k for k in (f"bert.{name}", name) if k in shapes), None)
        if key is None:
            raise SubtoolError(
                f"bert.{name} is missing from the weights (its shape is {config_name}'s {field})",
                path=weights,
                rule="model.weights",
            )
        shape = shapes[key]
        if len(shape) <= axis or shape[axis] != config[field]:
            raise SubtoolError(
                f"{config_name} says {field} {_shown(config[field])}, but {key} has shape {list(shape)}",
                path=weights,
                rule="model.weights",
            )


def _first_line(exc: BaseException, line: int = 0) -> str:
    lines = [t.strip() for t in str(exc).splitlines() if t.strip()] or [type(exc).__name__]
    return lines[min(line, len(lines) - 1)][:200]


def check_unused(keys, weights: Path) -> None:
    """Weights in the file that the model does not use (more layers than num_hidden_layers says, another
    model's tensors) mean the config does not describe the checkpoint: refused, naming a few of them."""
    unused = sorted(k for k in keys if not UNUSED_OK.match(k))
    if unused:
        raise SubtoolError(
            f"{len(unused)} weights in the file are not used by the model (e.g. {', '.join(unused[:3])})",
            path=weights,
            rule="model.weights",
            hint="the config (num_hidden_layers, …) must describe the checkpoint's weights",
        )


def check_finite(named_tensors, weights: Path) -> None:
    """Every floating-point tensor holds finite numbers only: a NaN or Inf weight is refused by name."""
    import torch

    for name, tensor in named_tensors:
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise SubtoolError(f"weight {name} holds NaN or infinite values", path=weights, rule="model.weights")


def wordpiece_tokenizer(vocab_file: Path):
    """An uncased WordPiece tokenizer over vocab.txt, on transformers 4 (vocab_file=) and 5 (vocab=) alike.

    vocab.txt is checked first (a regular file, bounded, UTF-8, not empty, with [UNK], [CLS] and [SEP]), so a
    damaged one is refused by name rather than failing inside the tokenizers library."""
    import inspect

    from transformers import BertTokenizerFast

    tokens = _vocab_tokens(vocab_file)
    params = inspect.signature(BertTokenizerFast.__init__).parameters
    key = "vocab" if "vocab" in params else "vocab_file"
    try:
        tokenizer = BertTokenizerFast(**{key: str(vocab_file)}, do_lower_case=True)
    except Exception as exc:  # tokenizers raises plain Exception for a vocabulary it cannot use
        raise SubtoolError(
            f"not a usable WordPiece vocabulary: {_first_line(exc)}", path=vocab_file, rule="model.vocab"
        ) from None
    if len(tokenizer) < len(tokens):
        # transformers silently ignores a vocabulary passed under a name it does not know: every word → [UNK]
        raise SubtoolError(
            f"the tokenizer read {len(tokenizer)} of the {len(tokens)} tokens in vocab.txt",
            path=vocab_file,
            rule="model.vocab",
        )
    return tokenizer


def _vocab_tokens(vocab_file: Path) -> list[str]:
    """vocab.txt's non-empty lines; refused by name when it cannot be a BERT vocabulary."""
    try:
        data = read_bounded(vocab_file, VOCAB_LIMIT, follow_links=True)
    except OSError as exc:
        raise SubtoolError(f"vocab.txt {describe_os_error(exc)}", path=vocab_file, rule="model.vocab") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SubtoolError("vocab.txt is not UTF-8 text", path=vocab_file, rule="model.vocab") from None
    tokens = [line.rstrip("\r") for line in text.split("\n") if line.rstrip("\r")]
    if not tokens:
        raise SubtoolError("vocab.txt is empty", path=vocab_file, rule="model.vocab")
    _need_special(set(tokens), vocab_file, "model.vocab")
    return tokens


def _need_special(vocab, path: Path, rule: str) -> None:
    absent = [t for t in SPECIAL_TOKENS if t not in vocab]
    if absent:
        raise SubtoolError(f"the vocabulary has no {', '.join(absent)} token", path=path, rule=rule)


def load_tokenizer(model_path: Path, config: dict):
    vocab = model_path / "vocab.txt"
    if vocab.exists():
        tokenizer = wordpiece_tokenizer(vocab)
    else:
        tokenizer = _json_tokenizer(model_path)
    vocab_size = config.get("vocab_size")
    if vocab_size is not None and len(tokenizer) > int(vocab_size):
        raise SubtoolError(
            f"vocabulary has {len(tokenizer)} tokens but the model embeds only {vocab_size}",
            path=vocab if vocab.exists() else model_path,
            rule="model.vocab_mismatch",
            hint="the vocab.txt must be the one the checkpoint was trained with",
        )
    return tokenizer


def _json_tokenizer(model_path: Path):
    """The tokenizer of tokenizer.json (no vocab.txt), checked as JSON first and refused by name."""
    from transformers import BertTokenizerFast

    path = model_path / "tokenizer.json"
    try:
        value = read_json(path, "model.tokenizer")
    except FileNotFoundError:  # a dangling link
        raise SubtoolError("tokenizer.json missing", path=path, rule="model.tokenizer") from None
    if not isinstance(value, dict):
        raise SubtoolError("tokenizer.json is not a JSON object", path=path, rule="model.tokenizer")
    try:
        tokenizer = BertTokenizerFast.from_pretrained(str(model_path))
    except Exception as exc:  # tokenizers raises plain Exception for a file it cannot use
        raise SubtoolError(f"not a usable tokenizer: {_first_line(exc)}", path=path, rule="model.tokenizer") from None
    _need_special(tokenizer.get_vocab(), path, "model.tokenizer")
    return tokenizer
