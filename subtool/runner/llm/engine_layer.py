"""The arithmetic of one Llama decoder layer as pure functions of tensors (the continuous engine's layer math).

Pure functions so that torch.compile can fuse the element-wise work around the matrix products (norms, rotary,
SiLU·up, fp8 row quantisation) once for all layers; tensor parallelism reuses them on each rank's shard.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

FP8_MAX = 448.0


def rms_norm(x, weight, eps: float):
    """Llama's RMSNorm: in float32, cast back, times the weight (as transformers computes it)."""
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def linear(x, lin: tuple):
    """x @ W.T (+ b) for lin = (W, b, W8, w_scale): in x's dtype when W8 is None, else in fp8 e4m3 with one scale
    per row of x (computed here) and one per output channel of W (torch._scaled_mm)."""
    weight, bias, weight8, _ = lin
    if weight8 is None:
        return F.linear(x, weight, bias)
    rows8, scale = quantize_rows(x.reshape(-1, x.shape[-1]))
    return scaled_product(rows8, scale, lin, x.dtype).reshape(*x.shape[:-1], weight8.shape[1])


def scaled_product(rows8, scale, lin: tuple, out_dtype):
    """e4m3 rows [M, K] with their float32 scales [M, 1] times an fp8 projection (as `quantized` returns it)."""
    _, bias, weight8, weight_scale = lin
    return torch._scaled_mm(
        rows8, weight8, scale_a=scale, scale_b=weight_scale, bias=bias, out_dtype=out_dtype, use_fast_accum=True
    )


def feed_forward_down(gu, intermediate: int, down: tuple, fused_silu: bool = False):
    """down(SiLU(gate) · up) for gu = [gate | up] [..., 2 × intermediate]. With `fused_silu` and fp8 down weights,
    the e4m3 rows come from one Triton kernel (kernels/silu_fp8.py) instead of torch's SiLU·up and row scale."""
    if not fused_silu or down[2] is None:
        return linear(F.silu(gu[..., :intermediate]) * gu[..., intermediate:], down)
    from subtool.runner.kernels.silu_fp8 import silu_mul_fp8

    rows8, scale = silu_mul_fp8(gu.reshape(-1, gu.shape[-1]), intermediate)
    return scaled_product(rows8, scale, down, gu.dtype).reshape(*gu.shape[:-1], down[2].shape[1])


def quantize_rows(rows):
    """rows [M, K] → (e4m3 [M, K], float32 scale [M, 1]): one scale per row, its largest magnitude at e4m3's."""
    scale = rows.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12) / FP8_MAX
    return (rows.float() / scale).to(torch.float8_e4m3fn), scale


def rotate(x, cos, sin):
    """Rotary embedding (rotate-half form) of x [..., D]; cos/sin hold the first half of the table's columns
    (the second half repeats it), broadcastable to x [..., D/2]."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def attention_inputs(x, norm_weight, eps: float, qkv: tuple, cos, sin, n_heads: int, n_kv: int, head_dim: int):
    """q [B, T, heads, D], k and v [B, T, kv, D] (rotary applied) from the hidden states x [B, T, H]."""
    b, t, _ = x.shape
    y = linear(rms_norm(x, norm_weight, eps), qkv)
    nq, nk = n_heads * head_dim, n_kv * head_dim
    q = y[..., :nq].view(b, t, n_heads, head_dim)
    k = y[..., nq : nq + nk].view(b, t, n_kv, head_dim)
    v = y[..., nq + nk :].view(b, t, n_kv, head_dim)
    return rotate(q, cos, sin), rotate(k, cos, sin), v


def attention_output(
    x,
    attended,
    o_proj: tuple,
    norm_weight,
    eps: float,
    gate_up: tuple,
    down: tuple,
    intermediate: int,
    fused_silu: bool = False,
):
    """The rest of the layer: output projection and residual, then RMSNorm, SiLU(gate)·up, down and residual."""
    x = x + linear(attended, o_proj)
    gu = linear(rms_norm(x, norm_weight, eps), gate_up)
    return x + feed_forward_down(gu, intermediate, down, fused_silu)


def quantized(weight, bias, fp8: bool) -> tuple:
    """A projection as `linear` takes it; with fp8, its weight in e4m3 with one scale per output channel."""
    if not fp8:
        return (weight, bias, None, None)
    w32 = weight.float()
    scale = w32.abs().amax(dim=1).clamp(min=1e-12) / FP8_MAX
    weight8 = (w32 / scale[:, None]).to(torch.float8_e4m3fn).t()
    return (None, bias, weight8, scale[None, :].contiguous())


def compile_default(device) -> bool:
    """torch.compile the layer arithmetic by default on CUDA with Triton (SUBTOOL_LLM_COMPILE=0 turns it off)."""
    if device.type != "cuda" or os.environ.get("SUBTOOL_LLM_COMPILE", "1") == "0":
        return False
    import importlib.util

    return importlib.util.find_spec("triton") is not None


def fuse(modules) -> tuple:
    """One weight (and bias) for several linear modules side by side; the modules keep views into it."""
    weight = torch.cat([m.weight.data for m in modules]).contiguous()
    has_bias = modules[0].bias is not None
    bias = torch.cat([m.bias.data for m in modules]).contiguous() if has_bias else None
    start = 0
    for m in modules:
        n = m.weight.shape[0]
        m.weight = torch.nn.Parameter(weight[start : start + n], requires_grad=False)
        if has_bias:
            m.bias = torch.nn.Parameter(bias[start : start + n], requires_grad=False)
        start += n
    return weight, bias
