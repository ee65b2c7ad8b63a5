"""BERT question answering written out for inference over packed tokens, loading a Hugging Face checkpoint.

Samples are packed back to back (no padding to 384): token i of the batch belongs to the sequence that
`cu_seqlens` puts it in. Every matrix product then runs over the real tokens only; attention runs per sequence.
At load the query/key/value projections are concatenated into one weight, so each layer makes four matrix
products: QKV, attention output, and the two feed-forward ones. On the fast path the bias+GELU is the matrix
product's epilogue and residual+LayerNorm is one Triton kernel. With fp8 the LayerNorm kernel also quantizes its
output row by row for the next product, on Hopper the first feed-forward product is one Triton kernel that
applies bias and GELU and writes e4m3 at a static, weight-derived scale (kernels/fp8_gemm.py), and the attention
kernel writes e4m3 for the output projection at a static bound of the value projection. fp16 keeps the residual
stream in float32 (the accuracy-first path; see `residual_fp32`).

The forward writes [sequences * 384 + 1, 2] float32 start/end logits: row s*384 + p is position p of sequence s
(zeros beyond its length, as the reference pads), the last row collects the padding tokens. With the Triton
kernels the last LayerNorm computes them (the answer head's two dot products a token) and writes each to its row,
and the first gathers the three embedding rows itself.

Attention over the packed tokens is subtool's Triton kernel (kernels/packed_attention.py: 64-token tiles, so
short sequences waste less than flash's 128) where Triton is present, else flash attention's varlen kernel, else
(CPU, fp32) per-sequence padding to the batch's longest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.runner.bert.squad import MAX_SEQ_LENGTH
from subtool.runner.kernels import head_dim_fits, triton_available

PRECISIONS = ("fp32", "fp16", "bf16", "fp8")
FP8_OPS = ("qkv", "o", "ff1", "ff2")
FP8_MAX = 448.0


@dataclass(frozen=True)
class BertShape:
    hidden: int
    heads: int
    intermediate: int
    layers: int
    eps: float
    max_positions: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def read_shape(model_path: Path) -> BertShape:
    from subtool.runner.bert.checkpoint import REFERENCE_CONFIG, check_config_values, checkpoint_format, read_config

    model_path = Path(model_path)
    path = model_path / ("config.json" if checkpoint_format(model_path) == "hf" else REFERENCE_CONFIG)
    cfg = read_config(path)  # bounded, strict JSON (check_checkpoint has refused bad values already)
    check_config_values(cfg, path)
    act = cfg.get("hidden_act", "gelu")
    if act not in ("gelu", "gelu_new", "gelu_python"):
        raise SubtoolError(
            f"hidden_act {act!r}: the torch-cuda backend implements BERT's GELU only",
            path=path,
            rule="model.architecture",
            hint="use --backend torch-cpu for this checkpoint",
        )
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise SubtoolError(
            "the torch-cuda backend implements absolute position embeddings only",
            path=path,
            rule="model.architecture",
            hint="use --backend torch-cpu for this checkpoint",
        )
    shape = BertShape(
        hidden=int(cfg["hidden_size"]),
        heads=int(cfg["num_attention_heads"]),
        intermediate=int(cfg["intermediate_size"]),
        layers=int(cfg["num_hidden_layers"]),
        eps=float(cfg.get("layer_norm_eps", 1e-12)),
        max_positions=int(cfg.get("max_position_embeddings", 512)),
    )
    if shape.hidden % shape.heads:
        raise SubtoolError("hidden_size is not a multiple of num_attention_heads", path=path, rule="model.config")
    if shape.max_positions < MAX_SEQ_LENGTH:
        raise SubtoolError(
            f"max_position_embeddings {shape.max_positions} < {MAX_SEQ_LENGTH}", path=path, rule="model.config"
        )
    return shape


def load_state_dict(model_path: Path, layers: int | None = None) -> dict:
    """The checkpoint's tensors, refused by name when unreadable, not finite, or (given `layers`) holding
    encoder layers beyond the config's num_hidden_layers."""
    import torch

    from subtool.runner.bert.checkpoint import REFERENCE_WEIGHTS, check_finite, check_unused, checkpoint_format

    model_path = Path(model_path)
    st = model_path / "model.safetensors"
    reference = checkpoint_format(model_path) == "mlperf-pytorch"
    weights = model_path / REFERENCE_WEIGHTS if reference else st if st.exists() else model_path / "pytorch_model.bin"
    try:
        if weights == st:
            from safetensors.torch import load_file

            state = load_file(str(st))
        else:
            state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a damaged or foreign file
        raise SubtoolError(
            f"cannot read the weights: {exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}",
            path=weights,
            rule="model.load",
        ) from None
    if reference and isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise SubtoolError(f"holds a {type(state).__name__}, not a state dict", path=weights, rule="model.weights")
    if layers is not None:
        check_unused([k for k in state if _layer_index(k) >= layers], weights)
    check_finite(state.items(), weights)
    return state


