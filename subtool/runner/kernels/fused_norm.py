"""Row-wise Triton kernels around BERT's matrix products: residual add + LayerNorm, and fp8 quantization.

Each program owns one token row, reads it once, and writes everything the next matrix product needs: the
normalized row in the compute dtype (the next residual) and, for fp8, the row scaled into e4m3's range with its
scale. Statistics are kept in float32 whatever the storage dtype. The model's first LayerNorm gathers its input
itself (a token's word, position and segment rows, summed in float32), and its last writes no row at all: the two
question-answering logits go straight to the token's output row. Together these replace about 190 µs of torch
kernels in the 16k-token fp8 forward on an H100 (gathers, an add, a float32 copy, a product and a scatter;
bench/results/bert_gpu_h100_forward_embedding.json and README's Performance section).
"""

from __future__ import annotations

import triton
import triton.language as tl

FP8_MAX = 448.0


@triton.jit
def _normalize_row(
    x,
    row,
    cols,
    inside,
    W,
    B,
    Y,
    Y32,
    Q,
    S,
    HEAD_W,
    HEAD_B,
    HEAD_ROWS,
    HEAD_OUT,
    stride_y,
    stride_q,
    n_cols,
    eps,
    KEEP32: tl.constexpr,
    QUANT: tl.constexpr,
    HEAD: tl.constexpr,
):
    """LayerNorm of one float32 row and everything written from it: the row in Y's dtype, its float32 copy, its
    e4m3 copy and scale, or (HEAD) the two answer logits at the token's output row."""
    mean = tl.sum(x, axis=0) / n_cols
    centred = tl.where(inside, x - mean, 0.0)
    var = tl.sum(centred * centred, axis=0) / n_cols
    rstd = 1.0 / tl.sqrt(var + eps)
    w = tl.load(W + cols, mask=inside, other=0.0)
    b = tl.load(B + cols, mask=inside, other=0.0)
    y = centred * rstd * w + b
    y_low = y.to(Y.dtype.element_ty)
    if HEAD:  # the model's last LayerNorm: its two question-answering logits, scattered to the token's output row
        h = y if KEEP32 else tl.where(inside, y_low.to(tl.float32), 0.0)  # what the residual stream holds
        dest = tl.load(HEAD_ROWS + row).to(tl.int64) * 2
        for j in tl.static_range(2):
            wj = tl.load(HEAD_W + j * n_cols + cols, mask=inside, other=0.0)
            tl.store(HEAD_OUT + dest + j, tl.sum(h * wj, axis=0) + tl.load(HEAD_B + j))
    else:
        tl.store(Y + row * stride_y + cols, y_low, mask=inside)
    if KEEP32 and not HEAD:
        tl.store(Y32 + row * stride_y + cols, y, mask=inside)
    if QUANT:
        yq = tl.where(inside, y_low.to(tl.float32), 0.0)
        amax = tl.maximum(tl.max(tl.abs(yq), axis=0), 1e-6)
        q = tl.minimum(tl.maximum(yq * (448.0 / amax), -448.0), 448.0)  # one division per row, not per element
        tl.store(Q + row * stride_q + cols, q.to(Q.dtype.element_ty), mask=inside)
        tl.store(S + row, amax / 448.0)


