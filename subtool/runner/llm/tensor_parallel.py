"""Tensor parallelism for the continuous engine's Llama layers: which part of each weight a rank holds, reading only
that part from the safetensors files, and the sums over the ranks that make the layer whole again.

Megatron's split of a decoder layer over N ranks: q, k, v, gate and up are cut by output rows (each rank holds
heads/N query heads, kv_heads/N kv heads and intermediate/N MLP channels, so attention and SiLU·up need nothing
from the other ranks), o and down by input columns (each rank's product is a partial sum of the whole output,
summed over the ranks by an all-reduce after each). The embedding, the norms and the LM head are whole on every
rank, so every rank computes the same logits and picks the same token: the scheduling runs identically everywhere
(tp_launch.py keeps it so by sending rank 0's arrivals to the others).

A rank's engine sees an ordinary, smaller model: the config with heads, kv heads and intermediate size divided by
N (and head_dim written out, so it stays the same), and layer weights of those shapes; the engine's one hook
(`layer_output`) swaps its output half for `sharded_output` below.

The loader reads each rank's rows or columns straight from the file (safetensors slices), never the whole tensor;
per-channel fp8 scales follow their rows, block scales their blocks (a block may not straddle two ranks).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch

from subtool.errors import SubtoolError
from subtool.runner.llm.checkpoint import (
    INDEX,
    SINGLE,
    LayerReader,
    SafetensorsFiles,
    _fill_outer,
    _first_line,
    model_config,
    read_config,
)
from subtool.runner.llm.checkpoint_memory import rank_config  # noqa: F401  (one rank's config.json shape)
from subtool.runner.llm.engine_layer import feed_forward_down, linear, rms_norm

RULE = "run.tensor_parallel"
ROW_SPLIT = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")  # cut by output rows
COLUMN_SPLIT = ("o_proj", "down_proj")  # cut by input columns: partial sums, all-reduced


# ------------------------------------------------------------------------------------- what a rank holds
def check_divisible(config: dict, size: int, path: Path | None = None) -> None:
    """Refuse a TP size that does not divide the heads, the kv heads and the MLP width (before anything starts)."""
    heads = int(config.get("num_attention_heads") or 0)
    counts = {
        "attention heads": heads,
        "kv heads": int(config.get("num_key_value_heads") or heads),
        "MLP channels (intermediate_size)": int(config.get("intermediate_size") or 0),
    }
    for what, n in counts.items():
        if n % size:
            options = [d for d in (1, 2, 4, 8) if all(v % d == 0 for v in counts.values())]
            raise SubtoolError(
                f"--tensor-parallel {size} does not divide the model's {n} {what}",
                path=path,
                rule=RULE,
                hint=f"this model splits over {', '.join(map(str, options))} ranks",
            )


def shard_model_config(config, size: int):
    """A transformers config for one rank's engine: heads, kv heads and intermediate divided, head_dim kept."""
    out = copy.deepcopy(config)
    out.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    out.num_attention_heads = config.num_attention_heads // size
    out.num_key_value_heads = (config.num_key_value_heads or config.num_attention_heads) // size
    out.intermediate_size = config.intermediate_size // size
    return out


def split_of(name: str) -> int | None:
    """The axis a layer tensor is cut along (0: rows, 1: columns), None when every rank holds it whole."""
    if not name.startswith("model.layers."):
        return None
    parts = name.split(".")
    module, leaf = parts[-2], parts[-1]
    if module in ROW_SPLIT:
        return 0  # weight, bias and per-channel scale rows; a block grid by block rows
    if module in COLUMN_SPLIT and leaf == "weight":
        return 1
    if module in COLUMN_SPLIT and leaf != "bias":
        return 1  # a scale: per-tensor and per-channel ones stay whole (see ShardFiles._scale_slice)
    return None


