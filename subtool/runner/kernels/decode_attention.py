"""Decode attention for grouped-query models: one new query token per sequence over that sequence's cached keys.

Flash attention's kernels tile 64-128 query rows, but a decode step has one query per head, so almost all of
their matrix work is padding and the step turns compute-bound. Here a program owns one (sequence, kv head, key
split): it loads the `group` query heads that share that kv head as one 16-row tile, streams only the split's
part of the sequence's keys and values (each read once for the whole group), and keeps an online softmax. A
second kernel merges the splits by their log-sum-exp (a sequence within one split, the common case with long
splits, is finished by the split kernel and skipped by the merge). Splits past a sequence's length neither read
nor write, and the merge reads only the splits a sequence's length reaches, so one launch shape serves every step
(CUDA graphs) and short sequences cost what they hold. A sequence with no keys gets zeros.

Cache layout: token-major pages [pages, page, kv_heads, head_dim] and a table [sequences, pages per sequence]
naming the page that holds each sequence's positions page·j … page·(j+1)-1 (the engine's paged cache,
engine_pages.py); or, without a table, [sequences, max_len, kv_heads, head_dim] (one page per sequence). Keys are
in the queries' dtype or in fp8 e4m3 at unit scale (widened as they are read: to fp16, the products' dtype
over an fp8 cache by default, see HALF).
"""

from __future__ import annotations

import math

import triton
import triton.language as tl

from subtool.runner.kernels import head_dim_fits

ROWS = 16  # the smallest tile tl.dot takes; holds up to 16 query heads per kv head
# the split kernel's defaults: keys per block, warps, pipelining depth (None: Triton's own), a split's page numbers
# loaded before its loop, and keys per program: on one H200 at llama2-70b's shape (512 sequences × 8 kv heads, 454
# keys on average, fp8 pages) 1,024 keys per program took 280 µs a layer with 2 stages against 425 µs for 256 and
# Triton's default depth (bench/results/decode_attention_gpu.json), and 258 µs with 3 stages and the table ahead
# (326 µs for 3 stages without it; bench/results/decode_attention_gpu_ahead.json); a step of few sequences keeps
# 256-key splits, so that its sequences × kv heads × splits still fill the GPU
BLOCK_N, WARPS, STAGES, TABLE_AHEAD = 64, 4, 3, True
# programs launched longest first (see DecodeAttention's `ordered`): 246 µs a layer against 257 on the H200 sweep
# (bench/results/decode_attention_gpu_ordered.json), and in the engine's CUDA graphs a llama2-70b LoadGen Offline run
# of 4,096 samples gave 2,789 tokens/s against 2,733 without (llm70b_gpu_paged512_4096samples_ordered.json)
ORDERED = True
SPLIT_NARROW, SPLIT_WIDE, WIDE_PROGRAMS = 256, 1024, 2048
# the merge's query heads a program (the largest power of two ≤ 8 dividing the heads): at llama2-70b's 512 slots
# one program a head made 32,768 programs a layer, most with nothing to merge, 22.6 µs of a decode step's layer on
# one H200 (bench/results/llm70b_gpu_profile512_silu_fused.json, `_merge_kernel`: 1.81 ms over 80 calls); with 8 on
# one H100 (40 layers, 512 slots) the merge took 0.126 ms a step against 0.92, and the step 34.4-34.6 ms against
# 35.2 (bench/results/llm70b_gpu_h100_layers40_merge_*.json)
MERGE_HEADS = 8
# fp8_dots (off by default): both products on e4m3 tensor cores, the query rows quantised per row, the softmax
# weights scaled by P8 before their e4m3 rounding (the largest weight, 1, becomes 256 of e4m3's 448; weights down
# to ~1e-5 keep a nonzero code). On an H100 at llama2-70b's shape it took 238 µs a layer against 248 for the
# widening path, 1.04x, with outputs up to 0.375 apart (bench/results/decode_attention_gpu_h100_fp8_dots.json): the
# widening is not what holds the kernel at ~2 TB/s, and the gain does not pay for the rounding
P8 = tl.constexpr(256.0)
# half (on by default): over an fp8 cache both products run in fp16, the softmax scale folded into the query rows
# before their rounding, instead of in the queries' bf16. e4m3 widens to fp16 in one instruction per pair of
# values and to bf16 only through fp16 (three), so the split kernel's loop over a 64-key block is 708 instructions
# a warp against 910 (its SASS, Triton 3.9 for sm_90), and on an H100 at llama2-70b's shape a layer took 235.0 µs
# against 248.4 (bench/results/decode_attention_gpu_h100_half.json). fp16 keeps 3 more mantissa bits than bf16,
# and its range (65,504) holds query values up to ~7 x 10^5 once scaled by 1/sqrt(128)
HALF = True
# two tunings that measured slower on that H100 and stay off: `prefetch` (each program asks for its next block of
# keys and values one block ahead in registers, beside Triton's pipelining; it lifts registers past 128 a thread:
# 378 µs against 248, bench/results/decode_attention_gpu_h100_prefetch.json) and `v_zeroed` (value blocks widened
# in registers and staged as 16-bit instead of read from shared memory a byte at a time: 239.8 µs on top of half
# against half's 235.0, and 270 against 248 without half, decode_attention_gpu_h100_half.json)
PREFETCH, V_ZEROED = False, False
# registers (a cap on each thread's, Triton's maxnreg): `half` compiles to 136 at Llama-2-70B's shape, where four
# 4-warp programs a multiprocessor fit at 128; capped at 128 (5 spill loads and stores among the loop's 705
# instructions: bench/results/decode_attention_sass_registers.json), a layer took 210.7 µs against
# 220.7 on one H200 (decode_attention_gpu_h200_registers_sweep.json; 120: 213.4, 112: 220.2) and 209.6 against
# 221.4 in another run (decode_attention_gpu_h200_registers.json); a llama2-70b LoadGen Offline run of 4,096 samples
# with it gave 3,063.7 tokens/s against 3,016.5 (llm70b_gpu_paged512_4096samples_registers128.json)
REGISTERS = 128