@triton.jit
def _add_layernorm_kernel(
    X,
    R,
    BIAS,
    W,
    B,
    Y,
    Y32,
    Q,
    S,
    HEAD_W,
    HEAD_B,
    HEAD_ROWS,
    HEAD_OUT,
    stride_x,
    stride_r,
    stride_y,
    stride_q,
    n_cols,
    eps,
    HAS_RES: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    KEEP32: tl.constexpr,
    QUANT: tl.constexpr,
    HEAD: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    inside = cols < n_cols
    x = tl.load(X + row * stride_x + cols, mask=inside, other=0.0).to(tl.float32)
    if HAS_BIAS:
        x += tl.load(BIAS + cols, mask=inside, other=0.0).to(tl.float32)
    if HAS_RES:
        x += tl.load(R + row * stride_r + cols, mask=inside, other=0.0).to(tl.float32)
    _normalize_row(
        x, row, cols, inside, W, B, Y, Y32, Q, S, HEAD_W, HEAD_B, HEAD_ROWS, HEAD_OUT, stride_y, stride_q, n_cols,
        eps, KEEP32, QUANT, HEAD,
    )  # fmt: skip


@triton.jit
def _embed_layernorm_kernel(
    IDS,
    POSITIONS,
    SEGMENTS,
    WORD,
    POS,
    TYPE,
    W,
    B,
    Y,
    Y32,
    Q,
    S,
    stride_y,
    stride_q,
    n_cols,
    eps,
    KEEP32: tl.constexpr,
    QUANT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """One token's word, position and segment embedding rows, gathered and summed in float32, then normalized."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    inside = cols < n_cols
    x = tl.load(WORD + tl.load(IDS + row).to(tl.int64) * n_cols + cols, mask=inside, other=0.0).to(tl.float32)
    x += tl.load(POS + tl.load(POSITIONS + row).to(tl.int64) * n_cols + cols, mask=inside, other=0.0).to(tl.float32)
    x += tl.load(TYPE + tl.load(SEGMENTS + row).to(tl.int64) * n_cols + cols, mask=inside, other=0.0).to(tl.float32)
    _normalize_row(
        x, row, cols, inside, W, B, Y, Y32, Q, S, W, B, IDS, Y, stride_y, stride_q, n_cols, eps, KEEP32, QUANT, False
    )  # fmt: skip


@triton.jit
def _rowwise_fp8_kernel(
    X, BIAS, Q, S, stride_x, stride_q, n_cols, HAS_BIAS: tl.constexpr, GELU: tl.constexpr, BLOCK: tl.constexpr
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    inside = cols < n_cols
    x = tl.load(X + row * stride_x + cols, mask=inside, other=0.0).to(tl.float32)
    if HAS_BIAS:
        x += tl.load(BIAS + cols, mask=inside, other=0.0).to(tl.float32)
    if GELU:
        # GELU's tanh form, x * sigmoid(2 * sqrt(2/pi) * (x + 0.044715 x^3)), as cuBLASLt's epilogue computes it
        # on the bf16 path: erf costs ~30 instructions an element, which made this kernel compute-bound
        x = x * tl.sigmoid(1.5957691216057308 * (x + 0.044715 * x * x * x))
    x = tl.where(inside, x, 0.0)
    amax = tl.maximum(tl.max(tl.abs(x), axis=0), 1e-6)
    q = tl.minimum(tl.maximum(x * (448.0 / amax), -448.0), 448.0)
    tl.store(Q + row * stride_q + cols, q.to(Q.dtype.element_ty), mask=inside)
    tl.store(S + row, amax / 448.0)


def _outputs(rows: int, kept: int, n: int, device, dtype, quantize: bool, keep_fp32: bool, placeholder):
    """The LayerNorm kernels' output buffers (y, y32, q, s): the result (`kept` rows), its float32 copy, its e4m3
    rows and their scales; one not asked for is another buffer the kernel never writes."""
    import torch

    y = torch.empty((kept, n), device=device, dtype=dtype)
    y32 = torch.empty((kept, n), device=device, dtype=torch.float32) if keep_fp32 else y
    q = torch.empty((rows, n), device=device, dtype=torch.float8_e4m3fn) if quantize else y
    s = torch.empty((rows, 1), device=device, dtype=torch.float32) if quantize else placeholder
    return y, y32, q, s


def _results(y, y32, q, s, quantize: bool, keep_fp32: bool) -> tuple:
    """What add_layernorm and embed_layernorm return: (y, q or None, s or None, y32 or None)."""
    return y, (q if quantize else None), (s if quantize else None), (y32 if keep_fp32 else None)


def _warps(block: int) -> int:
    return 4 if block <= 1024 else 8


def add_layernorm(
    x,
    residual,
    weight,
    bias,
    eps: float,
    quantize: bool = False,
    x_bias=None,
    dtype=None,
    keep_fp32: bool = False,
    head=None,
):
    """LayerNorm(x + x_bias + residual): (the result in `dtype` (default x's), its e4m3 rows or None, their float32
    [rows, 1] scales or None, and with `keep_fp32` a float32 copy (a residual stream kept in float32) or None).
    With `head` = (W [2, n], b [2], rows [tokens], out [R, 2]), all float32 but rows (int32): the model's last
    LayerNorm, which writes no result but out[rows[t]] = W · result_t + b (from the float32 copy with `keep_fp32`,
    else from the result in `dtype`); it returns None for every result then."""

    rows, n = x.shape
    block = triton.next_power_of_2(n)
    kept = 1 if head is not None else rows  # the head writes logits only: its results are never stored
    y, y32, q, s = _outputs(rows, kept, n, x.device, dtype or x.dtype, quantize, keep_fp32, weight)
    res = residual if residual is not None else x
    head_w, head_b, head_rows, head_out = head if head is not None else (weight, weight, weight, weight)
    if rows:
        _add_layernorm_kernel[(rows,)](
            x,
            res,
            x_bias if x_bias is not None else weight,
            weight,
            bias,
            y,
            y32,
            q,
            s,
            head_w,
            head_b,
            head_rows,
            head_out,
            x.stride(0),
            res.stride(0),
            y.stride(0),
            q.stride(0),
            n,
            eps,
            HAS_RES=residual is not None,
            HAS_BIAS=x_bias is not None,
            KEEP32=keep_fp32,
            QUANT=quantize,
            HEAD=head is not None,
            BLOCK=block,
            num_warps=_warps(block),
        )
    if head is not None:
        return None, None, None, None
    return _results(y, y32, q, s, quantize, keep_fp32)


def embed_layernorm(
    ids,
    positions,
    segments,
    word,
    pos,
    types,
    weight,
    bias,
    eps: float,
    quantize: bool = False,
    dtype=None,
    keep_fp32: bool = False,
):
    """LayerNorm(word[ids] + pos[positions] + types[segments]), the three gathers summed in float32 (the tables
    contiguous [*, n], the index vectors int32 or int64 [tokens]): the same four results as add_layernorm."""

    rows, n = ids.numel(), word.shape[1]
    block = triton.next_power_of_2(n)
    y, y32, q, s = _outputs(rows, rows, n, word.device, dtype or word.dtype, quantize, keep_fp32, weight)
    if rows:
        _embed_layernorm_kernel[(rows,)](
            ids, positions, segments, word, pos, types, weight, bias, y, y32, q, s, y.stride(0), q.stride(0), n, eps,
            KEEP32=keep_fp32, QUANT=quantize, BLOCK=block, num_warps=_warps(block),
        )  # fmt: skip
    return _results(y, y32, q, s, quantize, keep_fp32)


def rowwise_fp8(x, bias=None, gelu: bool = False):
    """Each row of x (+ bias, through GELU) scaled to e4m3's range: (e4m3 [rows, n], float32 scales [rows, 1])."""
    import torch

    rows, n = x.shape
    block = triton.next_power_of_2(n)
    q = torch.empty((rows, n), device=x.device, dtype=torch.float8_e4m3fn)
    s = torch.empty((rows, 1), device=x.device, dtype=torch.float32)
    if rows:
        _rowwise_fp8_kernel[(rows,)](
            x,
            bias if bias is not None else x,
            q,
            s,
            x.stride(0),
            q.stride(0),
            n,
            HAS_BIAS=bias is not None,
            GELU=gelu,
            BLOCK=block,
            num_warps=_warps(block),
        )
    return q, s