# ------------------------------------------------------------------------------------------ the loader
class ShardFiles(SafetensorsFiles):
    """SafetensorsFiles that read rank `rank` of `size`'s part of every layer tensor, by slicing in the file."""

    def __init__(self, model_path: Path, rank: int, size: int, progress=None):
        super().__init__(model_path)
        self.rank, self.size = rank, size
        self.progress = progress or (lambda: None)  # called after each tensor read (tp_watch's beats)

    def read(self, names: list[str], device, shapes: dict | None = None) -> dict[str, object]:
        shapes = shapes or {}
        by_file: dict[Path, list[str]] = {}
        for name in names:
            if name in self.weight_map:
                by_file.setdefault(self.weight_map[name], []).append(name)
        out = {}
        for file, wanted in by_file.items():
            with self._open(file) as f:
                present = set(f.keys())
                for name in wanted:
                    if name not in present:
                        raise SubtoolError(
                            f"{name}: the index places it here but the file does not hold it",
                            path=file,
                            rule="model.weights",
                        )
                    out[name] = self._read_one(f, name, shapes, file).to(device)
                    self.progress()
        return out

    def _read_one(self, f, name: str, shapes: dict, file: Path):
        axis = split_of(name)
        try:
            view = f.get_slice(name)
            full = tuple(view.get_shape())
        except Exception as exc:  # a header entry safetensors cannot describe
            raise SubtoolError(f"{name}: cannot read: {_first_line(exc)}", path=file, rule="model.load") from None
        if name in shapes:
            want = self.full_shape(name, shapes[name])
            if full != want:
                raise SubtoolError(
                    f"{name} has shape {list(full)}, the config says {list(want)}", path=file, rule="model.weights"
                )
        index = self._slice(name, axis, full, shapes, file)
        try:
            return view[index] if index is not None else f.get_tensor(name)
        except Exception as exc:  # a cut-short file or a dtype this safetensors cannot read
            raise SubtoolError(f"{name}: cannot read: {_first_line(exc)}", path=file, rule="model.load") from None

    def full_shape(self, name: str, shard: tuple) -> tuple:
        axis = split_of(name)
        if axis is None or not name.endswith((".weight", ".bias")) or axis >= len(shard):
            return tuple(shard)
        return tuple(n * self.size if i == axis else n for i, n in enumerate(shard))

    def _slice(self, name: str, axis: int | None, full: tuple, shapes: dict, file: Path):
        """The index of this rank's part of a tensor of shape `full` (None: the whole tensor)."""
        if axis is None or self.size == 1:
            return None
        if name.endswith((".weight", ".bias")):
            n = full[axis] // self.size
            cut = slice(self.rank * n, (self.rank + 1) * n)
            return cut if axis == 0 else (slice(None), cut)
        return self._scale_slice(name, axis, full, shapes, file)

    def _scale_slice(self, name: str, axis: int, full: tuple, shapes: dict, file: Path):
        """A scale next to a split weight: per tensor whole; per output channel cut with the rows (whole for a
        column split); a block grid cut by whole blocks."""
        weight = name.rsplit(".", 1)[0] + ".weight"
        if weight not in shapes or math.prod(full) == 1:
            return None
        w_full = self.full_shape(weight, shapes[weight])
        if full in ((w_full[0],), (w_full[0], 1)):
            n = w_full[0] // self.size
            return slice(self.rank * n, (self.rank + 1) * n) if axis == 0 else None
        if len(full) != 2:
            return None  # to_part refuses it with the shapes in words
        block = -(-w_full[axis] // full[axis])  # the grid's block along the cut
        per_rank = w_full[axis] // self.size
        if per_rank % block:
            raise SubtoolError(
                f"{name}: scale blocks of {block} do not split evenly over {self.size} ranks "
                f"({w_full[axis]} {'rows' if axis == 0 else 'columns'})",
                path=file,
                rule=RULE,
            )
        cut = slice(self.rank * per_rank // block, (self.rank + 1) * per_rank // block)
        return cut if axis == 0 else (slice(None), cut)


def load_shard(model_path: Path, device, dtype, *, fp8: bool, rank: int, size: int, progress=None):
    """(skeleton model of one rank's shape, that rank's per-layer weights): as checkpoint.load_streaming, reading
    only the rank's rows and columns of each projection; o's and down's bias (if any) only on rank 0. `progress()`
    is called after every tensor read and every layer built."""
    from subtool.runner.llm.checkpoint_fp8 import weight_format
    from subtool.runner.llm.skeleton import meta_model

    model_path = Path(model_path)
    if not ((model_path / INDEX).is_file() or (model_path / SINGLE).is_file()):
        raise SubtoolError("tensor parallelism reads safetensors checkpoints only", path=model_path, rule=RULE)
    fmt = weight_format(read_config(model_path), model_path / "config.json")
    files = ShardFiles(model_path, rank, size, progress)
    whole = model_config(model_path)
    config = shard_model_config(whole, size)
    model = meta_model(config, device, dtype)
    _fill_outer(model, files, config, fmt, device, dtype)
    reader = LayerReader(files, config, fmt, device, dtype, fp8)
    layers = []
    for i in range(config.num_hidden_layers):
        layer = reader.layer(i)
        if rank:
            for key in ("o", "down"):  # the bias of a summed product belongs to one rank
                w, _, w8, scale = layer[key]
                layer[key] = (w, None, w8, scale)
        layers.append(layer)
        files.progress()
    return model, layers


# ------------------------------------------------------------------------------- the engine's hook
def _o_partial(attended, o_proj):
    return linear(attended, o_proj)


def _mlp_partial(x, o_sum, norm_weight, eps: float, gate_up, down, intermediate: int, fused_silu: bool):
    """The residual after attention (x + the summed o product) and this rank's partial down product."""
    x = x + o_sum
    gu = linear(rms_norm(x, norm_weight, eps), gate_up)
    return x, feed_forward_down(gu, intermediate, down, fused_silu)


def sharded_output(reduce, compiled: bool = False):
    """engine_layer.attention_output (same arguments) for a rank's shard: its o and down products are partial sums,
    summed over the ranks by `reduce` before the residual adds them (ContinuousEngine(layer_output=...)). With
    `compiled`, the arithmetic between the two sums is torch.compile'd, as the engine compiles its own."""
    o_part, mlp_part = _o_partial, _mlp_partial
    if compiled:
        o_part = torch.compile(_o_partial, fullgraph=True)
        mlp_part = torch.compile(_mlp_partial, fullgraph=True)

    def attention_output(x, attended, o_proj, norm_weight, eps, gate_up, down, intermediate, fused_silu=False):
        o_sum = reduce(o_part(attended, o_proj))
        x, down_part = mlp_part(x, o_sum, norm_weight, eps, gate_up, down, intermediate, fused_silu)
        return x + reduce(down_part)

    return attention_output


def all_reduce(group=None):
    """The sum over the ranks of the process group, in place."""
    import torch.distributed as dist

    def reduce(t: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
        return t

    return reduce