def register_cap_supported() -> bool:
    """Triton's CUDA options take `maxnreg` (3.0 on); where an older one would refuse the keyword at launch, the
    default cap is left off (it changes speed, not results)."""
    import dataclasses

    try:
        from triton.backends.nvidia.compiler import CUDAOptions
    except ImportError:
        return False
    return "maxnreg" in {f.name for f in dataclasses.fields(CUDAOptions)}


def default_split(sequences: int, kv_heads: int) -> int:
    """Keys per program: long splits once sequences × kv heads alone make WIDE_PROGRAMS programs."""
    return SPLIT_WIDE if sequences * kv_heads >= WIDE_PROGRAMS else SPLIT_NARROW


# fmt: off
@triton.jit
def _load_block(K, V, page, n, end, head, stride_kp, stride_kt, stride_kh, D: tl.constexpr, BLOCK_N: tl.constexpr,
                PAGE: tl.constexpr):
    """Keys and values n … n+BLOCK_N-1 of one kv head as cached (those at or past `end` are not read: zeros), from
    page `page` (pages are whole blocks)."""
    keys = n + tl.arange(0, BLOCK_N)
    offs = page * stride_kp + ((keys % PAGE) * stride_kt + head * stride_kh)[:, None] + tl.arange(0, D)[None, :]
    k = tl.load(K + offs, mask=(keys < end)[:, None], other=0.0)
    v = tl.load(V + offs, mask=(keys < end)[:, None], other=0.0)
    return k, v


