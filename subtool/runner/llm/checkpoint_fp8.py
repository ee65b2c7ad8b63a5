"""The weight formats a Llama checkpoint comes in, and one projection's weight turned into what the engine takes.

Three formats, told apart by config.json's `quantization_config`:

- plain (no quantization_config): bf16/fp16/fp32 weights;
- `quant_method: "fp8"` (transformers' fine-grained FP8): a projection's `weight` in e4m3 and `weight_scale_inv`
  float32 per block of `weight_block_size` rows × columns (the scale grid rounds up, so edge blocks are partial;
  a single value without blocks), weight = e4m3 × scale; `activation_scale` (static activations) is not used;
- `quant_method: "compressed-tensors"`, format `float-quantized` (llm-compressor's FP8): `weight` in e4m3 and
  `weight_scale` per tensor ([1] or a scalar), per output channel ([out, 1]) or per block ([⌈out/b⌉, ⌈in/b⌉]
  with the group's `block_structure`), weight = e4m3 × scale; `input_scale` (static activations) is not used.

In every format a tensor decides by itself: an e4m3 `weight` needs its scale next to it, any other float weight is
dense (modules a quantization config leaves out, e.g. the LM head). The engine multiplies activations quantized per
token row (dynamic), which needs no static input scale.

A projection becomes a `Part`: `rows` (e4m3 [out, in] with one float32 scale per output channel: per-tensor and
per-channel checkpoints go there unchanged, only the scale is expanded) or `dense` (a float tensor: plain weights,
and block-wise ones dequantized on the device). Parts side by side (q|k|v, gate|up) fuse into the engine's form:
rows concatenate; anything dense is dequantized and quantized again per output channel by engine_layer.quantized, which
per channel is the same as quantizing each part alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from subtool.errors import SubtoolError
from subtool.runner.llm.engine_layer import quantized

E4M3 = torch.float8_e4m3fn


@dataclass(frozen=True)
class WeightFormat:
    name: str  # "plain" | "hf-fp8" | "compressed-tensors"
    scale_suffix: str | None  # the scale tensor's name next to a projection's `weight`
    block: tuple[int, int] | None  # declared block size (rows, columns) of block-wise scales


PLAIN = WeightFormat("plain", None, None)


def _block(value, config_path: Path, key: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
        raise SubtoolError(
            f"quantization_config {key} must be two positive integers, not {value!r}",
            path=config_path,
            rule="model.quantization",
        )
    return int(value[0]), int(value[1])


def _compressed_tensors(q: dict, config_path: Path) -> WeightFormat:
    """compressed-tensors: only float-quantized 8-bit float weights (one block size for every group)."""
    groups = q.get("config_groups") or {}
    blocks = set()
    for name, group in groups.items() if isinstance(groups, dict) else ():
        weights = (group or {}).get("weights") or {}
        fmt = group.get("format") or q.get("format")
        if (
            fmt not in (None, "float-quantized")
            or weights.get("type", "float") != "float"
            or weights.get("num_bits", 8) != 8
        ):
            raise SubtoolError(
                f"compressed-tensors group {name!r} is {fmt or q.get('format')!r} "
                f"{weights.get('type')} {weights.get('num_bits')}-bit; only float-quantized FP8 (e4m3) loads",
                path=config_path,
                rule="model.quantization",
            )
        blocks.add(_block(weights.get("block_structure"), config_path, "block_structure"))
    if q.get("format") not in (None, "float-quantized", "mixed-precision") or not groups:
        raise SubtoolError(
            f"compressed-tensors format {q.get('format')!r}; only float-quantized FP8 (e4m3) loads",
            path=config_path,
            rule="model.quantization",
        )
    if len(blocks) > 1:
        raise SubtoolError(
            "compressed-tensors groups with different block sizes", path=config_path, rule="model.quantization"
        )
    return WeightFormat("compressed-tensors", "weight_scale", next(iter(blocks)))


def weight_format(config: dict, config_path: Path) -> WeightFormat:
    """The checkpoint's format from config.json's quantization_config; refuses one this loader cannot read."""
    q = config.get("quantization_config")
    if q is None:
        return PLAIN
    if not isinstance(q, dict):
        raise SubtoolError("quantization_config is not a JSON object", path=config_path, rule="model.quantization")
    method = q.get("quant_method")
    if method == "fp8":
        if q.get("scale_fmt", "float") not in ("float", "ue8m0"):
            raise SubtoolError(f"fp8 scale_fmt {q.get('scale_fmt')!r}", path=config_path, rule="model.quantization")
        return WeightFormat("hf-fp8", "weight_scale_inv", _block(q.get("weight_block_size"), config_path, "block"))
    if method == "compressed-tensors":
        return _compressed_tensors(q, config_path)
    raise SubtoolError(
        f"quantization method {method!r}: the loader reads plain weights, quant_method 'fp8' and "
        "compressed-tensors float-quantized",
        path=config_path,
        rule="model.quantization",
    )


@dataclass
class Part:
    """One projection's weight: e4m3 rows with a float32 scale per row, or a dense float tensor."""

    rows: torch.Tensor | None = None  # e4m3 [out, in]
    scale: torch.Tensor | None = None  # float32 [out]
    dense: torch.Tensor | None = None  # [out, in]

    def dequantized(self, dtype) -> torch.Tensor:
        if self.dense is not None:
            return self.dense.to(dtype)
        return (self.rows.float() * self.scale[:, None]).to(dtype)


