"""A step's new keys and values into one layer's KV cache in one Triton kernel: each row's keys and values, clamped
to e4m3's range and rounded to it in an fp8 cache, stored at that row's cache row.

Eager torch makes the same store in six kernels a layer (a clamp, a cast and a scatter for each of keys and
values); in a decode step of Llama-2-70B that is 480 of the step's ~1,400 launches, each a few microseconds of the
GPU between kernels even inside a CUDA graph. Values round as torch rounds them: the input's value in float32,
clamped to ±448 (NaN stays NaN), then to the nearest e4m3 (a 16-bit cache: the value as it is).
"""

from __future__ import annotations

import triton
import triton.language as tl

FP8_MAX = tl.constexpr(448.0)  # a constexpr: the compiler reads no other global


@triton.jit
def _kv_write_kernel(
    K, V, KC, VC, AT, stride_k, stride_v, cache_rows, WIDTH: tl.constexpr, BLOCK: tl.constexpr, FP8: tl.constexpr
):
    row = tl.program_id(0).to(tl.int64)
    at = tl.load(AT + row).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    inside = cols < WIDTH
    k = tl.load(K + row * stride_k + cols, mask=inside, other=0.0)
    v = tl.load(V + row * stride_v + cols, mask=inside, other=0.0)
    # a row past the cache is not written (torch raises); tensor comparisons, so the interpreter masks with them too
    inside = inside & (cols * 0 + at >= 0) & (cols * 0 + at < cache_rows)
    if FP8:
        k = tl.clamp(k.to(tl.float32), -FP8_MAX, FP8_MAX, propagate_nan=tl.PropagateNan.ALL)
        v = tl.clamp(v.to(tl.float32), -FP8_MAX, FP8_MAX, propagate_nan=tl.PropagateNan.ALL)
    tl.store(KC + at * WIDTH + cols, k.to(KC.dtype.element_ty), mask=inside)
    tl.store(VC + at * WIDTH + cols, v.to(VC.dtype.element_ty), mask=inside)


def write_kv(k, v, k_cache, v_cache, at) -> None:
    """k, v [rows, kv heads, head_dim] into k_cache, v_cache [cache rows, kv heads, head_dim] at cache rows `at`
    [rows] (int32 or int64): what `cache[at] = new` stores, e4m3 saturating in an fp8 cache, in one launch. A row
    of `at` outside the cache (torch would raise, a kernel cannot) writes nothing rather than past the cache."""
    import torch

    rows = k.shape[0]
    width = k.shape[1] * k.shape[2]
    if v.shape != k.shape or k_cache.shape[1:] != k.shape[1:] or v_cache.shape != k_cache.shape:
        raise ValueError(f"keys {tuple(k.shape)}, values {tuple(v.shape)} do not fit caches {tuple(k_cache.shape)}")
    if k_cache.dtype != v_cache.dtype or at.shape != (rows,):
        raise ValueError("the two caches must share a dtype, and `at` must name one cache row a row")
    if rows and not (k[0].is_contiguous() and v[0].is_contiguous()):
        raise ValueError("each row's keys and values must be contiguous")
    if not (k_cache.is_contiguous() and v_cache.is_contiguous()):
        raise ValueError("the caches must be contiguous")
    if rows:
        _kv_write_kernel[(rows,)](
            k,
            v,
            k_cache,
            v_cache,
            at,
            k.stride(0),
            v.stride(0),
            k_cache.shape[0],
            WIDTH=width,
            BLOCK=triton.next_power_of_2(width),
            FP8=k_cache.dtype == torch.float8_e4m3fn,
            num_warps=4,
        )