@triton.jit
def _attend_block(q, k, v, n, end, acc, m_i, l_i, scale, BLOCK_N: tl.constexpr, FP8_DOTS: tl.constexpr,
                  V_ZEROED: tl.constexpr):
    """Keys n … n+BLOCK_N-1 (`k`, `v` as _load_block gave them; those below `end` count) into the online softmax.
    With FP8_DOTS, `q` is the e4m3 query rows and `scale` holds each row's scale [ROWS] times the softmax scale:
    keys and values stay e4m3 as cached, and the weights go into the second product as e4m3 of p · P8 (P8 keeps
    the small weights above e4m3's smallest step; the caller divides it out at the end)."""
    key_ok = n + tl.arange(0, BLOCK_N) < end
    if FP8_DOTS:
        s = tl.dot(q, tl.trans(k)) * scale[:, None]
    else:
        k = k.to(q.dtype)  # fp8 caches widen here
        v = v.to(q.dtype)
        if V_ZEROED:  # the masked rows zeroed again: Triton then widens v in registers, not from shared memory
            v = tl.where(key_ok[:, None], v, 0.0)
        s = tl.dot(q, tl.trans(k)) * scale
    s = tl.where(key_ok[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    p = tl.exp(s - m_new[:, None])
    alpha = tl.exp(m_i - m_new)
    if FP8_DOTS:
        pv = tl.dot((p * P8).to(tl.float8e4nv), v)
    else:
        pv = tl.dot(p.to(q.dtype), v)
    acc = acc * alpha[:, None] + pv
    l_i = l_i * alpha + tl.sum(p, axis=1)
    return acc, m_new, l_i


@triton.jit
def _page_of(table, pages, ahead, n, start, end, PAGE: tl.constexpr, TABLE_AHEAD: tl.constexpr):
    """The page holding key n of this program's split: from the page numbers loaded ahead, or from the table
    (not read for a key at or past `end`: page 0, whose block is then not read either)."""
    if TABLE_AHEAD:
        page = tl.sum(tl.where(ahead == (n - start) // PAGE, pages, 0))
    else:
        page = tl.load(table + n // PAGE, mask=n < end, other=0).to(tl.int64)
    return page


@triton.jit
def _stream_split(q, K, V, table, pages, ahead, start, end, head, row_scale, stride_kp, stride_kt, stride_kh,
                  D: tl.constexpr, BLOCK_N: tl.constexpr, ROWS: tl.constexpr, PAGE: tl.constexpr,
                  TABLE_AHEAD: tl.constexpr, FP8_DOTS: tl.constexpr, PREFETCH: tl.constexpr,
                  V_ZEROED: tl.constexpr):
    """The online softmax over keys start … end-1, block by block: (acc, m, l). With PREFETCH, each block's keys
    and values are asked for one block ahead, in registers, beside Triton's own pipelining."""
    m_i = tl.full([ROWS], float("-inf"), tl.float32)
    l_i = tl.zeros([ROWS], tl.float32)
    acc = tl.zeros([ROWS, D], tl.float32)
    if PREFETCH:
        page = _page_of(table, pages, ahead, start, start, end, PAGE, TABLE_AHEAD)
        k, v = _load_block(K, V, page, start, end, head, stride_kp, stride_kt, stride_kh, D, BLOCK_N, PAGE)
        for n in range(start, end, BLOCK_N):
            after = _page_of(table, pages, ahead, n + BLOCK_N, start, end, PAGE, TABLE_AHEAD)
            k_next, v_next = _load_block(K, V, after, n + BLOCK_N, end, head, stride_kp, stride_kt, stride_kh, D,
                                         BLOCK_N, PAGE)
            acc, m_i, l_i = _attend_block(q, k, v, n, end, acc, m_i, l_i, row_scale, BLOCK_N, FP8_DOTS, V_ZEROED)
            k, v = k_next, v_next
    else:
        for n in range(start, end, BLOCK_N):  # to the split's own end: nothing past a short sequence's length
            page = _page_of(table, pages, ahead, n, start, end, PAGE, TABLE_AHEAD)
            k, v = _load_block(K, V, page, n, end, head, stride_kp, stride_kt, stride_kh, D, BLOCK_N, PAGE)
            acc, m_i, l_i = _attend_block(q, k, v, n, end, acc, m_i, l_i, row_scale, BLOCK_N, FP8_DOTS, V_ZEROED)
    return acc, m_i, l_i


# fmt: on
@triton.jit
def _program(ITEMS, ORDERED: tl.constexpr, KV_HEADS: tl.constexpr, SPLITS: tl.constexpr):
    """This program's (sequence, kv head, split)."""
    if ORDERED:  # a 1-D grid of rank · kv heads + kv head (rank: the rank-th (sequence, split) by keys held)
        program = tl.program_id(0)
        head = (program % KV_HEADS).to(tl.int64)
        item = tl.load(ITEMS + program // KV_HEADS).to(tl.int64)
        seq = item // SPLITS
        split = (item % SPLITS).to(tl.int32)
    else:  # a 3-D grid (sequence, kv head, split)
        seq = tl.program_id(0).to(tl.int64)
        head = tl.program_id(1).to(tl.int64)
        split = tl.program_id(2)
    return seq, head, split


@triton.jit
def _split_kernel(
    Q,
    K,
    V,
    LENS,
    TABLE,
    ITEMS,
    O_PART,
    LSE_PART,
    OUT,
    scale,
    stride_qs,
    stride_qh,
    stride_table,
    stride_kp,
    stride_kt,
    stride_kh,
    stride_os,
    stride_oh,
    stride_osplit,
    stride_out_s,
    stride_out_h,
    GROUP: tl.constexpr,
    D: tl.constexpr,
    SPLIT: tl.constexpr,
    BLOCK_N: tl.constexpr,
    ROWS: tl.constexpr,
    PAGE: tl.constexpr,
    TABLE_AHEAD: tl.constexpr,
    ORDERED: tl.constexpr,
    KV_HEADS: tl.constexpr,
    SPLITS: tl.constexpr,
    FP8_DOTS: tl.constexpr,
    HALF: tl.constexpr,
    PREFETCH: tl.constexpr,
    V_ZEROED: tl.constexpr,
):
    seq, head, split = _program(ITEMS, ORDERED, KV_HEADS, SPLITS)
    length = tl.load(LENS + seq)
    start = split * SPLIT
    end = tl.minimum(start + SPLIT, length)
    q, row_scale = _query_rows(Q, seq, head, scale, stride_qs, stride_qh, GROUP, D, ROWS, FP8_DOTS, HALF)
    table = TABLE + seq * stride_table
    if TABLE_AHEAD:  # the split's page numbers in one load before the loop: no load waits on another inside it
        ahead = tl.arange(0, SPLIT // PAGE)
        pages = tl.load(table + start // PAGE + ahead, mask=start + ahead * PAGE < length, other=0).to(tl.int64)
    else:  # unread
        ahead = 0
        pages = 0
    # fmt: off
    acc, m_i, l_i = _stream_split(q, K, V, table, pages, ahead, start, end, head, row_scale, stride_kp, stride_kt,
                                  stride_kh, D, BLOCK_N, ROWS, PAGE, TABLE_AHEAD, FP8_DOTS, PREFETCH, V_ZEROED)
    # fmt: on
    if FP8_DOTS:
        acc = acc / P8
    # fmt: off
    _store_split(acc, m_i, l_i, seq, head, split, length, OUT, O_PART, LSE_PART, stride_out_s, stride_out_h,
                 stride_os, stride_oh, stride_osplit, GROUP, D, ROWS, SPLIT, SPLITS, KV_HEADS)
    # fmt: on


@triton.jit
def _query_rows(
    Q,
    seq,
    head,
    scale,
    stride_qs,
    stride_qh,
    GROUP: tl.constexpr,
    D: tl.constexpr,
    ROWS: tl.constexpr,
    FP8_DOTS: tl.constexpr,
    HALF: tl.constexpr,
):
    """The `group` query heads of (sequence, kv head) as one ROWS-row tile (rows past the group zero), and the
    scale their scores take: the softmax's; with HALF the rows in fp16 with the softmax's scale already applied
    (1); with FP8_DOTS the rows in e4m3 each at its own scale, folded in."""
    rows = tl.arange(0, ROWS)
    q = tl.load(
        Q + seq * stride_qs + (head * GROUP + rows)[:, None] * stride_qh + tl.arange(0, D)[None, :],
        mask=(rows < GROUP)[:, None],
        other=0.0,
    )
    row_scale = scale
    if HALF:  # the softmax scale folded into fp16 rows: an e4m3 cache widens to fp16 in one instruction a pair
        q = (q.to(tl.float32) * scale).to(tl.float16)
        row_scale = 1.0
    if FP8_DOTS:
        q_scale = tl.maximum(tl.max(tl.abs(q.to(tl.float32)), axis=1), 1e-30) / 448.0
        q = (q.to(tl.float32) / q_scale[:, None]).to(tl.float8e4nv)
        row_scale = q_scale * scale
    return q, row_scale


@triton.jit
def _store_split(
    acc,
    m_i,
    l_i,
    seq,
    head,
    split,
    length,
    OUT,
    O_PART,
    LSE_PART,
    stride_out_s,
    stride_out_h,
    stride_os,
    stride_oh,
    stride_osplit,
    GROUP: tl.constexpr,
    D: tl.constexpr,
    ROWS: tl.constexpr,
    SPLIT: tl.constexpr,
    SPLITS: tl.constexpr,
    KV_HEADS: tl.constexpr,
):
    """A sequence whose keys all lie in the first split (most of a decode step's, with long splits) is finished
    here: its output goes straight to OUT and the merge skips it. Otherwise the split's part of each row's output
    and its log-sum-exp (the merge weighs the parts by it); a split past the sequence's length writes nothing, and
    the merge reads only the splits its length reaches. Masks are tensor comparisons, so the interpreter masks
    with them too."""
    rows = tl.arange(0, ROWS)
    dims = tl.arange(0, D)
    row_ok = rows < GROUP
    start = split * SPLIT
    has = l_i > 0
    part = acc / tl.where(has, l_i, 1.0)[:, None]  # a sequence with no keys: zeros
    single = (rows * 0 + length) <= SPLIT
    out_at = seq * stride_out_s + (head * GROUP + rows)[:, None] * stride_out_h + dims[None, :]
    tl.store(OUT + out_at, part.to(OUT.dtype.element_ty), mask=(row_ok & single & (rows * 0 + split == 0))[:, None])
    live = row_ok & (start + rows * 0 < length) & (single == 0)
    o_offs = seq * stride_os + (head * GROUP + rows)[:, None] * stride_oh + split * stride_osplit + dims[None, :]
    tl.store(O_PART + o_offs, part, mask=live[:, None])
    lse_at = (seq * KV_HEADS * GROUP + head * GROUP + rows) * SPLITS + split
    tl.store(LSE_PART + lse_at, tl.where(has, m_i + tl.log(tl.where(has, l_i, 1.0)), float("-inf")), mask=live)


@triton.jit
def _merge_kernel(
    O_PART,
    LSE_PART,
    OUT,
    LENS,
    stride_os,
    stride_oh,
    stride_osplit,
    stride_out_s,
    stride_out_h,
    HEADS: tl.constexpr,
    MERGE_HEADS: tl.constexpr,
    D: tl.constexpr,
    SPLITS: tl.constexpr,
    SPLIT: tl.constexpr,
):
    """One program a (sequence, MERGE_HEADS query heads). A sequence within one split (the split kernel finished
    it) reads and writes nothing past its length; most of a step's programs stop there, so fewer and wider programs
    than one a head cost the step less."""
    seq = tl.program_id(0).to(tl.int64)
    length = tl.load(LENS + seq)
    if length > SPLIT:
        heads = tl.program_id(1).to(tl.int64) * MERGE_HEADS + tl.arange(0, MERGE_HEADS)
        splits = tl.arange(0, SPLITS)
        dims = tl.arange(0, D)
        # the splits that hold keys (the others wrote nothing); tensor comparisons: interpreter masks too
        live = (splits[None, :] * SPLIT < length) & (heads[:, None] < HEADS)
        lse = tl.load(
            LSE_PART + (seq * HEADS + heads[:, None]) * SPLITS + splits[None, :], mask=live, other=-float("inf")
        )
        top = tl.max(lse, axis=1)
        w = tl.where(lse > -float("inf"), tl.exp(lse - tl.where(top > -float("inf"), top, 0.0)[:, None]), 0.0)
        at = seq * stride_os + heads[:, None, None] * stride_oh + splits[None, :, None] * stride_osplit
        parts = tl.load(O_PART + at + dims[None, None, :], mask=live[:, :, None], other=0.0)
        out = tl.sum(parts * w[:, :, None], axis=1) / tl.maximum(tl.sum(w, axis=1), 1e-30)[:, None]
        out_at = seq * stride_out_s + heads[:, None] * stride_out_h + dims[None, :]
        tl.store(OUT + out_at, out.to(OUT.dtype.element_ty), mask=heads[:, None] < HEADS)


class DecodeAttention:
    """Buffers for one shape (sequences, heads, kv heads, head_dim, max_len), reused every step."""

    def __init__(
        self,
        sequences: int,
        heads: int,
        kv_heads: int,
        head_dim: int,
        max_len: int,
        device,
        split: int | None = None,
        block_n: int = BLOCK_N,
        warps: int = WARPS,
        stages: int | None = STAGES,
        table_ahead: bool = TABLE_AHEAD,
        ordered: bool = ORDERED,
        fp8_dots: bool = False,
        half: bool = HALF,
        prefetch: bool = PREFETCH,
        v_zeroed: bool = V_ZEROED,
        registers: int | None = REGISTERS,
    ):
        """`split`, `block_n`, `warps` and `stages` tune the split kernel (keys per program, keys per block,
        warps per program, software-pipelining depth; None: Triton's default), and `table_ahead` (a program
        loads its split's page numbers once, before its loop, where a split holds a power of two of whole pages):
        `ordered` launches the (sequence, split) pairs by the keys they hold, most first, every kv head of one
        pair side by side, instead of in sequence order: with lengths from 30 to 2,000 keys a long sequence's
        program that starts in the last wave sets the kernel's end, and the GPU takes programs in launch order.
        `bench/decode_attention_gpu.py` times them on a shape. `split` None: default_split of each call's
        sequence count, so that a decode step over a few rows (a CUDA graph of its own) keeps short splits while a
        full one takes long ones. `fp8_dots`: both products on e4m3 (an fp8 cache only; see P8). `half`: over an
        fp8 cache, both products in fp16 rather than the queries' bf16 (see HALF); a 16-bit cache keeps its dtype.
        `prefetch` and `v_zeroed`: two tunings that measured slower (see PREFETCH), for the bench to time.
        `registers`: a cap on each thread's registers (Triton's maxnreg; see REGISTERS), None or 0: none."""
        import torch

        if any(n % block_n for n in ((split,) if split else (SPLIT_NARROW, SPLIT_WIDE))):
            raise ValueError(f"split {split} must be a multiple of block_n {block_n}")
        if block_n < 16 or block_n & (block_n - 1):
            raise ValueError(f"block_n {block_n}: a power of two ≥ 16 only")
        if heads % kv_heads or heads // kv_heads > ROWS:
            raise ValueError(f"{heads} query heads over {kv_heads} kv heads: groups of at most {ROWS} only")
        if not head_dim_fits(head_dim):
            raise ValueError(f"head_dim {head_dim}: a power of two ≥ 16 only")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.group = heads // kv_heads
        self.split, self.block_n, self.max_len = split, block_n, max_len
        self.table_ahead, self.ordered, self.fp8_dots, self.half = table_ahead, ordered, fp8_dots, half
        self.prefetch, self.v_zeroed = prefetch, v_zeroed
        self.launch = {"num_warps": warps} if stages is None else {"num_warps": warps, "num_stages": stages}
        if registers and register_cap_supported():
            self.launch["maxnreg"] = registers
        self.splits = self._splits(split or SPLIT_NARROW)  # the most any call uses: the partial buffers hold them
        self.o_part = torch.empty((sequences, heads, self.splits, head_dim), device=device, dtype=torch.float32)
        self.lse_part = torch.empty((sequences, heads, self.splits), device=device, dtype=torch.float32)
        self._identity = None

    def _splits(self, split: int) -> int:
        return triton.next_power_of_2(-(-self.max_len // split))

    def _splitting(self, rows: int) -> tuple[int, int]:
        """(keys per program, splits per sequence) of a call over `rows` sequences: what the split kernel's grid,
        the merge and a launch order made for those rows all go by."""
        split = self.split or default_split(rows, self.kv_heads)
        return split, self._splits(split)

    def _rows(self, n: int, device):
        """The table of an unpaged cache: sequence s's one page is row s."""
        import torch

        if self._identity is None or len(self._identity) < n:
            self._identity = torch.arange(n, device=device, dtype=torch.int64)[:, None]
        return self._identity

    def order(self, lengths):
        """The launch order `ordered` takes for these lengths [S]: each (sequence, split) pair as
        sequence · splits + split, by the keys it holds, most first (int32 [S · splits]). The lengths are the same
        in every layer of a step, so a caller computes it once a step and passes it to each call."""
        import torch

        split, splits = self._splitting(len(lengths))
        starts = torch.arange(splits, device=lengths.device, dtype=torch.int32) * split
        held = (lengths[:, None] - starts[None, :]).clamp(0, split)
        return torch.argsort(held.reshape(-1), descending=True, stable=True).to(torch.int32)

    def __call__(self, q, k_cache, v_cache, lengths, scale: float, out=None, table=None, order=None):
        """q [S, heads, D]; lengths [S] int32 (keys each query sees) → [S, heads, D]. With `table` [≥S, pages per
        sequence] (int64): caches [pages, page, kv, D], sequence s's position p in page table[s, p // page];
        without: caches [S, max_len, kv, D]. `order`: what order(lengths) gives, when `ordered` (computed here
        when not given)."""
        import torch

        if self.fp8_dots and k_cache.dtype != torch.float8_e4m3fn:
            raise ValueError(f"fp8_dots reads an e4m3 cache as it is; this one holds {k_cache.dtype}")
        if self.ordered and order is None:
            order = self.order(lengths)
        if out is None:
            out = torch.empty_like(q)
        table, block = self._table_and_block(k_cache, table)
        split, splits = self._splitting(q.shape[0])  # the split kernel's grid and the merge's count agree on it
        self._launch_split(q, k_cache, v_cache, lengths, table, order, out, scale, split, splits, block)
        self._launch_merge(q.shape[0], lengths, out, split, splits)
        return out

    def _table_and_block(self, k_cache, table):
        """The page table (an unpaged cache's: one page per sequence, the whole of its cache row, so no block
        crosses into another) and the keys per block, which must lie in one page."""
        block = self.block_n
        if table is None:
            return self._rows(k_cache.shape[0], k_cache.device), block
        while k_cache.shape[1] % block and block > 16:
            block //= 2
        if k_cache.shape[1] % block:
            raise ValueError(f"pages of {k_cache.shape[1]} tokens: a multiple of 16 only")
        return table, block

    def _launch_split(self, q, k_cache, v_cache, lengths, table, order, out, scale, split, splits, block) -> None:
        """Each (sequence, kv head, split) program's partial output and log-sum-exp into o_part / lse_part."""
        import torch

        o_part, s, page = self.o_part, q.shape[0], k_cache.shape[1]
        # ordered: one axis (a grid's second and third hold at most 65,535), every kv head of a pair side by side
        grid = (s * splits * self.kv_heads,) if self.ordered else (s, self.kv_heads, splits)
        _split_kernel[grid](
            q,
            k_cache,
            v_cache,
            lengths,
            table,
            order if self.ordered else lengths,  # unread when not ordered
            o_part,
            self.lse_part,
            out,
            scale,
            q.stride(0),
            q.stride(1),
            table.stride(0),
            k_cache.stride(0),
            k_cache.stride(1),
            k_cache.stride(2),
            o_part.stride(0),
            o_part.stride(1),
            o_part.stride(2),
            out.stride(0),
            out.stride(1),
            **self.split_constants(split, splits, block, page, k_cache.dtype == torch.float8_e4m3fn),
            **self.launch,
        )

    def split_constants(self, split: int, splits: int, block: int, page: int, fp8_cache: bool) -> dict:
        """The split kernel's compile-time arguments for a call with these keys per program, splits, keys per block
        and page size over an fp8 cache or not: this object's tunings as the kernel takes them (what a launch
        passes, and what bench/decode_attention_sass.py compiles)."""
        ahead = page <= split and split % page == 0 and (split // page) & (split // page - 1) == 0
        return {
            "GROUP": self.group,
            "D": self.head_dim,
            "SPLIT": split,
            "BLOCK_N": block,
            "ROWS": ROWS,
            "PAGE": page,
            "TABLE_AHEAD": self.table_ahead and ahead,
            "ORDERED": self.ordered,
            "KV_HEADS": self.kv_heads,
            "SPLITS": splits,
            "FP8_DOTS": self.fp8_dots,
            "HALF": self.half and fp8_cache and not self.fp8_dots,
            "PREFETCH": self.prefetch,
            "V_ZEROED": self.v_zeroed,
        }

    def _launch_merge(self, sequences: int, lengths, out, split: int, splits: int) -> None:
        """The splits' partial outputs of each (sequence, head) merged by their log-sum-exps into out."""
        o_part = self.o_part
        merge_heads = math.gcd(self.heads, MERGE_HEADS)
        _merge_kernel[(sequences, self.heads // merge_heads)](
            o_part,
            self.lse_part,
            out,
            lengths,
            o_part.stride(0),
            o_part.stride(1),
            o_part.stride(2),
            out.stride(0),
            out.stride(1),
            HEADS=self.heads,
            MERGE_HEADS=merge_heads,
            D=self.head_dim,
            SPLITS=splits,
            SPLIT=split,
            num_warps=4,
        )
