"""BERT checkpoints: which format a directory holds, the checks that refuse a wrong one before any weights load,
and the loaders (model and WordPiece tokenizer) every BERT SUT and the workload share."""

from __future__ import annotations

import json
from pathlib import Path

from subtool.errors import SubtoolError

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