def _bad(name: str, where: str, what: str) -> SubtoolError:
    return SubtoolError(f"{name}: {what}", path=where, rule="model.weights")


def _grid(shape: tuple[int, int], scale_shape: tuple, block: tuple[int, int] | None, name: str, where: str):
    """The block size (rows, columns) that scale_shape's grid tiles shape with (edge blocks partial)."""
    out, cols = shape
    if len(scale_shape) != 2:
        raise _bad(name, where, f"scale of shape {list(scale_shape)} for a weight of shape {list(shape)}")
    if block is None:  # undeclared: the grid must tile the weight exactly
        if out % scale_shape[0] or cols % scale_shape[1]:
            raise _bad(name, where, f"scale grid {list(scale_shape)} does not tile the weight {list(shape)}")
        return out // scale_shape[0], cols // scale_shape[1]
    if tuple(scale_shape) != (math.ceil(out / block[0]), math.ceil(cols / block[1])):
        raise _bad(name, where, f"scale grid {list(scale_shape)} is not {list(shape)} in blocks of {list(block)}")
    return block


def dequantize_blocks(weight8: torch.Tensor, scale: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """e4m3 [out, in] times its per-block scale grid, in float32 on weight8's device."""
    out, cols = weight8.shape
    full = scale.float().repeat_interleave(block[0], dim=0)[:out].repeat_interleave(block[1], dim=1)[:, :cols]
    return weight8.float() * full


def to_part(weight: torch.Tensor, scale: torch.Tensor | None, fmt: WeightFormat, name: str, where: str) -> Part:
    """A projection's checkpoint tensors (already on the target device) as a Part; refuses missing or broken
    scales. e4m3 with a per-tensor or per-channel scale stays e4m3; block scales are dequantized."""
    if weight.dtype != E4M3:
        if not weight.is_floating_point() or weight.element_size() < 2:
            raise _bad(name, where, f"weight of dtype {weight.dtype} (expected a float type or e4m3 with a scale)")
        return Part(dense=weight)
    if scale is None:
        raise _bad(name, where, f"e4m3 weight without its {fmt.scale_suffix or 'scale'} tensor")
    s = scale.float()
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise _bad(name, where, "scale is not finite or negative")
    out = weight.shape[0]
    if s.numel() == 1:
        return Part(rows=weight, scale=s.reshape(1).expand(out).contiguous())
    if tuple(s.shape) in ((out,), (out, 1)):
        return Part(rows=weight, scale=s.reshape(out).contiguous())
    block = _grid(tuple(weight.shape), tuple(s.shape), fmt.block, name, where)
    return Part(dense=dequantize_blocks(weight, s, block))


def fuse(parts: list[Part], bias: torch.Tensor | None, fp8: bool, dtype) -> tuple:
    """Projections side by side (q|k|v, gate|up, or one alone) in the engine's form (engine_layer.quantized's tuple)."""
    if fp8 and all(p.rows is not None for p in parts):
        rows = torch.cat([p.rows for p in parts]) if len(parts) > 1 else parts[0].rows
        scale = torch.cat([p.scale for p in parts]) if len(parts) > 1 else parts[0].scale
        return (None, None if bias is None else bias.to(dtype), rows.t(), scale[None, :].contiguous())
    if fp8:  # quantized per output channel (e4m3 parts dequantized first, in float32)
        same = all(p.dense is not None for p in parts) and len({p.dense.dtype for p in parts}) == 1
        wide = parts[0].dense.dtype if same else torch.float32
        dense = torch.cat([p.dequantized(wide) for p in parts])
    else:
        dense = torch.cat([p.dequantized(dtype) for p in parts]) if len(parts) > 1 else parts[0].dequantized(dtype)
    return quantized(dense.contiguous(), None if bias is None else bias.to(dtype), fp8)
