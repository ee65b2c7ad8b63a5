"""Edges of the LLM checkpoint checks that nothing else pins: a checkpoint of another architecture, without a
tokenizer or without weights, a tokenizer file past its bound, and an index that names a file outside the
checkpoint directory; each refused in one line naming the file and the rule, before anything loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from subtool.runner.llm.specs import LLM_SPECS

from .refusals import refused
from .test_llm_checkpoint import (  # noqa: F401 (bf16: a fixture)
    bf16,
    compressed_fp8,
    hf_fp8,
    quant_config,
    random_state,
    tiny_config,
    write_checkpoint,
)

torch = pytest.importorskip("torch")


def _model_copy(tmp_path, checkpoints) -> Path:
    model = tmp_path / "m"
    shutil.copytree(checkpoints[2], model)
    (model / "tokenizer.json").write_text("{}")
    return model


def test_a_checkpoint_of_another_architecture_isrefused(tmp_path, bf16):  # noqa: F811
    from subtool.runner.llm.checkpoint import check_checkpoint

    model = _model_copy(tmp_path, bf16)
    check_checkpoint(LLM_SPECS["llama3.1-8b"], model)
    refused(
        lambda: check_checkpoint(LLM_SPECS["gptj-99"], model),
        "model.architecture",
        model / "config.json",
        "'llama'",
        "gptj",
    )


def test_a_checkpoint_without_a_tokenizer_isrefused(tmp_path, bf16):  # noqa: F811
    from subtool.runner.llm.checkpoint import check_checkpoint

    model = _model_copy(tmp_path, bf16)
    (model / "tokenizer.json").unlink()
    refused(lambda: check_checkpoint(LLM_SPECS["llama3.1-8b"], model), "model.tokenizer", model, "no tokenizer")
    (model / "vocab.json").write_text("{}")
    check_checkpoint(LLM_SPECS["llama3.1-8b"], model)


def test_a_checkpoint_without_weights_is_refused_unless_none_are_needed(tmp_path, bf16):  # noqa: F811
    from subtool.runner.llm.checkpoint import check_checkpoint

    model = _model_copy(tmp_path, bf16)
    (model / "model.safetensors.index.json").unlink()
    for shard in model.glob("*.safetensors"):
        shard.unlink()
    refused(lambda: check_checkpoint(LLM_SPECS["llama3.1-8b"], model), "model.weights", model, "no weights")
    check_checkpoint(LLM_SPECS["llama3.1-8b"], model, need_weights=False)


def test_a_tokenizer_file_past_its_bound_is_refused_before_it_is_read(tmp_path, bf16):  # noqa: F811
    from subtool.runner.llm.checkpoint import TOKENIZER_LIMIT, check_checkpoint

    model = _model_copy(tmp_path, bf16)
    big = model / "tokenizer.json"
    with open(big, "wb") as fh:  # sparse: the size without the bytes
        fh.truncate(TOKENIZER_LIMIT)
    check_checkpoint(LLM_SPECS["llama3.1-8b"], model)  # at the bound: fine
    with open(big, "r+b") as fh:
        fh.truncate(TOKENIZER_LIMIT + 1)
    refused(lambda: check_checkpoint(LLM_SPECS["llama3.1-8b"], model), "model.tokenizer", big, "larger than 256 MiB")


def test_a_single_safetensors_file_is_streamed(tmp_path, bf16):  # noqa: F811
    from subtool.runner.llm.checkpoint import bin_weight_files, can_stream

    config, state, _ = bf16
    path = write_checkpoint(tmp_path / "one", config, state, shards=1)
    assert not (path / "model.safetensors.index.json").exists()
    assert can_stream(path)
    (path / "pytorch_model.bin").write_bytes(b"stale")  # transformers prefers the safetensors: never unpickled
    assert bin_weight_files(path) == []


@pytest.mark.parametrize("named", ["../outside.safetensors", "sub/model-00001-of-00003.safetensors"])
def test_an_index_that_names_a_file_outside_the_checkpoint_directory_isrefused(tmp_path, bf16, named):  # noqa: F811
    """The file exists and is a regular one: only its place (not a plain name in the directory) is wrong."""
    from subtool.runner.llm.checkpoint import SafetensorsFiles

    model = _model_copy(tmp_path, bf16)
    (model / "sub").mkdir()
    first = "model-00001-of-00003.safetensors"
    shutil.copy(model / first, model / "sub" / first)
    shutil.copy(model / first, tmp_path / "outside.safetensors")
    index = model / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"] = {k: (named if v == first else v) for k, v in data["weight_map"].items()}
    index.write_text(json.dumps(data))
    refused(lambda: SafetensorsFiles(model), "model.weights", index, repr(named))


def test_check_checkpoint_refuses_an_index_naming_a_file_outside_the_directory(tmp_path, bf16):  # noqa: F811
    """The batched engine hands the safetensors index to transformers, which would open `../x.safetensors` from
    the checkpoint's parent: check_checkpoint refuses it first, as the streaming loader does."""
    from subtool.runner.llm.checkpoint import check_checkpoint

    model = _model_copy(tmp_path, bf16)
    first = "model-00001-of-00003.safetensors"
    shutil.copy(model / first, tmp_path / first)
    index = model / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"] = {k: (f"../{first}" if v == first else v) for k, v in data["weight_map"].items()}
    index.write_text(json.dumps(data))
    refused(lambda: check_checkpoint(LLM_SPECS["llama3.1-8b"], model), "model.weights", index, f"../{first}")