def _layer_index(key: str) -> int:
    """The encoder layer a weight belongs to (-1: none)."""
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if part == "layer" and i and parts[i - 1] == "encoder" and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return -1


class _Weights:
    """Looks names up with or without the `bert.` prefix and under either LayerNorm naming."""

    def __init__(self, sd: dict, model_path: Path):
        self.sd = sd
        self.path = model_path
        self.prefix = "bert." if "bert.embeddings.word_embeddings.weight" in sd else ""

    def get(self, name: str, encoder: bool = True):
        key = (self.prefix if encoder else "") + name
        alternatives = [key]
        if key.endswith("LayerNorm.weight"):
            alternatives.append(key[: -len("weight")] + "gamma")
        if key.endswith("LayerNorm.bias"):
            alternatives.append(key[: -len("bias")] + "beta")
        for k in alternatives:
            if k in self.sd:
                return self.sd[k]
        raise SubtoolError(
            f"the checkpoint has no tensor {key}",
            path=self.path,
            rule="model.weights",
            hint="the torch-cuda backend needs a BertForQuestionAnswering checkpoint",
        )


def flash_varlen_available() -> bool:
    import torch

    return torch.cuda.is_available() and hasattr(torch.ops.aten, "_flash_attention_forward")


class PackedBert:
    """The model's weights on one device in the run's precision, and the packed forward over them."""

    def __init__(
        self,
        model_path: Path,
        device: str = "cuda",
        precision: str = "bf16",
        kernels: str = "auto",
        fused_gelu: bool | None = None,
        residual_fp32: bool | None = None,
        sublayer_out_fp32: bool | None = None,
    ):
        import torch

        if precision not in PRECISIONS:
            raise SubtoolError(
                f"precision {precision!r} is not supported; choose one of {', '.join(PRECISIONS)}", rule="run.precision"
            )
        self.torch = torch
        self.device = torch.device(device)
        self.precision = precision
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp8": torch.bfloat16}[
            precision
        ]
        self.shape = read_shape(model_path)
        self._choose_kernels(kernels)
        self._choose_fp8()
        self._choose_rounding(fused_gelu, residual_fp32, sublayer_out_fp32)
        self.scale = 1.0 / math.sqrt(self.shape.head_dim)
        w = _Weights(load_state_dict(model_path, self.shape.layers), Path(model_path))
        self._load(w)

    # ------------------------------------------------------------------------------------------- choices
    def _choose_kernels(self, kernels: str) -> None:
        """Triton or torch for the fused passes, and which attention: subtool's Triton kernel, flash's varlen
        kernel or per-sequence padding."""
        cuda = self.device.type == "cuda"
        precision = self.precision
        if kernels == "auto":
            kernels = "triton" if cuda and precision != "fp32" and triton_available() else "torch"
        # fp8 off the GPU: every e4m3 quantization the GPU path makes, emulated by float8_e4m3fn round trips in
        # torch (calibration, fallback and the accuracy check are then tested on any machine; no speed)
        self.fp8_emulated = precision == "fp8" and not cuda
        if precision == "fp8" and kernels != "triton" and not self.fp8_emulated:
            raise SubtoolError(
                "fp8 needs a CUDA GPU with Triton (its quantizing kernels are Triton kernels)",
                rule="run.precision",
                hint="use --precision bf16",
            )
        self.kernels = kernels
        self.flash = cuda and precision != "fp32" and flash_varlen_available()
        # the Triton attention kernel's tiles and launch (packed_attention's block_m, block_n, num_warps,
        # num_stages; empty: its defaults), for bench/bert_gpu.py's variants
        self.attention_tiles: dict = {}
        # the fused fp8 GELU product's tiles and launch (fp8_gelu_linear's block_m, block_n, block_k, num_warps,
        # num_stages; empty: its defaults), for the same bench
        self.gelu_gemm_tiles: dict = {}
        # the question-answering head in the last LayerNorm kernel (False: a float32 product and a scatter)
        self.fused_head = True
        # the embeddings' three gathers in the first LayerNorm kernel (False: two gathers and an add in torch)
        self.fused_embedding = True
        if kernels == "triton" and head_dim_fits(self.shape.head_dim):
            self.attention = "triton"
        else:
            self.attention = "flash" if self.flash else "padded"

    def _choose_fp8(self) -> None:
        """Which products run in fp8 and how their activations are scaled (all off below fp8)."""
        fp8 = self.precision == "fp8"
        cuda = self.device.type == "cuda"
        self.fp8_fast_accum = True
        # fp8: the first feed-forward product finishes with bias, GELU and e4m3 in its own epilogue (a Triton
        # kernel fed by TMA, so Hopper and later; Ada keeps cuBLAS's product and a separate quantizing pass)
        self.fp8_fused_ffn = self.fp8_emulated or (
            fp8
            and cuda
            and self.shape.hidden % 64 == 0
            and self.torch.cuda.get_device_capability(self.device) >= (9, 0)
        )
        # fp8: the attention kernel writes e4m3 for the output projection at a static, weight-derived scale
        self.fp8_attention_out = fp8
        # which of each layer's products run in fp8 (the others in bf16): per layer, so that a layer that breaks
        # the accuracy criterion can fall back to bf16 alone (bert/fp8_plan.py)
        self.fp8_ops = frozenset(FP8_OPS if fp8 else ())
        self.layer_ops = [self.fp8_ops] * self.shape.layers
        # where the static activation scales came from: the weights' bound, or calibration on sample data
        self.scale_source = "weight bound" if fp8 else None
        # observer(layer, op, tensor) sees each product's input (calibration); None on the fast path
        self.observer = None
        self._real_rows: int | None = None  # the batch's real tokens, while an observer looks (_observe)

    def _choose_rounding(self, fused_gelu, residual_fp32, sublayer_out_fp32) -> None:
        """Where the 16-bit paths round: GELU in the product's epilogue, and the residual stream's dtype (None:
        the precision's default)."""
        cuda = self.device.type == "cuda"
        # cuBLASLt's bias+GELU epilogue (GELU's tanh form, within bf16 rounding); fp8's bf16 layers too (8 % faster)
        self.fused_gelu = (cuda and self.precision in ("bf16", "fp16", "fp8")) if fused_gelu is None else fused_gelu
        # fp16 is the accuracy-first precision: the residual stream between LayerNorms stays float32, and the
        # two products that feed it (attention output, second feed-forward) write float32, their bias added by
        # the LayerNorm kernel. Fewer roundings on the path every layer adds to: answers agree with fp32 at
        # F1 99.64 instead of 99.25 (99.58 with the float32 residual alone), for 9 % more forward time on an
        # H200: 21.5 ms against 19.8 for a 16k-token batch (bench/results/gpu_check_bert.json, torch-cuda-fp16:
        # forward_only and forward_only_variants.residual_stream_in_compute_dtype). bf16 is the fastest 16-bit
        # path and keeps everything in bf16 (F1 94.8; 97.2 with the float32 residual).
        exact = cuda and self.kernels == "triton" and self.precision == "fp16"
        self.residual_fp32 = exact if residual_fp32 is None else residual_fp32
        self.sublayer_out_fp32 = cuda and (exact if sublayer_out_fp32 is None else sublayer_out_fp32)

    # ------------------------------------------------------------------------------------------- weights
    def _to(self, t, dtype=None):
        return t.to(device=self.device, dtype=dtype or self.dtype).contiguous()

    def _load(self, w: _Weights) -> None:
        torch = self.torch
        f32 = torch.float32
        self.word = self._to(w.get("embeddings.word_embeddings.weight"))
        self.pos = self._to(w.get("embeddings.position_embeddings.weight"))
        self.type = self._to(w.get("embeddings.token_type_embeddings.weight"))
        self.emb_ln = (
            self._to(w.get("embeddings.LayerNorm.weight"), f32),
            self._to(w.get("embeddings.LayerNorm.bias"), f32),
        )
        self.layers = []
        for i in range(self.shape.layers):
            p = f"encoder.layer.{i}."
            qkv_w = torch.cat([w.get(p + f"attention.self.{n}.weight") for n in ("query", "key", "value")])
            qkv_b = torch.cat([w.get(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")])
            layer = {
                "qkv": self._linear(qkv_w, qkv_b),
                "o": self._linear(w.get(p + "attention.output.dense.weight"), w.get(p + "attention.output.dense.bias")),
                "ln1": (
                    self._to(w.get(p + "attention.output.LayerNorm.weight"), f32),
                    self._to(w.get(p + "attention.output.LayerNorm.bias"), f32),
                ),
                "ff1": self._linear(w.get(p + "intermediate.dense.weight"), w.get(p + "intermediate.dense.bias")),
                "ff2": self._linear(w.get(p + "output.dense.weight"), w.get(p + "output.dense.bias")),
                "ln2": (
                    self._to(w.get(p + "output.LayerNorm.weight"), f32),
                    self._to(w.get(p + "output.LayerNorm.bias"), f32),
                ),
            }
            if self.precision == "fp8":
                self._static_ffn_scale(
                    layer, w.get(p + "intermediate.dense.weight"), w.get(p + "intermediate.dense.bias")
                )
                self._static_attention_scale(
                    layer,
                    w.get(p + "attention.self.value.weight"),
                    w.get(p + "attention.self.value.bias"),
                    self.layers[-1]["ln2"] if self.layers else self.emb_ln,
                )
            self.layers.append(layer)
        self.qa_w = self._to(w.get("qa_outputs.weight", encoder=False), f32)
        self.qa_b = self._to(w.get("qa_outputs.bias", encoder=False), f32)

    def _linear(self, weight, bias) -> dict:
        torch = self.torch
        lin = {"w": self._to(weight), "b": self._to(bias)}  # fp8 keeps these for the products it leaves bf16
        if self.precision == "fp8":
            w32 = weight.to(self.device, torch.float32)
            scale = w32.abs().amax(dim=1).clamp(min=1e-12) / FP8_MAX  # one scale per output channel
            lin["wq"] = (w32 / scale[:, None]).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).contiguous()
            lin["ws"] = scale[None, :].contiguous()
        return lin

    def _static_ffn_scale(self, layer: dict, ff1_weight, ff1_bias) -> None:
        """The fused fp8 feed-forward writes GELU's output at one static scale, a bound of what it can hold;
        that scale moves into the second product's weight scales, whose input rows then have scale 1."""
        from subtool.runner.kernels.fp8_scale import gelu_output_bound

        dev = self.device
        scale = gelu_output_bound(ff1_weight.to(dev), ff1_bias.to(dev), *layer["ln1"]) / FP8_MAX
        layer["ff1"]["out_scale"] = scale
        layer["ff2"]["ws_unit_rows"] = (layer["ff2"]["ws"] * scale).contiguous()

    def _static_attention_scale(self, layer: dict, v_weight, v_bias, ln_in) -> None:
        """Attention's output is a convex mix of value rows, so a bound of the value projection over what the
        LayerNorm before it can output bounds it too: the attention kernel writes e4m3 at that static scale and
        the output projection's weight scales take it over, its input rows at scale 1."""
        from subtool.runner.kernels.fp8_scale import linear_output_bound

        dev = self.device
        scale = linear_output_bound(v_weight.to(dev), v_bias.to(dev), *ln_in) / FP8_MAX
        layer["o"]["in_scale"] = scale
        layer["o"]["ws_unit_rows"] = (layer["o"]["ws"] * scale).contiguous()

    # ------------------------------------------------------------------------------------------ building blocks
    def _rowwise(self, x):
        """(e4m3 rows, float32 row scales [rows, 1]): each row at its own amax (the GPU's rowwise_fp8 and the
        LayerNorm kernel's quantizing output)."""
        if not self.fp8_emulated:
            from subtool.runner.kernels.fused_norm import rowwise_fp8

            return rowwise_fp8(x)
        torch = self.torch
        x = x.float()
        s = x.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / FP8_MAX
        return (x / s).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn), s

    def _static_e4m3(self, x, scale: float):
        """x at one static scale, clipped to e4m3's range (what the fused GPU kernels write)."""
        return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(self.torch.float8_e4m3fn)

    def set_static_scales(self, scales: dict[tuple[int, str], float], source: str) -> None:
        """Replace the static activation scales ((layer, "o") → the attention output's, (layer, "ff2") → GELU's
        output's; amax / 448) by calibrated ones; the weight scales that take them over follow. A scale that is
        not a positive finite number is refused before any is set."""
        bad = {key: scale for key, scale in scales.items() if not (math.isfinite(scale) and scale > 0)}
        if bad:
            raise ValueError(f"static activation scales must be positive and finite: {bad}")
        for (i, op), scale in scales.items():
            lin = self.layers[i][op]
            if op == "o":
                lin["in_scale"] = float(scale)
            elif op == "ff2":
                self.layers[i]["ff1"]["out_scale"] = float(scale)
            else:
                raise ValueError(f"no static activation scale for {op!r}")
            lin["ws_unit_rows"] = (lin["ws"] * float(scale)).contiguous()
        self.scale_source = source

    def static_scales(self) -> dict[tuple[int, str], float]:
        return {
            **{(i, "o"): float(layer["o"]["in_scale"]) for i, layer in enumerate(self.layers)},
            **{(i, "ff2"): float(layer["ff1"]["out_scale"]) for i, layer in enumerate(self.layers)},
        }

    def _add_ln(self, x, res, ln, quantize: bool = False, x_bias=None, head=None):
        """LayerNorm(x + x_bias + res): (the next products' input in the compute dtype, with fp8 its row-quantized
        copy and row scales, the residual for the next LayerNorm: float32 with `residual_fp32`, else the input).
        `head` (Triton kernels only): the question-answering logits go straight to their output rows instead."""
        if self.kernels == "triton":
            from subtool.runner.kernels.fused_norm import add_layernorm

            y, q, s, y32 = add_layernorm(
                x,
                res,
                ln[0],
                ln[1],
                self.shape.eps,
                quantize=quantize,
                x_bias=x_bias,
                dtype=self.dtype,
                keep_fp32=self.residual_fp32,
                head=head,
            )
            return y, q, s, (y if y32 is None else y32)
        y = x.float()
        if x_bias is not None:
            y = y + x_bias.float()
        if res is not None:
            y = y + res.float()
        y = self.torch.nn.functional.layer_norm(y, (y.shape[-1],), ln[0], ln[1], self.shape.eps)
        low = y.to(self.dtype)
        q, s = self._rowwise(y) if quantize and self.fp8_emulated else (None, None)
        return low, q, s, (y if self.residual_fp32 else low)

    def _sublayer_out(self, x, lin: dict, xq=None, xs=None, w_scale=None):
        """A product whose result goes to residual+LayerNorm: (result, the bias still to add or None). In float32
        the bias moves to the LayerNorm kernel (a bf16/fp16 product with a float32 output takes no bias); on
        the other paths it stays in the product's epilogue: moving it measured the same (±1 %, H100 and H200)."""
        torch = self.torch
        if xq is None and self.sublayer_out_fp32:
            return torch.mm(x, lin["w"].t(), out_dtype=torch.float32), lin["b"]
        return self._mm(x, lin, xq, xs, w_scale=w_scale), None

    def _mm(self, x, lin: dict, xq=None, xs=None, bias: bool = True, w_scale=None):
        """x @ W.T + b: in fp8 (from x's quantized rows) when they are given, else in the compute dtype."""
        torch = self.torch
        if xq is not None and self.fp8_emulated:
            w_scale = lin["ws"] if w_scale is None else w_scale
            y = (xq.float() * xs) @ (lin["wq"].float() * w_scale.t()).t()
            return (y + lin["b"].float() if bias else y).to(torch.bfloat16)
        if xq is not None:
            w_scale = lin["ws"] if w_scale is None else w_scale
            return torch._scaled_mm(
                xq,
                lin["wq"].t(),
                scale_a=xs,
                scale_b=w_scale,
                bias=lin["b"] if bias else None,
                out_dtype=torch.bfloat16,
                use_fast_accum=self.fp8_fast_accum,
            )
        return torch.nn.functional.linear(x, lin["w"], lin["b"] if bias else None)

    def _ffn_in(self, x, lin: dict, xq=None, xs=None, quantize_out: bool = False, unit_rows=None):
        """The first feed-forward product and its GELU: (bf16 or None, e4m3 rows or None, row scales or None).
        With `unit_rows`: one Triton product from e4m3 x, its output at the layer's static scale (rows at 1)."""
        torch = self.torch
        if unit_rows is not None and self.fp8_emulated:
            h = self._mm(None, lin, xq, xs, bias=False).float() + lin["b"].float()
            g = torch.nn.functional.gelu(h, approximate="tanh")
            return None, self._static_e4m3(g, lin["out_scale"]), unit_rows
        if unit_rows is not None:
            from subtool.runner.kernels.fp8_gemm import fp8_gelu_linear

            out = fp8_gelu_linear(xq, xs, lin["wq"], lin["ws"], lin["b"], lin["out_scale"], **self.gelu_gemm_tiles)
            return None, out, unit_rows
        if quantize_out and self.fp8_emulated:
            h = torch.nn.functional.gelu(self._mm(x, lin, xq, xs, bias=False).float() + lin["b"].float())
            return None, *self._rowwise(h)
        if quantize_out:
            from subtool.runner.kernels.fused_norm import rowwise_fp8

            h = self._mm(x, lin, xq, xs, bias=False)
            return None, *rowwise_fp8(h, bias=lin["b"], gelu=True)
        if xq is not None:
            return torch.nn.functional.gelu(self._mm(x, lin, xq, xs)), None, None
        if self.fused_gelu:
            return torch._addmm_activation(lin["b"], x, lin["w"].t(), use_gelu=True), None, None
        h = torch.nn.functional.linear(x, lin["w"], lin["b"])
        return torch.nn.functional.gelu(h), None, None

    def _attention(self, qkv, cu_seqlens, rows, sequences, out_scale: float | None = None):
        """Attention per packed sequence; with `out_scale` (Triton kernel only) its e4m3 output at that scale."""
        torch = self.torch
        t = qkv.shape[0]
        h, d = self.shape.heads, self.shape.head_dim
        qkv = qkv.view(t, 3, h, d)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        if self.attention == "triton":
            from subtool.runner.kernels.packed_attention import packed_attention

            return packed_attention(qkv, cu_seqlens, MAX_SEQ_LENGTH, self.scale, out_scale, **self.attention_tiles)
        if out_scale is not None and self.fp8_emulated:
            return self._static_e4m3(self._padded_attention(q, k, v, cu_seqlens, rows, sequences), out_scale)
        if self.attention == "flash":
            out = torch.ops.aten._flash_attention_forward(
                q, k, v, cu_seqlens, cu_seqlens, MAX_SEQ_LENGTH, MAX_SEQ_LENGTH, 0.0, False, False, scale=self.scale
            )[0]
            return out.reshape(t, h * d)
        return self._padded_attention(q, k, v, cu_seqlens, rows, sequences)

    def _padded_attention(self, q, k, v, cu_seqlens, rows, sequences):
        """Attention per sequence via padding to the longest one (CPU and fp32: no varlen kernel there)."""
        torch = self.torch
        if sequences is None:
            raise ValueError("the padded attention path needs the host-side sequence count")
        t, h, d = q.shape
        lengths = (cu_seqlens[1 : sequences + 1] - cu_seqlens[:sequences]).long()
        longest = int(lengths.max()) if sequences else 1
        rows = rows.long()
        real = rows < sequences * MAX_SEQ_LENGTH
        slot = (rows // MAX_SEQ_LENGTH) * longest + rows % MAX_SEQ_LENGTH
        slot = torch.where(real, slot, torch.full_like(slot, sequences * longest))  # padding → a dump slot

        def pad(x):
            buf = x.new_zeros(sequences * longest + 1, h, d)
            buf.index_copy_(0, slot, x)
            return buf[:-1].view(sequences, longest, h, d).transpose(1, 2)

        keep = torch.arange(longest, device=q.device)[None, :] < lengths[:, None]
        out = torch.nn.functional.scaled_dot_product_attention(
            pad(q), pad(k), pad(v), attn_mask=keep[:, None, None, :], scale=self.scale
        )
        out = out.transpose(1, 2).reshape(sequences * longest, h * d)
        out = torch.cat([out, out.new_zeros(1, h * d)])
        return out[slot]

    # ------------------------------------------------------------------------------------------- the forward
    def _observe(self, layer: int, op: str, t) -> None:
        """Calibration's observer sees a product's input for the batch's real tokens only: the padding rows after
        them come from rows the attention kernel never writes (uninitialized memory, NaN possible)."""
        if self.observer is not None:
            self.observer(layer, op, t[: self._real_rows])

    def _layer(self, i, layer, ops, next_qkv, x, xq, xs, r, unit_rows, cu_seqlens, rows, sequences, head=None):
        """One encoder layer with its own set of fp8 products; the LayerNorms quantize their output for the next
        product only where that product runs in fp8."""
        self._observe(i, "qkv", x)
        qkv = self._mm(x, layer["qkv"], *((xq, xs) if "qkv" in ops else (None, None)))
        if "o" in ops and (self.attention == "triton" or self.fp8_emulated) and self.fp8_attention_out:
            aq = self._attention(qkv, cu_seqlens, rows, sequences, out_scale=layer["o"]["in_scale"])
            o, ob = self._sublayer_out(None, layer["o"], aq, unit_rows, w_scale=layer["o"]["ws_unit_rows"])
        elif "o" in ops:
            o, ob = self._sublayer_out(
                None, layer["o"], *self._rowwise(self._attention(qkv, cu_seqlens, rows, sequences))
            )
        else:
            a = self._attention(qkv, cu_seqlens, rows, sequences)
            self._observe(i, "o", a)
            o, ob = self._sublayer_out(a, layer["o"])
        x, xq, xs, r = self._add_ln(o, r, layer["ln1"], "ff1" in ops, x_bias=ob)
        self._observe(i, "ff1", x)
        ff1_in = (xq, xs) if "ff1" in ops else (None, None)
        fused = "ff2" in ops and ff1_in[0] is not None and self.fp8_fused_ffn
        h, hq, hs = self._ffn_in(
            x, layer["ff1"], *ff1_in, quantize_out="ff2" in ops, unit_rows=unit_rows if fused else None
        )
        if h is not None:
            self._observe(i, "ff2", h)
        f, fb = self._sublayer_out(h, layer["ff2"], hq, hs, w_scale=layer["ff2"]["ws_unit_rows"] if fused else None)
        return self._add_ln(f, r, layer["ln2"], next_qkv, x_bias=fb, head=head)

    def _embed(self, input_ids, segment_ids, position_ids, quantize: bool):
        """The embedding LayerNorm's results (as _add_ln's): with the Triton kernels one kernel gathers the three
        rows and normalizes their float32 sum; else the word and position rows are added in the weights' dtype."""
        torch = self.torch
        if self.kernels == "triton" and self.fused_embedding:
            from subtool.runner.kernels.fused_norm import embed_layernorm

            y, q, s, y32 = embed_layernorm(
                input_ids, position_ids, segment_ids, self.word, self.pos, self.type, *self.emb_ln, self.shape.eps,
                quantize=quantize, dtype=self.dtype, keep_fp32=self.residual_fp32,
            )  # fmt: skip
            return y, q, s, (y if y32 is None else y32)
        emb = torch.nn.functional.embedding(input_ids, self.word) + torch.nn.functional.embedding(
            position_ids, self.pos
        )
        return self._add_ln(emb, torch.nn.functional.embedding(segment_ids, self.type), self.emb_ln, quantize)

    def forward(self, input_ids, segment_ids, position_ids, rows, cu_seqlens, out, sequences: int | None = None):
        """Write the start/end logits of one packed batch into `out` ([>= rows.max()+1, 2] float32)."""
        torch = self.torch
        first = "qkv" in self.layer_ops[0] if self.layer_ops else False
        self._real_rows = int(cu_seqlens[-1]) if self.observer is not None else None  # real tokens come first
        x, xq, xs, r = self._embed(input_ids, segment_ids, position_ids, first)
        # the row scales of inputs written at a static scale (folded into the weight scales)
        unit_rows = torch.ones((x.shape[0], 1), device=x.device, dtype=torch.float32) if self.fp8_ops else None
        out.zero_()
        # the Triton LayerNorm kernel writes the last layer's logits to their rows itself (no float32 copy of the
        # residual stream, no product of two columns, no scatter)
        head = (self.qa_w, self.qa_b, rows, out) if self.kernels == "triton" and self.fused_head else None
        for i, layer in enumerate(self.layers):
            ops = self.layer_ops[i]
            next_qkv = i + 1 < len(self.layers) and "qkv" in self.layer_ops[i + 1]
            last = head if i + 1 == len(self.layers) else None
            x, xq, xs, r = self._layer(
                i, layer, ops, next_qkv, x, xq, xs, r, unit_rows, cu_seqlens, rows, sequences, head=last
            )
        if head is None or not self.layers:
            out.index_copy_(0, rows.long(), torch.nn.functional.linear(r.float(), self.qa_w, self.qa_b))
        return out
