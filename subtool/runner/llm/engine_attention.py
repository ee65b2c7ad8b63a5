"""Which keys a step's attention reads and how new ones are stored: the packed layout of a prefill chunk, decode key
buckets, the cache write, and the choice of decode attention kernel (Triton split-key, flash varlen or SDPA) for a
device and shape."""

from __future__ import annotations

import numpy as np
import torch

from subtool.runner.llm.engine_layer import FP8_MAX


def chunk_layout(pieces: list[tuple[int, int, int]], max_len: int) -> dict:
    """Index arrays of one prefill chunk, pieces = [(slot, start, tokens)] packed one after another: per query row
    its slot and position; per key (each piece's cached prefix, then its own tokens) its slot and position; where
    each row's key sits among the keys; the row of each piece's last token; cumulative query and key counts."""
    q_slot, q_pos, k_slot, k_pos, own, last = [], [], [], [], [], []
    cu_q, cu_k = [0], [0]
    for slot, start, n in pieces:
        q_slot.append(np.full(n, slot))
        q_pos.append(np.arange(start, start + n))
        k_slot.append(np.full(start + n, slot))
        k_pos.append(np.arange(start + n))
        own.append(cu_k[-1] + start + np.arange(n))
        cu_q.append(cu_q[-1] + n)
        cu_k.append(cu_k[-1] + start + n)
        last.append(cu_q[-1] - 1)
    if any(start + n > max_len for _, start, n in pieces):
        raise ValueError("a prefill chunk runs past the cache")
    cat = lambda parts: np.concatenate(parts).astype(np.int64)  # noqa: E731
    return {
        "q_slot": cat(q_slot),
        "q_pos": cat(q_pos),
        "k_slot": cat(k_slot),
        "k_pos": cat(k_pos),
        "own": cat(own),
        "last": np.array(last, dtype=np.int64),
        "cu_q": np.array(cu_q, dtype=np.int32),
        "cu_k": np.array(cu_k, dtype=np.int32),
        "max_q": max(n for _, _, n in pieces),
        "max_k": max(start + n for _, start, n in pieces),
    }


def piece_mask(start: int, n: int) -> np.ndarray:
    """[n, start + n] True where row r of a piece at positions start… may attend: its cached prefix and the rows up
    to itself (causal, aligned to the piece's last key)."""
    return np.arange(start + n)[None, :] <= start + np.arange(n)[:, None]


