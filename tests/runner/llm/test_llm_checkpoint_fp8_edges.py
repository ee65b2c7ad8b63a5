"""Edges of the pre-quantized formats (checkpoint_fp8.py): quantization configs the loader cannot read, and scales
whose shape fits no rule of the format; each refused in one line, never loaded as other weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from subtool.errors import SubtoolError

torch = pytest.importorskip("torch")

E4M3 = torch.float8_e4m3fn
CONFIG = Path("/ckpt/config.json")


def _group(**weights) -> dict:
    return {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "strategy": "channel"} | weights}


def _compressed(groups: dict, fmt: str | None = "float-quantized") -> dict:
    return {"quantization_config": {"quant_method": "compressed-tensors", "format": fmt, "config_groups": groups}}


@pytest.mark.parametrize(
    "config, words",
    [
        (_compressed({"g": _group(num_bits=4)}), "4-bit"),
        (_compressed({"g": _group(type="int")}), "int 8-bit"),
        (_compressed({"g": _group() | {"format": "pack-quantized"}}, fmt="mixed-precision"), "'pack-quantized'"),
        (_compressed({}), "format 'float-quantized'"),
        (
            _compressed({"a": _group(block_structure=[128, 128]), "b": _group(block_structure=[64, 64])}),
            "different block sizes",
        ),
        ({"quantization_config": {"quant_method": "fp8", "scale_fmt": "e8m0"}}, "scale_fmt 'e8m0'"),
        ({"quantization_config": {"quant_method": "fp8", "weight_block_size": [128]}}, "two positive integers"),
        ({"quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128, 1]}}, "two positive"),
    ],
)
def test_a_quantization_config_the_loader_cannot_read_is_refused(config, words):
    from subtool.runner.llm.checkpoint_fp8 import weight_format

    with pytest.raises(SubtoolError) as err:
        weight_format(config, CONFIG)
    assert err.value.rule == "model.quantization" and Path(err.value.path) == CONFIG
    assert words in err.value.message, err.value.message


def test_the_formats_read_are_told_apart():
    from subtool.runner.llm.checkpoint_fp8 import PLAIN, weight_format

    assert weight_format({}, CONFIG) == PLAIN
    fp8 = weight_format({"quantization_config": {"quant_method": "fp8", "scale_fmt": "ue8m0"}}, CONFIG)
    assert (fp8.name, fp8.scale_suffix, fp8.block) == ("hf-fp8", "weight_scale_inv", None)
    blocks = _compressed({"a": _group(block_structure=[128, 64]), "b": _group(block_structure=[128, 64])})
    ct = weight_format(blocks, CONFIG)
    assert (ct.name, ct.scale_suffix, ct.block) == ("compressed-tensors", "weight_scale", (128, 64))


def _weight(out: int = 4, cols: int = 6):
    return (torch.arange(out * cols, dtype=torch.float32).reshape(out, cols) / 8).to(E4M3)


@pytest.mark.parametrize(
    "scale_shape, words",
    [
        ((1, 4), "does not tile"),  # one scale per output channel, but laid out as a row: 4 does not tile 6 columns
        ((2, 4), "does not tile"),  # 2 rows of blocks tile 4 rows; 4 columns of blocks do not tile 6
        ((2, 3, 1), "scale of shape [2, 3, 1]"),
    ],
)
def test_a_scale_whose_shape_fits_no_rule_is_refused(scale_shape, words):
    from subtool.runner.llm.checkpoint_fp8 import WeightFormat, to_part

    fmt = WeightFormat("compressed-tensors", "weight_scale", None)
    with pytest.raises(SubtoolError) as err:
        to_part(_weight(), torch.ones(scale_shape), fmt, "x.weight", "/ckpt/model.safetensors")
    assert err.value.rule == "model.weights" and words in err.value.message, err.value.message


def test_scales_per_channel_per_tensor_and_per_block_are_read_as_their_rule_says():
    from subtool.runner.llm.checkpoint_fp8 import WeightFormat, to_part

    fmt, w = WeightFormat("compressed-tensors", "weight_scale", None), _weight()
    channel = to_part(w, torch.tensor([[1.0], [2.0], [3.0], [4.0]]), fmt, "x.weight", "f")
    assert channel.rows is w and channel.scale.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert channel.dequantized(torch.float32)[3, 5] == w[3, 5].float() * 4  # row 3's scale, not column 3's
    tensor = to_part(w, torch.tensor(0.5), fmt, "x.weight", "f")
    assert tensor.scale.tolist() == [0.5] * 4
    blocks = to_part(w, torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), fmt, "x.weight", "f")  # 2×2 blocks
    assert blocks.rows is None and blocks.dense[3, 5] == w[3, 5].float() * 6
    assert blocks.dense[1, 2] == w[1, 2].float() * 2
    tall = to_part(w, torch.tensor([[1.0, 2.0], [3.0, 4.0]]), fmt, "x.weight", "f")  # blocks of 2 rows × 3 columns
    assert tall.dense[0, 4] == w[0, 4].float() * 2 and tall.dense[3, 2] == w[3, 2].float() * 3


@pytest.mark.parametrize("dtype", [torch.int32, torch.int8, torch.uint8])
def test_a_weight_of_an_integer_dtype_is_refused(dtype):
    from subtool.runner.llm.checkpoint_fp8 import PLAIN, to_part

    with pytest.raises(SubtoolError) as err:
        to_part(torch.ones(4, 6, dtype=dtype), None, PLAIN, "x.weight", "f")
    assert err.value.rule == "model.weights" and f"weight of dtype {dtype}" in err.value.message
