"""A BERT config checked against its own rules and its weights' shapes at the edges: a layer_norm_eps of 0 is no
positive number, max_position_embeddings of exactly 384 is enough, and a config smaller than its weights, a weight of
another rank or a missing sizing tensor is refused by name before any model is built (pure: no weights loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from subtool.errors import SubtoolError
from subtool.runner.bert.checkpoint import (
    check_checkpoint,
    check_config_values,
    check_sizes,
    checkpoint_format,
    load_tokenizer,
)
from subtool.runner.bert.squad import MAX_SEQ_LENGTH

CONFIG = Path("model/config.json")
WEIGHTS = Path("model/model.safetensors")
TINY = {"vocab_size": 30, "hidden_size": 8, "num_attention_heads": 2, "intermediate_size": 16, "num_hidden_layers": 1}
SHAPES = {
    "bert.embeddings.word_embeddings.weight": (30, 8),
    "bert.embeddings.position_embeddings.weight": (512, 8),
    "bert.embeddings.token_type_embeddings.weight": (2, 8),
    "bert.encoder.layer.0.intermediate.dense.weight": (16, 8),
}


def _refused(call, rule: str, *words: str) -> SubtoolError:
    with pytest.raises(SubtoolError) as err:
        call()
    line = err.value.one_line()
    assert err.value.rule == rule and all(w in line for w in words), line
    return err.value


def test_a_layer_norm_eps_of_zero_is_refused():
    _refused(lambda: check_config_values({"layer_norm_eps": 0}, CONFIG), "model.config", "layer_norm_eps 0")
    _refused(lambda: check_config_values({"layer_norm_eps": 0.0}, CONFIG), "model.config", "finite positive")
    check_config_values({"layer_norm_eps": 1e-12}, CONFIG)


def test_max_position_embeddings_of_exactly_the_sequence_length_is_enough():
    check_config_values({"max_position_embeddings": MAX_SEQ_LENGTH}, CONFIG)
    _refused(
        lambda: check_config_values({"max_position_embeddings": MAX_SEQ_LENGTH - 1}, CONFIG),
        "model.config",
        f"max_position_embeddings {MAX_SEQ_LENGTH - 1}",
    )


def test_the_shapes_that_match_the_config_pass():
    check_sizes({**TINY, "max_position_embeddings": 512, "type_vocab_size": 2}, SHAPES, WEIGHTS, "config.json")


@pytest.mark.parametrize(
    "field, value, tensor",
    [
        ("vocab_size", 20, "word_embeddings"),
        ("hidden_size", 4, "word_embeddings"),
        ("intermediate_size", 8, "intermediate.dense"),
        ("type_vocab_size", 1, "token_type_embeddings"),
    ],
)
def test_a_config_smaller_than_its_weights_is_refused_naming_the_tensor(field, value, tensor):
    config = {**TINY, field: value}
    _refused(lambda: check_sizes(config, SHAPES, WEIGHTS, "config.json"), "model.weights", f"{field} {value}", tensor)


def test_a_sizing_weight_of_another_rank_is_refused_not_a_crash():
    shapes = {**SHAPES, "bert.embeddings.word_embeddings.weight": (240,)}  # flattened
    config = {**TINY, "vocab_size": 240}  # its first axis fits: the second, which it lacks, is hidden_size's
    _refused(lambda: check_sizes(config, shapes, WEIGHTS, "config.json"), "model.weights", "hidden_size 8", "[240]")


def test_a_sizing_weight_missing_from_the_file_is_refused_before_the_model_is_built():
    shapes = {k: v for k, v in SHAPES.items() if "word_embeddings" not in k}
    _refused(
        lambda: check_sizes({**TINY, "vocab_size": 10**9}, shapes, WEIGHTS, "config.json"),
        "model.weights",
        "word_embeddings.weight is missing",
        "vocab_size",
    )


def _hf(path, **config):
    """A checkpoint folder as check_checkpoint sees it (weights only named: nothing is loaded)."""
    import json

    path.mkdir()
    base = {**TINY, "model_type": "bert", "architectures": ["BertForQuestionAnswering"]}
    (path / "config.json").write_text(json.dumps({**base, **config}))
    (path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n")
    (path / "model.safetensors").write_bytes(b"")
    return path


def test_a_checkpoint_of_another_model_type_or_without_the_question_answering_head_is_refused(tmp_path):
    check_checkpoint(_hf(tmp_path / "ok"))
    _refused(lambda: check_checkpoint(_hf(tmp_path / "gpt", model_type="gpt2")), "model.architecture", "'gpt2'")
    head = _hf(tmp_path / "mlm", architectures=["BertForMaskedLM"])
    _refused(lambda: check_checkpoint(head), "model.architecture", "no BertForQuestionAnswering head")


def test_a_checkpoint_without_a_vocabulary_or_weights_is_refused(tmp_path):
    no_vocab = _hf(tmp_path / "novocab")
    (no_vocab / "vocab.txt").unlink()
    _refused(lambda: check_checkpoint(no_vocab), "model.vocab", "vocab.txt missing")
    no_weights = _hf(tmp_path / "noweights")
    (no_weights / "model.safetensors").unlink()
    _refused(lambda: check_checkpoint(no_weights), "model.weights", "no weights")


def test_the_reference_format_needs_both_its_files_and_a_bert_config(tmp_path):
    import json

    stray = _hf(tmp_path / "stray")
    (stray / "model.pytorch").write_bytes(b"")  # a stray reference weights file beside a Hugging Face checkpoint
    assert checkpoint_format(stray) == "hf"
    check_checkpoint(stray)
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "model.pytorch").write_bytes(b"")
    (ref / "vocab.txt").write_text("[UNK]\n[CLS]\n[SEP]\n")
    (ref / "bert_config.json").write_text(json.dumps({k: v for k, v in TINY.items() if k != "vocab_size"}))
    assert checkpoint_format(ref) == "mlperf-pytorch"
    _refused(lambda: check_checkpoint(ref), "model.architecture", "not a BERT config: no vocab_size")


def test_a_vocabulary_one_token_larger_than_the_embedding_is_refused(tmp_path):
    model = _hf(tmp_path / "model")
    n = len(load_tokenizer(model, {}))
    load_tokenizer(model, {"vocab_size": n})
    _refused(lambda: load_tokenizer(model, {"vocab_size": n - 1}), "model.vocab_mismatch", f"embeds only {n - 1}")


def test_a_reference_state_dict_saved_under_a_model_key_loads_the_same_weights(tmp_path, tiny_checkpoint):
    import json
    import shutil

    import torch
    from safetensors.torch import load_file

    from subtool.runner.bert.checkpoint import load_bert_qa

    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    ref = tmp_path / "ref"
    ref.mkdir()
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    (ref / "bert_config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "architectures"}))
    shutil.copy(tiny_checkpoint / "vocab.txt", ref / "vocab.txt")
    torch.save({"model": state, "epoch": 2}, ref / "model.pytorch")  # a training script's checkpoint
    loaded = load_bert_qa(ref).state_dict()
    assert torch.equal(loaded["qa_outputs.weight"], state["qa_outputs.weight"])


def test_the_activations_accepted_without_transformers_are_ones_transformers_knows():
    from transformers.activations import ACT2FN

    from subtool.runner.bert.checkpoint import COMMON_ACTIVATIONS

    assert COMMON_ACTIVATIONS <= set(ACT2FN)


def test_a_rarer_activation_transformers_knows_is_looked_up_and_accepted():
    from transformers.activations import ACT2FN

    rare = sorted(set(ACT2FN) - {"gelu", "relu", "silu", "tanh", "swish", "gelu_new", "gelu_fast"})[0]
    check_config_values({**TINY, "hidden_act": rare}, CONFIG)  # no raise
    _refused(lambda: check_config_values({**TINY, "hidden_act": rare + "_x"}, CONFIG), "model.config", "hidden_act")


def test_checking_a_gelu_checkpoint_imports_neither_torch_nor_transformers_activations(tiny_checkpoint):
    """The CLI checks the checkpoint before the benchmark starts, and a run that builds no model checks it too:
    neither pays the seconds torch and transformers' activations module take to import."""
    import subprocess
    import sys

    probe = (
        "import sys; from pathlib import Path; from subtool.runner.bert.checkpoint import check_checkpoint; "
        f"config = check_checkpoint(Path({str(tiny_checkpoint)!r})); "
        "print(config.get('hidden_act'), 'torch' in sys.modules, 'transformers.activations' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["gelu", "False", "False"]