def key_bucket(longest: int, block: int, cap: int) -> int:
    """Keys a decode step attends over: the longest live sequence rounded up to a whole block, at most cap."""
    return min(cap, -(-max(1, longest) // block) * block)


def flash_decode_available(torch) -> bool:
    """Whether this torch's flash attention takes per-sequence key counts (seqused_k)."""
    op = getattr(torch.ops.aten, "_flash_attention_forward", None)
    return op is not None and "seqused_k" in str(op.default._schema)


def choose_decode_attention(asked: str, device, dtype, head_dim: int, group: int, paged: bool = False) -> str:
    """triton (split-key decode kernel) where Triton runs and the shape suits it, else flash (varlen,
    seqused_k), else sdpa (keys up to the longest live sequence): the first two read only each slot's own keys.
    A paged KV cache (engine_pages.py) is read by triton (its page table) or sdpa (keys gathered), not flash."""
    from subtool.runner.kernels import head_dim_fits, triton_available

    half = device.type == "cuda" and dtype in (torch.bfloat16, torch.float16)
    kernel_shape = head_dim_fits(head_dim) and group <= 16  # kernels/decode_attention.py's ROWS
    usable = {
        "triton": half and kernel_shape and triton_available(),
        "flash": half and flash_decode_available(torch) and not paged,
        "sdpa": True,
    }
    if asked == "auto":
        return next(name for name in ("triton", "flash", "sdpa") if usable[name])
    if not usable[asked]:
        if asked == "flash" and paged:
            raise ValueError("flash decode attention reads an unpaged KV cache only (kv_pages=None)")
        raise ValueError(
            f"{asked} decode attention needs a CUDA device, bf16/fp16"
            + (
                ", Triton, a power-of-two head_dim ≥ 16 and at most 16 query heads per kv head"
                if asked == "triton"
                else " and a torch whose flash attention takes seqused_k"
            )
        )
    return asked


def flash_decode(qg, k_cache, v_cache, cu_q, cu_k, width: int, used, scale: float):
    """Decode attention through flash attention's variable-length kernel over an unpaged cache [rows, kv, D] whose
    slot s starts at row s·width: queries qg [S, kv, group, D] as rows (slot, g) × kv heads, so the kernel reads
    each kv head's keys once for all its query heads; `used` [S] the keys each slot holds → [S, kv, group, D]."""
    s, n_kv, group, head_dim = qg.shape
    o = torch.ops.aten._flash_attention_forward(
        qg.transpose(1, 2).reshape(-1, n_kv, head_dim),
        k_cache,
        v_cache,
        cu_q[: s + 1],
        cu_k[: s + 1],
        group,
        width,
        0.0,
        False,
        False,
        scale=scale,
        seqused_k=used,
    )[0]
    return o.view(s, group, n_kv, head_dim).transpose(1, 2)


def chunk_attention(q, keys, values, dev: dict, masks, layout: dict, scale: float, flash: bool):
    """Causal attention of a prefill chunk's rows q [T, heads, D] over their pieces' keys [K, kv, D] (chunk_layout):
    flash attention's variable-length kernel (its causal mask is aligned to each piece's last key, so a row sees
    its prefix and the rows before it), else SDPA piece by piece with explicit masks (piece_mask)."""
    if flash:
        return torch.ops.aten._flash_attention_forward(
            q, keys, values, dev["cu_q"], dev["cu_k"], dev["max_q"], dev["max_k"], 0.0, True, False, scale=scale
        )[0]
    cu_q, cu_k = layout["cu_q"].tolist(), layout["cu_k"].tolist()
    out = []
    for p, mask in enumerate(masks):
        rows, cols = slice(cu_q[p], cu_q[p + 1]), slice(cu_k[p], cu_k[p + 1])
        o = torch.nn.functional.scaled_dot_product_attention(
            q[rows].transpose(0, 1)[None],
            keys[cols].transpose(0, 1)[None],
            values[cols].transpose(0, 1)[None],
            attn_mask=mask,
            scale=scale,
            enable_gqa=q.shape[1] != keys.shape[1],
        )
        out.append(o[0].transpose(0, 1))
    return torch.cat(out)


def reads_pages(asked: str, device, dtype, head_dim: int, group: int) -> bool:
    """Whether the decode attention that `asked` resolves to reads a paged KV cache fast (the Triton kernel,
    through its page table): where it does, the engine's cache is paged; flash asked for keeps it unpaged."""
    try:
        return choose_decode_attention(asked, device, dtype, head_dim, group, paged=True) == "triton"
    except ValueError:
        return False


def store_kv(k_cache, v_cache, at, k, v, fused: bool = False) -> None:
    """New keys and values [rows, kv, D] into one layer's caches [cache rows, kv, D] at cache rows `at`: e4m3 as
    they are in an fp8 cache (unit scale, saturating at ±448). `fused` (CUDA with Triton): one kernel for both
    (kernels/kv_write.py) instead of a clamp, a cast and a scatter each, where each row's keys and values are
    contiguous (the projection's views are; any other layout takes torch's way)."""
    if fused and len(k) and k[0].is_contiguous() and v[0].is_contiguous():
        from subtool.runner.kernels.kv_write import write_kv

        write_kv(k, v, k_cache, v_cache, at)
        return
    for cache, new in ((k_cache, k), (v_cache, v)):
        if cache.dtype == torch.float8_e4m3fn:
            new = new.clamp(-FP8_MAX, FP8_MAX)
        cache[at] = new.to(cache.dtype)
