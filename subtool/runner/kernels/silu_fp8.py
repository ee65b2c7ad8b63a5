"""SiLU(gate) · up, quantized to e4m3 with one scale per row, in one Triton kernel: the input of a Llama
feed-forward's fp8 down projection, made from the gate/up product [rows, 2 × intermediate] without a bf16 copy.

torch.compile makes the same values in two kernels, each reading the whole gate/up product: a reduction for the
row's largest magnitude, then the element-wise pass that writes e4m3 (in a 16k-token prefill chunk of Llama-2-70B
on an H200, 80 + 58 ms of 2,009: bench/results/llm70b_gpu_paged512_4096samples_compact.json). Here one program
owns one row. A row that fits one block is read once and kept in registers; a wider one is read twice in blocks,
the second time from L2 while its program is the only reader. Values round as eager torch rounds them: SiLU's
output and the product each to the input's dtype, then the division by the row's scale in float32.
"""

from __future__ import annotations

import triton
import triton.language as tl

FP8_MAX = 448.0
ONE_PASS_LIMIT = 32768  # the widest row kept whole in registers (Llama-2-70B's 28,672 columns at 16 warps)
BLOCK_LOOPED = 4096


@triton.jit
def _product(gate_row, up_row, cols, inside):
    """SiLU(gate) · up at `cols` in float32, rounded to the input's dtype at each step as eager torch rounds."""
    g = tl.load(gate_row + cols, mask=inside, other=0.0)
    u = tl.load(up_row + cols, mask=inside, other=0.0)
    g32 = g.to(tl.float32)
    silu = (g32 / (1.0 + tl.exp(-g32))).to(g.dtype)
    return (silu.to(tl.float32) * u.to(tl.float32)).to(g.dtype).to(tl.float32)


@triton.jit
def _silu_mul_fp8_kernel(GU, Q, S, stride_gu, stride_q, n_cols, BLOCK: tl.constexpr, ONE_PASS: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    gate_row = GU + row * stride_gu
    up_row = gate_row + n_cols
    q_row = Q + row * stride_q
    if ONE_PASS:
        cols = tl.arange(0, BLOCK)
        inside = cols < n_cols
        h = _product(gate_row, up_row, cols, inside)
        scale = tl.maximum(tl.max(tl.abs(h), axis=0), 1e-12) / 448.0
        tl.store(q_row + cols, (h / scale).to(Q.dtype.element_ty), mask=inside)
    else:
        largest = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            largest = tl.maximum(largest, tl.abs(_product(gate_row, up_row, cols, cols < n_cols)))
        scale = tl.maximum(tl.max(largest, axis=0), 1e-12) / 448.0
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            inside = cols < n_cols
            h = _product(gate_row, up_row, cols, inside)
            tl.store(q_row + cols, (h / scale).to(Q.dtype.element_ty), mask=inside)
    tl.store(S + row, scale)


def _launch(n: int) -> tuple[int, bool, int]:
    """(block, one pass, warps) for rows of n columns: 64 values of each input per thread when kept whole."""
    if n <= ONE_PASS_LIMIT:
        block = triton.next_power_of_2(max(n, 16))
        return block, True, max(1, min(16, block // 2048))
    return BLOCK_LOOPED, False, 8


def silu_mul_fp8(gate_up, intermediate: int):
    """gate_up [rows, 2 × intermediate] (gate columns first, then up; rows contiguous) → (e4m3 [rows, intermediate],
    float32 scales [rows, 1]): each row of SiLU(gate) · up divided by its largest magnitude over 448."""
    import torch

    rows = gate_up.shape[0]
    if gate_up.shape[1] != 2 * intermediate or gate_up.stride(1) != 1:
        raise ValueError(f"gate_up must be [rows, {2 * intermediate}] with contiguous rows, not {tuple(gate_up.shape)}")
    q = torch.empty((rows, intermediate), device=gate_up.device, dtype=torch.float8_e4m3fn)
    s = torch.empty((rows, 1), device=gate_up.device, dtype=torch.float32)
    if rows:
        block, one_pass, warps = _launch(intermediate)
        _silu_mul_fp8_kernel[(rows,)](
            gate_up, q, s, gate_up.stride(0), q.stride(0), intermediate, BLOCK=block, ONE_PASS=one_pass, num_warps=warps
        )
    return q, s
