"""The bound on .bin weights (checkpoint_memory.bin_bytes_bound) figured by hand for the reference models, and
check_bin_size at that bound: the bytes it allows load, one byte more is refused before torch.load reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from subtool.errors import SubtoolError
from subtool.runner.llm.checkpoint_memory import PICKLE_SLACK, bin_bytes_bound, check_bin_size

from .test_llm_checkpoint_memory import LLAMA2_70B

GPTJ_6B = {
    "model_type": "gptj",
    "n_embd": 4096,
    "n_layer": 28,
    "n_positions": 2048,
    "n_inner": None,
    "vocab_size": 50400,
}
TINY = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 256,
}


def test_the_bound_of_the_reference_models_by_hand():
    # Llama-2-70B: its 68,976,648,192 parameters, a bias for every projection and norm, in float32 and 1% more;
    # rotary inv_freq (head_dim 128) per layer
    biases = 80 * (8192 + 2 * 1024 + 2 * 28672 + 2 * 8192)
    assert bin_bytes_bound(LLAMA2_70B, "c") == int(4 * (68_976_648_192 + biases) * 1.01) + 80 * 256 + PICKLE_SLACK
    assert bin_bytes_bound(LLAMA2_70B, "c") == 278_697_011_937  # the 138 GB of the bf16 shards fit
    # GPT-J-6B: 6,050,882,784 parameters with biases and the untied head; a 2048² causal mask per layer
    per_layer = 4 * 4096 * 4096 + 2 * 4096 * 16384 + 16384 + 3 * 4096
    params = 28 * per_layer + 2 * 50400 * 4096 + 50400 + 2 * 4096
    assert params == 6_050_882_784
    assert bin_bytes_bound(GPTJ_6B, "c") == int(4 * params * 1.01) + 28 * (2048 * 2048 + 4) + PICKLE_SLACK
    assert 24_200_000_000 < bin_bytes_bound(GPTJ_6B, "c") < 24_600_000_000  # its fp32 .bin is 24.2 GB
    unset = {k: v for k, v in GPTJ_6B.items() if k not in ("n_positions", "n_inner")}  # GPT-J's own defaults
    assert bin_bytes_bound(unset, "c") == bin_bytes_bound(GPTJ_6B, "c")


def _sparse(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        fh.truncate(size)


def test_bin_weights_at_the_bound_pass_and_a_byte_more_is_refused(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(TINY))
    bound = bin_bytes_bound(TINY, model / "config.json")
    _sparse(model / "pytorch_model.bin", bound)
    check_bin_size(model, TINY)
    _sparse(model / "pytorch_model.bin", bound + 1)
    with pytest.raises(SubtoolError) as err:
        check_bin_size(model, TINY)
    assert err.value.rule == "model.weights" and Path(err.value.path) == model / "pytorch_model.bin"


def test_bin_shards_are_bounded_together(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    bound = bin_bytes_bound(TINY, model / "config.json")
    names = ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"]
    weight_map = {"a.weight": names[0], "b.weight": names[1]}
    (model / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    _sparse(model / names[0], bound // 2)
    _sparse(model / names[1], bound - bound // 2)
    check_bin_size(model, TINY)
    _sparse(model / names[1], bound - bound // 2 + 1)  # each shard is under the bound; together they are not
    with pytest.raises(SubtoolError) as err:
        check_bin_size(model, TINY)
    assert err.value.rule == "model.weights" and Path(err.value.path) == model and "2 .bin shards" in err.value.message


@pytest.mark.parametrize("value", [0, -4, True, 2.5, "64"])
def test_a_config_size_that_is_not_a_positive_integer_is_refused(tmp_path, value):
    model = tmp_path / "m"
    model.mkdir()
    _sparse(model / "pytorch_model.bin", 1)
    config = TINY | {"hidden_size": value}
    with pytest.raises(SubtoolError) as err:
        check_bin_size(model, config)
    assert err.value.rule == "model.config" and "hidden_size" in err.value.message


def test_weight_bytes_count_a_tied_head_once_and_fp8_scales_per_output_channel():
    from subtool.runner.llm.checkpoint_memory import Shape, weight_bytes

    tiny = Shape.of(TINY)  # q 64, k and v 32 each (head_dim 16), intermediate 96
    projections = 64 * (64 + 2 * 32) + 64 * 64 + 3 * 64 * 96
    assert tiny.projection_params() == projections
    untied = 2 * (projections * 2 + 2 * 64 * 2) + 256 * 64 * 2 * 2 + 64 * 2
    assert weight_bytes(tiny, False, 2) == untied
    tied = Shape.of(TINY | {"tie_word_embeddings": True})
    assert weight_bytes(tied, False, 2) == untied - 256 * 64 * 2
    scales = 4 * (64 + 2 * 32 + 64 + 2 * 96 + 64)  # a float32 per output row of q|k|v, o, gate|up, down
    assert weight_bytes(tiny, True, 2) == untied - 2 * projections + 2 * scales


def test_under_tensor_parallelism_a_rank_needs_its_share():
    from subtool.runner.llm.checkpoint_memory import check_fits_streaming, needed_bytes, rank_config

    share = rank_config(LLAMA2_70B, 2)
    assert (share["num_attention_heads"], share["num_key_value_heads"], share["intermediate_size"]) == (32, 4, 14336)
    assert share["head_dim"] == 128 and share["hidden_size"] == 8192
    sizes = dict(precision="fp8", kv_fp8=True, max_len=2048, min_slots=32)
    free = sum(needed_bytes(share, **sizes))
    assert sum(needed_bytes(LLAMA2_70B, **sizes)) > free
    check_fits_streaming("m", LLAMA2_70B, **sizes, free=free, where="cuda:0", tensor_parallel=2)
    with pytest.raises(SubtoolError) as err:
        check_fits_streaming("m", LLAMA2_70B, **sizes, free=free, where="cuda:0", tensor_parallel=1)
    assert err.value.rule == "model.too_large" and "--tensor-parallel 2" in (err.value.hint or "")
