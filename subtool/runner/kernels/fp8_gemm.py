"""BERT's first feed-forward product in fp8 with bias, GELU and the next product's quantization as its epilogue.

cuBLAS's fp8 product cannot apply GELU, so the bf16 result of x @ W1.T (tokens x 4096) used to go to memory,
come back for bias+GELU+row-wise quantization and go out again as e4m3: about 270 MB of traffic per layer for
a 16k-token batch, 75 of the 196 us the pair took on an H100 (the product alone: 120 us). Here the product's tile is
finished in registers (row scale x column scale, + bias, GELU's tanh form, x 1/out_scale, e4m3) and only the
e4m3 result is written. BERT-large's fp8 forward of a 16k-token batch on an H100: 14.3 ms, against 15.5 ms with
cuBLAS's product and the separate pass (bench/results/bert_gpu_h100.json).

The output has one static scale (a float, not a row-wise amax, which would need the whole row before any tile
is written); `gelu_output_bound` derives it from the weights so nothing can overflow, and e4m3's exponent
keeps 3 significant bits for every value down to 1/28,000 of the bound.
"""

from __future__ import annotations

import triton
import triton.language as tl

from subtool.runner.kernels import interpreted

# the static output scale is pure torch (fp8_scale.py: no Triton needed to compute or test it)
from subtool.runner.kernels.fp8_scale import gelu_output_bound, linear_output_bound  # noqa: F401

FP8_MAX = 448.0
# The fastest of 24 variants probed for 16k x 1024 x 4096 on an H200 (tilings, persistent or not, GELU form,
# store): persistent programs walking the tiles (flattened, so the next tile's loads overlap this one's epilogue),
# GELU through the tanh.approx instruction, and the e4m3 tile stored by TMA: 135.5 us, against 162 us for the best
# one-tile-per-program tiling with the sigmoid GELU this replaced. Those variants ran one program a multiprocessor,
# at 128 x 256 tiles and 8 warps (226 registers a thread, 181 KB of shared memory: one fits). At 128 x 128 tiles
# and 4 warps (207 registers, 233 with the epilogue below; 115 KB) two fit, and one's epilogue overlaps the other's
# products: the whole fp8 forward of a 16k-token BERT batch took 13.376, 13.456 and 13.392 ms against 13.618,
# 13.708 and 13.535 ms in three H100 runs (bench/results/bert_gpu_h100_forward_gelu_tiles*.json). Tiles arrive by
# TMA (Hopper; Triton's interpreter emulates it), so the model uses this kernel on compute capability 9.0 and later.
BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, WARPS, STAGES, PER_SM = 128, 128, 128, 8, 4, 3, 2


@triton.jit
def _tanh_approx(x):
    # one MUFU instruction (max relative error ~2^-11, far below e4m3's 2^-4 step) instead of exp and a division
    return tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def _grouped_tile(tile, tiles_m, tiles_n, GROUP_M: tl.constexpr):
    per_group = GROUP_M * tiles_n  # neighbouring tiles share rows of A in L2
    group = tile // per_group
    first_m = group * GROUP_M
    group_rows = tl.minimum(tiles_m - first_m, GROUP_M)
    return first_m + (tile % per_group) % group_rows, (tile % per_group) // group_rows


@triton.jit
def _gelu_tile(
    tile,
    a_desc,
    b_desc,
    c_desc,
    A_SCALE,
    B_SCALE,
    BIAS,
    M,
    N,
    inv_out_scale,
    K: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    TANH_ASM: tl.constexpr,
):
    pid_m, pid_n = _grouped_tile(tile, tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N), GROUP_M)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k in range(0, K, BLOCK_K):  # tiles by TMA; rows past M read as zeros
        acc = tl.dot(a_desc.load([pid_m * BLOCK_M, k]), b_desc.load([pid_n * BLOCK_N, k]).T, acc)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    a_scale = tl.load(A_SCALE + rm, mask=rm < M, other=0.0)
    b_scale = tl.load(B_SCALE + rn, mask=rn < N, other=0.0)
    bias = tl.load(BIAS + rn, mask=rn < N, other=0.0).to(tl.float32)
    # Written for the fewest instructions a value (sm_90: 7 multiplies and fused multiply-adds and one MUFU, from
    # 11 and one; the tile's epilogue 1,565 instructions a thread from 2,076): a multiply by the row's scale and an
    # FMA for the column's and the bias; GELU's tanh argument as h * (c0 + c1 * h²), three; the output as
    # s + s * tanh(..) with s = h / 2 / out_scale, two. No clamp: the e4m3 conversion Triton emits
    # (cvt.rn.satfinite) saturates to ±448 by itself, and a NaN stays a NaN where a clamp made it -448 (the
    # interpreter's branch keeps one).
    h = (acc * a_scale[:, None]) * b_scale[None, :] + bias[None, :]
    arg = h * (0.7978845608028654 + 0.035677408136300125 * (h * h))  # √(2/π) (h + 0.044715 h³)
    if TANH_ASM:
        half = h * (0.5 * inv_out_scale)
        g = half + half * _tanh_approx(arg)
    else:  # the interpreter: 0.5 (1 + tanh(a)) = sigmoid(2a); its e4m3 conversion does not saturate (1000 → 256)
        g = tl.minimum(tl.maximum(h * tl.sigmoid(2.0 * arg) * inv_out_scale, -448.0), 448.0)
    c_desc.store([pid_m * BLOCK_M, pid_n * BLOCK_N], g.to(tl.float8e4nv))  # TMA drops rows past M


