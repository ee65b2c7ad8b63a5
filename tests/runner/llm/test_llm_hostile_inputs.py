"""Hostile or broken LLM inputs (probe_run findings 1, 10, 11 and NaN weights): a config.json or index that is not a
regular file, too large or nested too deep; a data set whose token ids are floats, bools or too large, or whose
reference outputs are missing; a checkpoint with NaN or ±inf weights. Each is one SubtoolError naming the file and
the rule, before LoadGen starts."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from subtool.cli import app
from subtool.errors import SubtoolError
from subtool.runner.llm.specs import LLM_SPECS

from .test_llm_checkpoint import bf16, hf_fp8, quant_config, write_checkpoint  # noqa: F401 (bf16: a fixture)

torch = pytest.importorskip("torch")

DEEP = "[" * 100_000 + "]" * 100_000


def _refused(call, rule: str, path: Path, message: str = "") -> SubtoolError:
    with pytest.raises(SubtoolError) as err:
        call()
    assert err.value.rule == rule and Path(err.value.path) == path and message in err.value.message, (
        err.value.one_line()
    )
    return err.value


# ------------------------------------------------------------------------- config.json and the index (1, 10)
def _config_cases(path: Path, good: str) -> dict:
    return {
        "link to /dev/zero": lambda: (path.unlink(), path.symlink_to("/dev/zero")),
        "fifo": lambda: (path.unlink(), os.mkfifo(path)),
        "over 16 MiB": lambda: path.write_text(good[:-1] + ', "pad": "' + "x" * (17 << 20) + '"}'),
        "nested too deep": lambda: path.write_text(DEEP),
        "NaN": lambda: path.write_text(good[:-1] + ', "rms_norm_eps": NaN}'),
    }


CONFIG_CASES = ["link to /dev/zero", "fifo", "over 16 MiB", "nested too deep", "NaN"]


def _model_copy(tmp_path, checkpoints) -> Path:
    """The small bf16 checkpoint (of the bf16 fixture) copied to tmp_path/m with a tokenizer.json, to break."""
    model = tmp_path / "m"
    shutil.copytree(checkpoints[2], model)
    (model / "tokenizer.json").write_text("{}")
    return model


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_a_config_json_that_is_not_a_small_regular_json_file_is_refused(tmp_path, bf16, case):  # noqa: F811
    from subtool.runner.llm.checkpoint import check_checkpoint, fp8_checkpoint, load_streaming

    model = _model_copy(tmp_path, bf16)
    config = model / "config.json"
    _config_cases(config, config.read_text())[case]()
    _refused(lambda: check_checkpoint(LLM_SPECS["llama3.1-8b"], model), "model.config", config, "config.json")
    _refused(lambda: load_streaming(model, "cpu", torch.float32, fp8=False), "model.config", config)
    assert fp8_checkpoint(model) is None


@pytest.mark.parametrize("case", ["link to /dev/zero", "nested too deep", "NaN"])
def test_an_index_that_is_not_a_small_regular_json_file_is_refused(tmp_path, bf16, case):  # noqa: F811
    from subtool.runner.llm.checkpoint import SafetensorsFiles, check_checkpoint

    model = _model_copy(tmp_path, bf16)
    index = model / "model.safetensors.index.json"
    _config_cases(index, index.read_text())[case]()
    _refused(lambda: SafetensorsFiles(model), "model.weights", index, index.name)
    _refused(lambda: check_checkpoint(LLM_SPECS["llama3.1-8b"], model), "model.weights", index, index.name)


@pytest.mark.parametrize(
    "name", ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "model.safetensors"]
)
def test_a_tokenizer_or_weight_file_that_is_not_a_regular_file_is_refused_before_loading(tmp_path, bf16, name):  # noqa: F811
    from subtool.runner.llm.checkpoint import check_checkpoint

    model = _model_copy(tmp_path, bf16)
    (model / name).unlink(missing_ok=True)
    os.mkfifo(model / name)
    rule = {"model.safetensors": "model.weights", "generation_config.json": "model.config"}.get(name, "model.tokenizer")
    _refused(lambda: check_checkpoint(LLM_SPECS["llama3.1-8b"], model), rule, model / name, "not a regular file")


# ------------------------------------------------------------------------------- non-finite weights
@pytest.mark.parametrize(
    "name",
    [
        "model.layers.1.self_attn.k_proj.weight",
        "model.layers.2.mlp.down_proj.weight",
        "model.layers.0.input_layernorm.weight",
        "model.embed_tokens.weight",
        "model.norm.weight",
        "lm_head.weight",
    ],
)
@pytest.mark.parametrize("bad", [float("nan"), float("-inf")])
def test_a_nan_or_inf_in_bf16_weights_is_refused_naming_the_tensor_and_its_file(tmp_path, bf16, name, bad):  # noqa: F811
    from subtool.runner.llm.checkpoint import load_streaming

    config, state, _ = bf16
    tensors = dict(state)
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[7] = bad
    path = write_checkpoint(tmp_path / "nan", config, tensors, shards=3)
    holder = json.loads((path / "model.safetensors.index.json").read_text())["weight_map"][name]
    for dtype in (torch.float32, torch.bfloat16):
        _refused(lambda d=dtype: load_streaming(path, "cpu", d, fp8=False), "model.weights", path / holder, name)


@pytest.mark.parametrize("byte", [0x7F, 0xFF])  # e4m3's NaN, positive and negative
def test_a_nan_in_e4m3_weights_is_refused(tmp_path, bf16, byte):  # noqa: F811
    from subtool.runner.llm.checkpoint import load_streaming

    config, state, _ = bf16
    tensors = hf_fp8(state, (32, 32))
    name = "model.layers.1.mlp.gate_proj.weight"
    raw = tensors[name].view(torch.uint8).clone()
    raw.view(-1)[11] = byte
    tensors[name] = raw.view(torch.float8_e4m3fn)
    path = write_checkpoint(tmp_path / "nan8", config, tensors, shards=1, quantization=quant_config("hf-fp8"))
    _refused(lambda: load_streaming(path, "cpu", torch.float32, fp8=False), "model.weights", path / "model.safetensors")


def test_a_nan_in_a_tensor_parallel_shard_is_refused(tmp_path, bf16):  # noqa: F811
    from subtool.runner.llm.tensor_parallel import load_shard

    config, state, _ = bf16
    name = "model.layers.0.mlp.up_proj.weight"
    tensors = dict(state)
    tensors[name] = tensors[name].clone()
    tensors[name][-1, -1] = float("nan")  # in rank 1's rows
    path = write_checkpoint(tmp_path / "tp", config, tensors, shards=1)
    _refused(
        lambda: load_shard(path, torch.device("cpu"), torch.float32, fp8=False, rank=1, size=2),
        "model.weights",
        path / "model.safetensors",
        name,
    )


# ------------------------------------------------------------------------------------- data sets (10, 11)
def _load(name: str, model_path, path):
    from subtool.runner.llm.datasets import load_data

    return load_data(LLM_SPECS[name], model_path, path)


BAD_SAMPLES = {
    "float ids": ({"tok_input": [1.7, 2.7, 3.7]}, "integer token ids"),
    "integral floats": ({"tok_input": [1.0, 2.0]}, "integer token ids"),
    "bool ids": ({"tok_input": [True, False]}, "integer token ids"),
    "a bool among ints": ({"tok_input": [5, True]}, "integer token ids"),
    "id past int64": ({"tok_input": [2**70, 5]}, "too large"),
    "id past int32": ({"tok_input": [2**32 + 5]}, f"token id {2**32 + 5}"),
    "output null": ({"output": None}, "'output' is None"),
    "output a number": ({"output": 5}, "'output' is 5"),
}


@pytest.mark.parametrize("case", sorted(BAD_SAMPLES))
def test_a_cnn_eval_sample_with_bad_ids_or_output_is_refused(tmp_path, llama3_small, case):
    change, message = BAD_SAMPLES[case]
    records = json.loads(llama3_small.dataset_path.read_text())[:3]
    records[1].update(change)
    path = tmp_path / "cnn_eval.json"
    path.write_text(json.dumps(records))
    err = _refused(lambda: _load("llama3.1-8b", llama3_small.model_path, path), "dataset.format", path, message)
    assert err.message.startswith("sample 1:")


@pytest.mark.parametrize(
    "content, message",
    [
        (DEEP, "nested too deeply"),
        ('[{"tok_input": [1, 2], "output": NaN}]', "not a finite number"),
    ],
)
def test_a_cnn_eval_json_nested_too_deep_or_not_strict_json_is_refused(tmp_path, llama3_small, content, message):
    path = tmp_path / "cnn_eval.json"
    path.write_text(content)
    _refused(lambda: _load("llama3.1-8b", llama3_small.model_path, path), "dataset.format", path, message)


def test_a_data_set_json_that_is_not_a_regular_file_or_too_large_is_refused(tmp_path, llama3_small, monkeypatch):
    from subtool.runner.llm import datasets

    zero = tmp_path / "zero.json"
    zero.symlink_to("/dev/zero")
    _refused(lambda: _load("llama3.1-8b", llama3_small.model_path, zero), "dataset.format", zero, "not a regular")
    monkeypatch.setattr(datasets, "JSON_DATASET_LIMIT", 1 << 20)
    big = tmp_path / "big.json"
    big.write_text(json.dumps([{"tok_input": [1] * 400_000, "output": "x"}]))
    _refused(lambda: _load("llama3.1-8b", llama3_small.model_path, big), "dataset.format", big, "larger than")


def _orca(llama2_small, tmp_path, column: str, values: list) -> Path:
    import pandas as pd

    df = pd.read_pickle(llama2_small.dataset_path).iloc[: len(values)].reset_index(drop=True)
    df[column] = pd.Series(values, dtype=object)
    path = tmp_path / "orca.pkl"
    df.to_pickle(path)
    return path


@pytest.mark.parametrize(
    "column, make, message",
    [
        ("tok_input", lambda ids: [x + 0.7 for x in ids], "integer token ids"),
        ("tok_input", lambda ids: np.asarray(ids, dtype=np.float32), "integer token ids"),
        ("tok_input", lambda ids: [bool(x % 2) for x in ids], "integer token ids"),
        ("tok_input", lambda ids: [2**70, *ids], "too large"),
        ("tok_input", lambda ids: np.asarray([2**40, *ids], dtype=np.int64), f"token id {2**40}"),
        ("output", lambda _: None, "'output' is None"),
        ("output", lambda _: float("nan"), "'output' is nan"),
    ],
)
def test_an_openorca_sample_with_bad_ids_or_output_is_refused(tmp_path, llama2_small, column, make, message):
    import pandas as pd

    df = pd.read_pickle(llama2_small.dataset_path)
    ids = [np.asarray(v, dtype=t) for v, t in zip(df["tok_input"][:3], (np.int32, np.uint16, np.int64))]
    ids[1] = [np.int64(x) for x in ids[1]]  # integer arrays and numpy integers are token ids
    good = _load("llama2-70b-99", llama2_small.model_path, _orca(llama2_small, tmp_path, "tok_input", ids))
    assert [p.tolist() for p in good.prompts] == [list(map(int, v)) for v in df["tok_input"][:3]]
    values = [list(v) if column == "tok_input" else v for v in df[column][:3]]
    values[2] = make(list(df["tok_input"][2]))
    path = _orca(llama2_small, tmp_path, column, values)
    err = _refused(lambda: _load("llama2-70b-99", llama2_small.model_path, path), "dataset.format", path, message)
    assert err.message.startswith("sample 2:")


def test_an_openorca_path_that_is_not_a_regular_file_is_refused(tmp_path, llama2_small):
    zero = tmp_path / "zero.pkl"
    zero.symlink_to("/dev/zero")
    _refused(lambda: _load("llama2-70b-99", llama2_small.model_path, zero), "dataset.format", zero, "regular file")


def test_a_damaged_openorca_pickle_is_not_a_pandas_pickle_not_a_traceback(tmp_path, llama2_small):
    """A byte flipped in numpy's array state: pickle.PickleError, which is no UnpicklingError (and a fuzz found an
    AssertionError from pandas' block layout): each is the file's fault, one line."""
    import pickle

    import pandas as pd

    frame = pd.DataFrame({"tok_input": [[1, 5, 7], [1, 9]], "output": ["a b", "c"]})
    raw = bytearray(pickle.dumps(frame, protocol=4))
    at = raw.find(b"J\x1f\x06\xf1\x04")  # a checksum numpy's reconstructor compares
    assert at > 0
    raw[at + 3] = 0x14
    path = tmp_path / "flipped.pkl"
    path.write_bytes(bytes(raw))
    _refused(
        lambda: _load("llama2-70b-99", llama2_small.model_path, path), "dataset.format", path, "not a pandas pickle"
    )


@pytest.mark.parametrize(
    "change, says",
    [
        ({"num_attention_heads": 0}, "num_attention_heads is 0: a size must be a whole number above 0"),
        ({"vocab_size": "2078"}, 'vocab_size is "2078"'),
        ({"head_dim": 8.5}, "head_dim is 8.5"),
        ({"num_hidden_layers": True}, "num_hidden_layers is true"),
        ({"eos_token_id": "x"}, 'eos_token_id is "x": a token id must be a whole number'),
        ({"eos_token_id": [2, -1]}, "eos_token_id is [2, -1]"),
        ({"bos_token_id": []}, "bos_token_id is []"),
    ],
)
def test_config_sizes_and_token_ids_transformers_would_trip_over_are_refused(tmp_path, llama3_small, change, says):
    """A head count of 0 divided by zero inside transformers, a size written as text failed its strict config
    class: each was a traceback from the benchmark process; now one line naming config.json."""
    from subtool.runner.llm.checkpoint import check_checkpoint

    model = tmp_path / "model"
    shutil.copytree(llama3_small.model_path, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, **change}))
    check = lambda: check_checkpoint(LLM_SPECS["llama3.1-8b"], model)  # noqa: E731
    _refused(check, "model.config", model / "config.json", says)


def test_a_tokenizer_json_the_tokenizers_library_refuses_is_one_line(tmp_path, llama3_small):
    from subtool.runner.llm.checkpoint import load_tokenizer

    model = tmp_path / "model"
    shutil.copytree(llama3_small.model_path, model)
    tok = json.loads((model / "tokenizer.json").read_text())
    tok["model"]["type"] = "NoSuchModel"  # the Rust library's own exception type, not OSError/ValueError
    (model / "tokenizer.json").write_text(json.dumps(tok))
    _refused(lambda: load_tokenizer(model), "model.tokenizer", model, "cannot load the tokenizer")


@pytest.mark.parametrize(
    "field, value, message",
    [("instruction", 5, "is 5"), ("input", None, "is None"), ("output", [1], "is [1]")],
)
def test_a_gptj_sample_whose_text_is_not_a_string_is_refused(tmp_path, gptj_small, field, value, message):
    records = json.loads(gptj_small.dataset_path.read_text())[:2]
    records[0][field] = value
    path = tmp_path / "cnn_eval.json"
    path.write_text(json.dumps(records))
    _refused(lambda: _load("gptj-99", gptj_small.model_path, path), "dataset.format", path, f"'{field}' {message}")


# --------------------------------------------------------------------------------------------- end to end
def _bad_model(tmp_path, small) -> tuple[Path, Path]:
    model = tmp_path / "model"
    shutil.copytree(small.model_path, model)
    (model / "config.json").unlink()
    (model / "config.json").symlink_to("/dev/zero")
    return model, small.dataset_path


def _bad_data(tmp_path, small) -> tuple[Path, Path]:
    records = json.loads(small.dataset_path.read_text())
    records[0]["tok_input"] = [x + 0.5 for x in records[0]["tok_input"]]
    path = tmp_path / "cnn_eval.json"
    path.write_text(json.dumps(records))
    return small.model_path, path


def _nan_weights(tmp_path, small) -> tuple[Path, Path]:
    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(small.model_path, model)
    tensors = load_file(model / "model.safetensors")
    tensors["model.layers.0.mlp.up_proj.weight"].view(-1)[5] = float("nan")
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})
    return model, small.dataset_path


def _missing_weight(tmp_path, small) -> tuple[Path, Path]:
    """transformers fills a weight the file lacks with random numbers: the batched engine ran on and exited 0."""
    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(small.model_path, model)
    tensors = load_file(model / "model.safetensors")
    del tensors["model.layers.1.mlp.down_proj.weight"]
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})
    return model, small.dataset_path


def _layer_claimed(tmp_path, small) -> tuple[Path, Path]:
    """config.json claims one layer more than the file holds: that layer would be random."""
    model = tmp_path / "model"
    shutil.copytree(small.model_path, model)
    config = json.loads((model / "config.json").read_text())
    config["num_hidden_layers"] += 1
    (model / "config.json").write_text(json.dumps(config))
    return model, small.dataset_path


@pytest.mark.parametrize(
    "make, rule",
    [
        (_bad_model, "model.config"),
        (_bad_data, "dataset.format"),
        (_nan_weights, "model.weights"),
        (_missing_weight, "model.weights"),
        (_layer_claimed, "model.weights"),
    ],
)
def test_subtool_run_refuses_in_one_line_without_a_traceback(tmp_path, llama3_small, capfd, make, rule):
    model, data = make(tmp_path, llama3_small)
    out = tmp_path / "runs"
    args = ["run", "--model", "llama3.1-8b", "--model-path", model, "--dataset-path", data, "--out", out]
    res = CliRunner().invoke(app, [*map(str, args), "--mode", "accuracy"])
    captured = capfd.readouterr()
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert res.exit_code == 2 and len(errors) == 1 and f"[{rule}]" in errors[0], res.output
    assert "Traceback" not in res.output + captured.out + captured.err
    assert not out.exists() or not any(out.rglob("run.json"))


@pytest.mark.parametrize(
    "text, says",
    [
        ('{"max_new_tokens": ', "is not valid JSON"),
        ('{"max_new_tokens": 0}', "max_new_tokens = 0 is no demo setting"),
        ('{"max_new_tokens": "16"}', "max_new_tokens = 16 is no demo setting"),
        ('{"batch_size": 1e30}', "batch_size = 1e+30 is no demo setting"),
        ('{"temperature": 2}', "temperature = 2 is no demo setting"),
        ("[16]", "must hold a JSON object"),
    ],
)
def test_the_demos_settings_file_is_read_strictly_in_one_line(tmp_path, text, says):
    """A broken subtool_demo.json was a traceback from the benchmark process naming its staging folder."""
    from subtool.runner.llm.workload import DEMO_SETTINGS_FILE, demo_settings

    (tmp_path / "SUBTOOL_DEMO.txt").write_text("demo\n")
    (tmp_path / DEMO_SETTINGS_FILE).write_text(text)
    _refused(lambda: demo_settings(tmp_path), "model.demo", tmp_path / DEMO_SETTINGS_FILE, says)


def test_demo_settings_apply_only_beside_the_demos_marker_and_say_so(tmp_path, capfd):
    """A settings file dropped into a real checkpoint silently cut its answers to 2 tokens: without the demo's
    marker it is not read; with it, the benchmark process names the file and the settings."""
    from subtool.runner.llm.workload import DEMO_SETTINGS_FILE, demo_settings, generation_for

    (tmp_path / DEMO_SETTINGS_FILE).write_text('{"max_new_tokens": 2}')
    spec = LLM_SPECS["llama3.1-8b"]
    assert demo_settings(tmp_path) == {} and generation_for(spec, tmp_path, {}).max_new_tokens == 128
    (tmp_path / "SUBTOOL_DEMO.txt").write_text("demo\n")
    assert generation_for(spec, tmp_path, {}).max_new_tokens == 2
    assert (
        f"{tmp_path / DEMO_SETTINGS_FILE}: the embedded demo's settings apply (max_new_tokens 2)"
        in capfd.readouterr().err
    )
