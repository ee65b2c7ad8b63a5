"""Self-attention over packed sequences (BERT's encoder): every query of a sequence against that sequence's keys.

Flash attention's variable-length kernel tiles 128 queries by 128 keys, so a SQuAD-length sequence (~180 tokens)
pads to 256 x 256 and half the tile work is masked out. Here a program owns one (sequence, 64-query tile, head):
it walks the sequence's keys 64 at a time with an online softmax (exp2; the scale applied to each row's maximum
and fused into the exponent's subtraction, one multiply-add a score), so a 180-token sequence pads to 192 x 192.
Only the last block of a sequence whose length is not a multiple of 64 is masked, after the loop over the whole
blocks: the loop is 305 instructions a warp per 64-key block against 405 when every block was masked and every
score scaled first (its SASS, Triton 3.9 for sm_90: bench/results/packed_attention_sass*.json). Programs whose
tile starts past their sequence's end return at once, which lets one grid (capacity x tiles, heads) serve every
batch of a CUDA graph's shape. An e4m3 output (fp8's path) takes 128-query tiles by default (E4M3_TILES).

BERT-large's whole forward of a 16k-token batch of SQuAD-like lengths (16 heads of 64) on an H200, with this
kernel against flash varlen: 19.26 ms against 20.15 (bf16), 21.51 against 23.00 (fp16), 13.51 against 14.14
(fp8) (bench/results/gpu_check_bert.json: forward_only and forward_only_variants.flash_varlen_attention).

Layout: the fused projection's output [tokens, 3, heads, head_dim] (q, k, v of a token side by side) and
cu_seqlens [capacity + 1] (unused sequences empty); the result is [tokens, heads * head_dim] in q's dtype.
Tokens past cu_seqlens[-1] (a bucket's padding) are left unwritten.
"""

from __future__ import annotations

import math

import triton
import triton.language as tl

from subtool.runner.kernels import head_dim_fits, interpreted

BLOCK_M = 64
BLOCK_N = 64
# queries a tile and warps for an e4m3 output (fp8's path): on one H200, a 16k-token batch of the demo features
# took 80.4 µs against 88.0 with 64 queries and 4 warps, and the fp8 forward 13.233 ms against 13.515; a bf16
# output is faster with the 64-query default (77.1 µs against 81.1;
# bench/results/packed_attention_gpu_h200_tail_masked.json, bert_gpu_h200_forward_tail_masked.json)
E4M3_TILES = (128, 8)
LOG2E = 1.4426950408889634


@triton.jit
def _key_block(
    q,
    acc,
    l_i,
    m_i,
    QKV,
    k_base,
    v_base,
    first_key,
    length,
    stride_t,
    scale_log2,
    D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr,
):
    """One block of keys folded into the online softmax of a query tile; only a block that runs past the
    sequence's end (MASKED) pays for the key mask. The scale is applied to each row's maximum and fused into the
    exponent's subtraction (one multiply-add an element) rather than multiplied into every score first."""
    keys = first_key + tl.arange(0, BLOCK_N)
    key_ok = keys < length
    offs = keys.to(tl.int64)[:, None] * stride_t + tl.arange(0, D)[None, :]
    if MASKED:
        k = tl.load(QKV + k_base + offs, mask=key_ok[:, None], other=0.0)
    else:
        k = tl.load(QKV + k_base + offs)
    s = tl.dot(q, tl.trans(k))
    if MASKED:
        s = tl.where(key_ok[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1) * scale_log2)
    p = tl.exp2(s * scale_log2 - m_new[:, None])
    alpha = tl.exp2(m_i - m_new)
    if MASKED:
        v = tl.load(QKV + v_base + offs, mask=key_ok[:, None], other=0.0)
    else:
        v = tl.load(QKV + v_base + offs)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return acc, l_i * alpha + tl.sum(p, axis=1), m_new