@triton.jit
def _fp8_gelu_gemm_kernel(
    a_desc,
    b_desc,
    c_desc,
    A_SCALE,
    B_SCALE,
    BIAS,
    M,
    N,
    inv_out_scale,
    K: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    PROGRAMS: tl.constexpr,
    COMPILED: tl.constexpr,
):
    # compiled: persistent programs (the next tile's loads overlap this one's epilogue) and PTX's tanh. Triton's
    # interpreter runs no PTX and cannot loop from a program id, so there each program does one tile.
    if COMPILED:
        for tile in tl.range(tl.program_id(0), tl.cdiv(M, BLOCK_M) * tl.cdiv(N, BLOCK_N), PROGRAMS, flatten=True):
            _gelu_tile(
                tile,
                a_desc,
                b_desc,
                c_desc,
                A_SCALE,
                B_SCALE,
                BIAS,
                M,
                N,
                inv_out_scale,
                K,
                BLOCK_M,
                BLOCK_N,
                BLOCK_K,
                GROUP_M,
                True,
            )
    else:
        _gelu_tile(
            tl.program_id(0),
            a_desc,
            b_desc,
            c_desc,
            A_SCALE,
            B_SCALE,
            BIAS,
            M,
            N,
            inv_out_scale,
            K,
            BLOCK_M,
            BLOCK_N,
            BLOCK_K,
            GROUP_M,
            False,
        )


def fp8_gelu_linear(
    xq,
    x_scale,
    wq,
    w_scale,
    bias,
    out_scale: float,
    block_m: int = BLOCK_M,
    block_n: int = BLOCK_N,
    block_k: int | None = None,
    group_m: int = GROUP_M,
    num_warps: int = WARPS,
    num_stages: int = STAGES,
    per_sm: int = PER_SM,
):
    """e4m3(GELU(x @ W.T + bias) / out_scale) from e4m3 x [M, K] (float32 row scales [M, 1]) and e4m3 W [N, K]
    (float32 column scales [1, N]); returns the e4m3 [M, N] result. K must be a multiple of 64. Compiled, it runs
    `per_sm` persistent programs a multiprocessor (more than one only pays where that many fit: their registers
    and shared memory)."""
    import torch

    m, k = xq.shape
    n, k2 = wq.shape
    if block_k is None:
        block_k = BLOCK_K if k % BLOCK_K == 0 else 64
    if k != k2 or k % block_k:
        raise ValueError(
            f"fp8_gelu_linear: K must match and be a multiple of {block_k}: x {tuple(xq.shape)}, W {tuple(wq.shape)}"
        )
    from triton.tools.tensor_descriptor import TensorDescriptor

    out = torch.empty((m, n), device=xq.device, dtype=torch.float8_e4m3fn)
    if m:
        compiled = not interpreted()
        tiles = triton.cdiv(m, block_m) * triton.cdiv(n, block_n)
        programs = tiles
        if compiled:
            sms = torch.cuda.get_device_properties(xq.device).multi_processor_count
            programs = min(tiles, max(1, per_sm) * sms)
        _fp8_gelu_gemm_kernel[(programs,)](
            TensorDescriptor.from_tensor(xq, [block_m, block_k]),
            TensorDescriptor.from_tensor(wq, [block_n, block_k]),
            TensorDescriptor.from_tensor(out, [block_m, block_n]),
            x_scale,
            w_scale,
            bias,
            m,
            n,
            1.0 / out_scale,
            K=k,
            BLOCK_M=block_m,
            BLOCK_N=block_n,
            BLOCK_K=block_k,
            GROUP_M=group_m,
            PROGRAMS=programs,
            COMPILED=compiled,
            num_warps=num_warps,
            num_stages=num_stages,
        )
    return out
