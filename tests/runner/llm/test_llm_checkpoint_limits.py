"""LLM checkpoint files that are valid but out of bounds, each refused in one line naming the file and the rule
before it can hang, fill memory or change a run: .bin weights (torch.save pickles, which only the batched engine
loads, whole, through transformers) that are not regular files or larger than config.json's model; a
generation_config.json that is not strict JSON or sets a field that changes what the beam search returns; and a
weight that is finite in the file's dtype but not in the run's (an fp32 1e6 is inf in fp16)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from subtool.runner.llm.specs import LLM_SPECS

from .refusals import refused
from .test_llm_checkpoint import bf16, hf_fp8, quant_config, write_checkpoint  # noqa: F401 (bf16: a fixture)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")


# ------------------------------------------------------------------------------------------ .bin weights
def _bin_copy(small, path: Path, shards: int = 1, extra: dict | None = None) -> Path:
    """The demo checkpoint with its weights (plus `extra` tensors) as pytorch_model.bin, or as `shards` .bin
    files and their index."""
    shutil.copytree(small.model_path, path)
    state = safetensors_torch.load_file(path / "model.safetensors") | (extra or {})
    (path / "model.safetensors").unlink()
    if shards == 1:
        torch.save(state, path / "pytorch_model.bin")
        return path
    names, weight_map = sorted(state), {}
    for k in range(shards):
        file = f"pytorch_model-{k + 1:05d}-of-{shards:05d}.bin"
        torch.save({n: state[n] for n in names[k::shards]}, path / file)
        weight_map.update({n: file for n in names[k::shards]})
    (path / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return path


def _generator(model_path: Path):
    from subtool.runner.llm.sut_torch import LlmGenerator
    from subtool.runner.llm.workload import Generation

    generation = Generation(
        max_new_tokens=4, min_new_tokens=0, num_beams=1, output_dtype="int32", token_latencies=False
    )
    prompts = [np.array([5, 6, 7], dtype=np.int64)]
    return LlmGenerator(model_path, prompts, generation, eos_token_id=2, pad_token_id=0, engine="batched")


def _no_load(monkeypatch) -> None:
    """Loading the weights fails the test (pytest.fail is no Exception: the loader's except cannot take it)."""

    def load(*args, **kwargs):
        pytest.fail("the weights were handed to transformers")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", load)


@pytest.mark.parametrize("name, shards", [("llama3.1-8b", 1), ("llama3.1-8b", 2), ("gptj-99", 1)])
def test_a_bin_checkpoint_within_its_configs_bound_loads_whole(tmp_path, llama3_small, gptj_small, name, shards):
    small = gptj_small if name == "gptj-99" else llama3_small
    path = _bin_copy(small, tmp_path / "bin", shards)
    model = _generator(path).model
    state = safetensors_torch.load_file(small.model_path / "model.safetensors")
    assert all(torch.equal(t, state[k]) for k, t in model.state_dict().items() if k in state)


@pytest.mark.parametrize("shards", [1, 2])
def test_a_bin_checkpoint_larger_than_its_config_implies_is_refused_before_loading(
    tmp_path, llama3_small, monkeypatch, shards
):
    """The demo's weights plus 8 MiB that no layer of config.json's model holds: transformers would unpickle it all
    (a file of any size) and drop the extra as unexpected."""
    path = _bin_copy(llama3_small, tmp_path / "big", shards, {"extra.weight": torch.zeros(2 << 20)})
    _no_load(monkeypatch)
    where = path / "pytorch_model.bin" if shards == 1 else path
    refused(lambda: _generator(path), "model.weights", where, "MiB that config.json's model takes in float32")


BIN_CASES = {  # how the .bin weights are not regular files → (the file named, the words)
    "pytorch_model.bin a link to /dev/zero": ("pytorch_model.bin", "pytorch_model.bin is not a regular file"),
    "a shard a FIFO": ("pytorch_model.bin.index.json", "which is not a regular file"),
    "a shard a link to /dev/zero": ("pytorch_model.bin.index.json", "which is not a regular file"),
}


@pytest.mark.parametrize("case", list(BIN_CASES))
def test_bin_weights_that_are_not_regular_files_are_refused_before_loading(tmp_path, llama3_small, monkeypatch, case):
    path = _bin_copy(llama3_small, tmp_path / "bad", 1 if case.startswith("pytorch_model.bin") else 2)
    target = path / (
        "pytorch_model.bin" if case.startswith("pytorch_model.bin") else "pytorch_model-00002-of-00002.bin"
    )
    target.unlink()
    os.mkfifo(target) if "FIFO" in case else target.symlink_to("/dev/zero")
    file, words = BIN_CASES[case]
    from subtool.runner.llm.checkpoint import check_checkpoint

    refused(lambda: check_checkpoint(LLM_SPECS["llama3.1-8b"], path), "model.weights", path / file, words)
    _no_load(monkeypatch)  # a generator built without the checks first (a Ray worker's) refuses it too
    refused(lambda: _generator(path), "model.weights", path / file, words)


def test_a_bin_checkpoint_is_unpickled_weights_only(tmp_path, llama3_small):
    """A pickle that would run code when loaded (here: make a directory) is refused, and the code never runs."""
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.mkdir, (str(marker),)

    path = _bin_copy(llama3_small, tmp_path / "evil")
    state = torch.load(path / "pytorch_model.bin", weights_only=True)
    torch.save({**state, "payload": Payload()}, path / "pytorch_model.bin")
    refused(lambda: _generator(path), "model.load", path, "cannot load the checkpoint")
    assert not marker.exists()


# ------------------------------------------------------------------------------------ generation_config.json
def _model_copy(tmp_path, checkpoints) -> Path:
    model = tmp_path / "m"
    shutil.copytree(checkpoints[2], model)
    (model / "tokenizer.json").write_text("{}")
    return model


BAD_GENERATION = {
    "NaN temperature": ('{"do_sample": true, "temperature": NaN, "top_p": 0.9}', "not a finite number"),
    "Infinity top_p": ('{"top_p": Infinity}', "not a finite number"),
    "not an object": ("[1, 2]", "generation_config.json is not a JSON object"),
    "nested too deep": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "over 16 MiB": ('{"pad": "' + "x" * (17 << 20) + '"}', "larger than 16 MiB"),
    "max_time": ('{"max_time": 0.5}', "max_time is 0.5: generation would stop after that many seconds"),
    "stop_strings": ('{"stop_strings": ["\\n"]}', "stop_strings is"),
    "num_return_sequences": ('{"num_beams": 4, "num_return_sequences": 2}', "num_return_sequences is 2"),
    "return_dict_in_generate": ('{"return_dict_in_generate": true}', "return_dict_in_generate is true"),
}


@pytest.mark.parametrize("case", list(BAD_GENERATION))
def test_a_generation_config_that_is_not_strict_json_or_would_change_the_answers_isrefused(tmp_path, bf16, case):  # noqa: F811
    from subtool.runner.llm.checkpoint import check_checkpoint

    model = _model_copy(tmp_path, bf16)
    text, words = BAD_GENERATION[case]
    (model / "generation_config.json").write_text(text)
    path = model / "generation_config.json"
    refused(lambda: check_checkpoint(LLM_SPECS["llama3.1-8b"], model), "model.config", path, words)


@pytest.mark.parametrize(
    "config",
    [  # Llama 3.1 8B Instruct's, Llama 2 70B chat's, GPT-J's: sampling settings and lengths the run overrides
        {"bos_token_id": 128000, "do_sample": True, "eos_token_id": [128001, 128008, 128009], "temperature": 0.6},
        {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "max_length": 4096, "top_p": 0.9},
        {"bos_token_id": 50256, "eos_token_id": 50256, "max_new_tokens": 10**9, "num_return_sequences": 1},
    ],
)
def test_a_generation_config_with_fields_the_run_overrides_passes(tmp_path, bf16, config):  # noqa: F811
    from subtool.runner.llm.checkpoint import check_checkpoint

    model = _model_copy(tmp_path, bf16)
    (model / "generation_config.json").write_text(json.dumps(config))
    check_checkpoint(LLM_SPECS["llama3.1-8b"], model)


# ------------------------------------------------------------------------- finite in the file, not in the run
@pytest.mark.parametrize(
    "name",
    [
        "model.layers.1.self_attn.k_proj.weight",
        "model.layers.2.input_layernorm.weight",
        "model.embed_tokens.weight",
        "lm_head.weight",
    ],
)
def test_an_fp32_value_that_overflows_fp16_is_refused_in_an_fp16_load(tmp_path, bf16, name):  # noqa: F811
    from subtool.runner.llm.checkpoint import load_streaming

    config, state, _ = bf16
    tensors = {k: v.float() for k, v in state.items()}
    tensors[name].view(-1)[3] = 1e6  # finite in float32 and bfloat16, inf in float16
    path = write_checkpoint(tmp_path / "big", config, tensors, shards=1)
    load_streaming(path, "cpu", torch.float32, fp8=False)  # the file itself is fine
    refused(
        lambda: load_streaming(path, "cpu", torch.float16, fp8=False),
        "model.weights",
        path / "model.safetensors",
        name,
        "in float16",
    )


def test_an_e4m3_weight_whose_scale_overflows_fp16_is_refused_in_an_fp16_load(tmp_path, bf16):  # noqa: F811
    """A pre-quantized checkpoint run in fp16: e4m3 × a block scale of 1e6 is finite in float32, inf in fp16."""
    from subtool.runner.llm.checkpoint import load_streaming

    config, state, _ = bf16
    tensors = hf_fp8(state, (32, 32))
    name = "model.layers.0.mlp.down_proj.weight"
    tensors["model.layers.0.mlp.down_proj.weight_scale_inv"][0, 0] *= 1e6
    path = write_checkpoint(tmp_path / "fp8", config, tensors, shards=1, quantization=quant_config("hf-fp8"))
    load_streaming(path, "cpu", torch.float32, fp8=False)
    refused(
        lambda: load_streaming(path, "cpu", torch.float16, fp8=False),
        "model.weights",
        path / "model.safetensors",
        name,
        "in float16",
    )