@triton.jit
def _packed_attention_kernel(
    QKV,
    O,  # noqa: E741 (the attention output, named as in the papers)
    CU,
    stride_t,
    stride_o,
    scale_log2,
    inv_out_scale,
    QUANT: tl.constexpr,
    HEADS: tl.constexpr,
    D: tl.constexpr,
    TILES: tl.constexpr,
    KEY_TILES: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    FIXED_TRIPS: tl.constexpr,
):
    pid = tl.program_id(0)
    head = tl.program_id(1)
    seq = pid // TILES
    first = (pid % TILES) * BLOCK_M
    start = tl.load(CU + seq)
    length = tl.load(CU + seq + 1) - start
    if first >= length:
        return
    dims = tl.arange(0, D)
    rows = first + tl.arange(0, BLOCK_M)
    row_ok = rows < length
    q_tok = (start + rows).to(tl.int64)
    q = tl.load(QKV + q_tok[:, None] * stride_t + head * D + dims[None, :], mask=row_ok[:, None], other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D], tl.float32)
    k_base = start.to(tl.int64) * stride_t + (HEADS + head) * D
    v_base = start.to(tl.int64) * stride_t + (2 * HEADS + head) * D
    full = length - length % BLOCK_N  # keys in whole blocks; the rest (if any) is one masked block
    if FIXED_TRIPS:
        # Triton's interpreter cannot loop to a loaded bound; the compiled loop to `full` pipelines its loads,
        # so this form is for the interpreter only
        for b in range(0, KEY_TILES):
            if b * BLOCK_N < full:
                acc, l_i, m_i = _key_block(
                    q, acc, l_i, m_i, QKV, k_base, v_base, b * BLOCK_N, length, stride_t, scale_log2, D, BLOCK_N, False
                )
    else:
        for n in range(0, full, BLOCK_N):
            acc, l_i, m_i = _key_block(
                q, acc, l_i, m_i, QKV, k_base, v_base, n, length, stride_t, scale_log2, D, BLOCK_N, False
            )
    if full < length:
        acc, l_i, m_i = _key_block(
            q, acc, l_i, m_i, QKV, k_base, v_base, full, length, stride_t, scale_log2, D, BLOCK_N, True
        )
    out = acc / l_i[:, None]
    if QUANT:  # e4m3 at a static scale for an fp8 output projection
        out = tl.minimum(tl.maximum(out * inv_out_scale, -448.0), 448.0)
    tl.store(O + q_tok[:, None] * stride_o + head * D + dims[None, :], out.to(O.dtype.element_ty), mask=row_ok[:, None])


def tiles(e4m3_out: bool, block_m: int | None = None, num_warps: int | None = None) -> tuple[int, int]:
    """(queries a tile, warps) of a call: those given, else the ones its output type is fastest with."""
    default_m, default_warps = E4M3_TILES if e4m3_out else (BLOCK_M, 4)
    return (default_m if block_m is None else block_m, default_warps if num_warps is None else num_warps)


def packed_attention(
    qkv,
    cu_seqlens,
    max_len: int,
    scale: float | None = None,
    out_scale: float | None = None,
    block_m: int | None = None,
    block_n: int = BLOCK_N,
    num_warps: int | None = None,
    num_stages: int = 3,
):
    """softmax(q k^T * scale) v per sequence: qkv [tokens, 3, heads, head_dim] → [tokens, heads * head_dim], in
    q's dtype, or with `out_scale` in e4m3 as value / out_scale (a bound of |v| / 448 keeps it in range).
    `block_m` and `num_warps` None: the tiles that output is fastest with (E4M3_TILES or BLOCK_M with 4 warps)."""
    import torch

    block_m, num_warps = tiles(out_scale is not None, block_m, num_warps)

    tokens, three, heads, d = qkv.shape
    if three != 3 or not head_dim_fits(d):
        raise ValueError(
            f"packed attention needs [tokens, 3, heads, head_dim] with a power-of-two head_dim, got {tuple(qkv.shape)}"
        )
    if qkv.stride(3) != 1 or qkv.stride(2) != d or qkv.stride(1) != heads * d:
        raise ValueError("packed attention needs each token's q, k, v rows contiguous")
    dtype = qkv.dtype if out_scale is None else torch.float8_e4m3fn
    out = torch.empty((tokens, heads * d), device=qkv.device, dtype=dtype)
    sequences = cu_seqlens.numel() - 1
    query_tiles = triton.cdiv(max_len, block_m)
    key_tiles = triton.cdiv(max_len, block_n)
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    if not scale > 0:  # the kernel scales each row's maximum, which is the scaled scores' maximum only for scale > 0
        raise ValueError(f"packed attention needs a positive softmax scale, got {scale}")
    if tokens and sequences:
        _packed_attention_kernel[(sequences * query_tiles, heads)](
            qkv,
            out,
            cu_seqlens,
            qkv.stride(0),
            out.stride(0),
            scale * LOG2E,
            1.0 if out_scale is None else 1.0 / out_scale,
            QUANT=out_scale is not None,
            HEADS=heads,
            D=d,
            TILES=query_tiles,
            KEY_TILES=key_tiles,
            BLOCK_M=block_m,
            BLOCK_N=block_n,
            FIXED_TRIPS=interpreted(),
            num_warps=num_warps,
            num_stages=num_stages,
        )
    return out