@pytest.mark.parametrize("byte", [0x7F, 0xFF])  # e4m3's NaN, positive and negative
def test_a_nan_in_per_channel_e4m3_weights_kept_in_e4m3_isrefused(tmp_path, bf16, byte):  # noqa: F811
    """An fp8 run keeps per-channel e4m3 rows as they are: no dequantized copy or scale shows the NaN, only the
    check of the bytes themselves."""
    from subtool.runner.llm.checkpoint import load_streaming

    config, state, _ = bf16
    tensors = compressed_fp8(state, "channel")
    name = "model.layers.1.mlp.gate_proj.weight"
    raw = tensors[name].view(torch.uint8).clone()
    raw.view(-1)[11] = byte
    tensors[name] = raw.view(torch.float8_e4m3fn)
    quantization = quant_config("compressed-tensors", strategy="channel")
    path = write_checkpoint(tmp_path / "nan8", config, tensors, shards=1, quantization=quantization)
    refused(
        lambda: load_streaming(path, "cpu", torch.bfloat16, fp8=True),
        "model.weights",
        path / "model.safetensors",
        name,
        "float8_e4m3fn",
    )


@pytest.mark.parametrize("fp8", [False, True])
def test_a_nan_in_a_projection_bias_isrefused(tmp_path, fp8):
    from subtool.runner.llm.checkpoint import load_streaming

    config = tiny_config(num_hidden_layers=2, attention_bias=True)
    tensors = random_state(config)
    name = "model.layers.1.self_attn.v_proj.bias"
    tensors[name] = tensors[name].clone()
    tensors[name][3] = float("nan")
    path = write_checkpoint(tmp_path / "bias", config, tensors, shards=1)
    refused(
        lambda: load_streaming(path, "cpu", torch.bfloat16, fp8=fp8), "model.weights", path / "model.safetensors", name
    )


def test_block_scales_that_overflow_when_quantized_again_for_an_fp8_run_arerefused(tmp_path, bf16):  # noqa: F811
    """Block-wise e4m3 is dequantized (float32) and quantized again per output channel: e4m3 × a finite scale of
    1e38 is inf there, and so the channel's new scale; the weights' bytes and the file's scale are all finite."""
    from subtool.runner.llm.checkpoint import load_streaming

    config, state, _ = bf16
    tensors = hf_fp8(state, (32, 32))
    tensors["model.layers.0.mlp.down_proj.weight_scale_inv"][0, 0] = 1e38
    path = write_checkpoint(tmp_path / "fp8", config, tensors, shards=1, quantization=quant_config("hf-fp8"))
    refused(
        lambda: load_streaming(path, "cpu", torch.bfloat16, fp8=True),
        "model.weights",
        path,
        "model.layers.0.mlp.down_proj",
        "non-finite",
    )


@pytest.mark.parametrize("name", ["model.layers.2.input_layernorm.weight", "model.layers.1.self_attn.o_proj.bias"])
def test_an_fp32_norm_or_bias_that_overflows_fp16_is_refused_in_an_fp8_load(tmp_path, name):
    """An fp8 run quantizes the projections from the file's dtype, but runs the norms and biases in its own."""
    from subtool.runner.llm.checkpoint import load_streaming

    config = tiny_config(num_hidden_layers=3, attention_bias=True)
    tensors = {k: v.float() for k, v in random_state(config).items()}
    tensors[name].view(-1)[3] = 1e6  # finite in float32 and bfloat16, inf in float16
    path = write_checkpoint(tmp_path / "big", config, tensors, shards=1)
    load_streaming(path, "cpu", torch.bfloat16, fp8=True)  # the file itself is fine
    refused(
        lambda: load_streaming(path, "cpu", torch.float16, fp8=True),
        "model.weights",
        path / "model.safetensors",
        name,
        "in float16",
    )


@pytest.mark.parametrize(
    "field",
    [{"no_repeat_ngram_size": 3}, {"repetition_penalty": 1.3}, {"length_penalty": 2.0}, {"bad_words_ids": [[5]]}],
)
def test_a_generation_config_that_changes_what_beam_search_picks_isrefused(tmp_path, bf16, field):  # noqa: F811
    """The batched engine's model.generate starts from the checkpoint's generation_config.json and overrides only
    the lengths, beams, early stopping, sampling and token ids: these fields would change the answers."""
    from subtool.runner.llm.checkpoint import check_checkpoint

    model = _model_copy(tmp_path, bf16)
    path = model / "generation_config.json"
    path.write_text(json.dumps({"bos_token_id": 50256, "eos_token_id": 50256} | field))
    refused(lambda: check_checkpoint(LLM_SPECS["llama3.1-8b"], model), "model.config", path, next(iter(field)))
