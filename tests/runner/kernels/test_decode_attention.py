"""The split-key decode attention kernel against plain softmax attention, per sequence and query head, on a CUDA
GPU or through Triton's interpreter (support/triton_check.py)."""

from __future__ import annotations

from support.triton_check import needs_triton, run_kernel_check

CHECK = r"""
import math, sys, torch
from subtool.runner.kernels.decode_attention import DecodeAttention
device = sys.argv[1]
dtype = torch.float32 if device == "cpu" else torch.bfloat16
torch.manual_seed(0)
S, H, KV, D, L = 5, 8, 2, 64, 300
q = torch.randn(S, H, D, device=device, dtype=dtype)
kc = torch.randn(S, L, KV, D, device=device, dtype=dtype)
vc = torch.randn(S, L, KV, D, device=device, dtype=dtype)
lens = torch.tensor([1, 63, 64, 200, 300], dtype=torch.int32, device=device)
# the default tuning and others (warps and stages only change the compiled code, so the GPU run checks them)
for tuning in ({}, dict(split=128, block_n=64), dict(split=64, block_n=32, warps=8, stages=2),
               dict(split=512, block_n=128, warps=4, stages=3), dict(split=64, block_n=32, ordered=True),
               dict(split=64, block_n=32, prefetch=True), dict(split=128, block_n=32, v_zeroed=True),
               dict(split=64, block_n=32, registers=128)):
    att = DecodeAttention(S, H, KV, D, L, device, **tuning)
    out = att(q, kc, vc, lens, 1 / math.sqrt(D)).float()
    worst = 0.0
    for s in range(S):
        n = int(lens[s])
        for h in range(H):
            k, v = kc[s, :n, h // (H // KV)].float(), vc[s, :n, h // (H // KV)].float()
            ref = torch.softmax(q[s, h].float() @ k.T / math.sqrt(D), -1) @ v
            worst = max(worst, (out[s, h] - ref).abs().max().item())
    print(tuning, worst)
    assert worst < (1e-4 if device == "cpu" else 3e-2), (tuning, worst)
# a sequence with no keys (a slot the step does not use) gets zeros, never NaN; the others are untouched
att = DecodeAttention(S, H, KV, D, L, device, split=64, block_n=32)
out = att(q, kc, vc, torch.tensor([0, 63, 0, 200, 300], dtype=torch.int32, device=device), 1 / math.sqrt(D))
assert torch.isfinite(out).all() and not out[0].any() and not out[2].any()
assert out[1].float().abs().sum() > 0
"""


@needs_triton
def test_split_key_decode_attention_matches_softmax_attention():
    run_kernel_check(CHECK)


MERGE = r"""
import math, sys, torch
from subtool.runner.kernels.decode_attention import DecodeAttention
device = sys.argv[1]
dtype = torch.float32 if device == "cpu" else torch.bfloat16
torch.manual_seed(3)
S, D, L = 4, 32, 200
lens = torch.tensor([5, 64, 65, 200], dtype=torch.int32, device=device)
# heads the merge takes several programs a sequence for (24: three of 8 heads, 12: three of 4), across splits
for H, KV in ((24, 2), (12, 3)):
    q = torch.randn(S, H, D, device=device, dtype=dtype)
    kc = torch.randn(S, L, KV, D, device=device, dtype=dtype)
    vc = torch.randn(S, L, KV, D, device=device, dtype=dtype)
    out = DecodeAttention(S, H, KV, D, L, device, split=64, block_n=32)(q, kc, vc, lens, 1 / math.sqrt(D)).float()
    for s in range(S):
        n = int(lens[s])
        for h in range(H):
            k, v = kc[s, :n, h // (H // KV)].float(), vc[s, :n, h // (H // KV)].float()
            ref = torch.softmax(q[s, h].float() @ k.T / math.sqrt(D), -1) @ v
            assert (out[s, h] - ref).abs().max().item() < (1e-4 if device == "cpu" else 3e-2), (H, s, h)
"""


@needs_triton
def test_the_merge_covers_every_head_when_a_sequence_takes_several_of_its_programs():
    run_kernel_check(MERGE)


PAGED = r"""
import math, sys, torch
from subtool.runner.kernels.decode_attention import DecodeAttention
device = sys.argv[1]
dtype = torch.float32 if device == "cpu" else torch.bfloat16
torch.manual_seed(1)
S, H, KV, D, P, per = 4, 8, 2, 32, 16, 6        # pages of 16 tokens, up to 96 positions per sequence
pages = 30
pool_k = torch.randn(pages + 1, P, KV, D, device=device, dtype=dtype)
pool_v = torch.randn(pages + 1, P, KV, D, device=device, dtype=dtype)
# each sequence's pages scattered over the pool, unmapped ones on the spare page (index pages)
order = torch.randperm(pages, generator=torch.Generator().manual_seed(2))
lens = torch.tensor([1, 16, 17, 90], dtype=torch.int32, device=device)
table = torch.full((S + 2, per), pages, dtype=torch.int64)  # rows past S: other slots, never read
taken = 0
for s in range(S):
    n = -(-int(lens[s]) // P)
    table[s, :n] = order[taken : taken + n]
    taken += n
table = table.to(device)
q = torch.randn(S, H, D, device=device, dtype=dtype)
# page numbers loaded per block, or once per split before its loop (table_ahead: 2 and 4 pages a split; 90 keys
# cross splits, so the merge reads splits whose pages were loaded ahead)
# ordered: programs launched by the keys their (sequence, split) holds, most first
for tuning in (dict(split=32), dict(split=32, table_ahead=True), dict(split=64, table_ahead=True),
               dict(split=32, table_ahead=True, ordered=True), dict(split=64, prefetch=True),
               dict(split=64, table_ahead=True, prefetch=True)):
    att = DecodeAttention(S, H, KV, D, per * P, device, block_n=16, **tuning)
    out = att(q, pool_k, pool_v, lens, 1 / math.sqrt(D), table=table).float()
    worst = 0.0
    for s in range(S):
        n = int(lens[s])
        rows = [int(table[s, p // P]) * P + p % P for p in range(n)]
        k_all, v_all = pool_k.reshape(-1, KV, D)[rows], pool_v.reshape(-1, KV, D)[rows]
        for h in range(H):
            k, v = k_all[:, h // (H // KV)].float(), v_all[:, h // (H // KV)].float()
            ref = torch.softmax(q[s, h].float() @ k.T / math.sqrt(D), -1) @ v
            worst = max(worst, (out[s, h] - ref).abs().max().item())
    print(tuning, worst)
    assert worst < (1e-4 if device == "cpu" else 3e-2), (tuning, worst)
"""


@needs_triton
def test_paged_decode_attention_reads_each_sequence_through_its_page_table():
    run_kernel_check(PAGED)


@needs_triton
def test_default_split_is_long_only_when_sequences_alone_fill_the_gpu():
    from subtool.runner.kernels.decode_attention import WIDE_PROGRAMS, DecodeAttention, default_split

    assert default_split(512, 8) == 1024  # llama2-70b's 512 slots: one program per (sequence, kv head) is plenty
    assert default_split(16, 8) == 256  # a few sequences: split their keys over more programs
    assert default_split(WIDE_PROGRAMS // 8, 8) == 1024 and default_split(WIDE_PROGRAMS // 8 - 1, 8) == 256
    adaptive = DecodeAttention(512, 64, 8, 128, 2047, "cpu")
    assert adaptive.split is None and adaptive.splits == 8  # buffers for the short splits a small call takes
    assert DecodeAttention(4, 64, 8, 128, 2047, "cpu", split=1024).splits == 2


@needs_triton
def test_the_launch_order_is_every_sequence_and_split_by_the_keys_it_holds_most_first():
    import torch

    from subtool.runner.kernels.decode_attention import DecodeAttention

    att = DecodeAttention(4, 8, 2, 16, 300, "cpu", split=128, ordered=True)
    assert att.splits == 4
    lengths = torch.tensor([1, 300, 0, 129], dtype=torch.int32)
    order = att.order(lengths).tolist()
    assert sorted(order) == list(range(16))  # every (sequence, split) once: sequence · 4 + split
    held = {s * 4 + k: max(0, min(128, int(lengths[s]) - 128 * k)) for s in range(4) for k in range(4)}
    assert [held[i] for i in order] == sorted(held.values(), reverse=True)
    assert order[:3] == [4, 5, 12]  # 128, 128, 128 keys, ties in index order; then sequence 1's last 44
    assert order[3] == 6


WIDE_AND_NARROW = r"""
import math, sys, torch
from subtool.runner.kernels import decode_attention
from subtool.runner.kernels.decode_attention import DecodeAttention
device = sys.argv[1]
dtype = torch.float32 if device == "cpu" else torch.bfloat16
torch.manual_seed(4)
# one instance, as the engine holds it, called over every slot (long splits) and over its first rows (short
# splits, as a decode graph of a few rows): both match softmax attention, the long sequences crossing splits.
# The threshold is lowered so that 4 sequences count as many (the interpreter runs every program in Python)
decode_attention.WIDE_PROGRAMS = 16
S, H, KV, D, L = 4, 8, 4, 16, 1100
q = torch.randn(S, H, D, device=device, dtype=dtype)
kc = torch.randn(S, L, KV, D, device=device, dtype=dtype)
vc = torch.randn(S, L, KV, D, device=device, dtype=dtype)
lens = torch.tensor([1090, 300, 7, 1024], dtype=torch.int32, device=device)  # past 1,024 / 256 keys, one block
att = DecodeAttention(S, H, KV, D, L, device, block_n=16)
ordered = DecodeAttention(S, H, KV, D, L, device, block_n=16, ordered=True)
for att, rows, split in ((att, S, 1024), (att, 3, 256), (ordered, S, 1024), (ordered, 3, 256)):
    assert decode_attention.default_split(rows, KV) == split
    out = att(q[:rows], kc[:rows], vc[:rows], lens[:rows], 1 / math.sqrt(D)).float()
    worst = 0.0
    for s in range(rows):
        n = int(lens[s])
        k, v = kc[s, :n].float().repeat_interleave(H // KV, 1), vc[s, :n].float().repeat_interleave(H // KV, 1)
        ref = torch.softmax(torch.einsum("hd,nhd->hn", q[s].float(), k) / math.sqrt(D), -1)
        worst = max(worst, (out[s] - torch.einsum("hn,nhd->hd", ref, v)).abs().max().item())
    print(rows, worst)
    assert worst < (1e-4 if device == "cpu" else 3e-2), (rows, worst)
"""


@needs_triton
def test_one_instance_takes_long_splits_over_many_rows_and_short_ones_over_few():
    run_kernel_check(WIDE_AND_NARROW)


FP8_DOTS = r"""
import math, sys, torch
from subtool.runner.kernels.decode_attention import DecodeAttention
device = sys.argv[1]
dtype = torch.float32 if device == "cpu" else torch.bfloat16
torch.manual_seed(3)
S, H, KV, D, L = 5, 8, 2, 64, 300
q = torch.randn(S, H, D, device=device, dtype=dtype)
kc = torch.randn(S, L, KV, D, device=device).to(torch.float8_e4m3fn)
vc = torch.randn(S, L, KV, D, device=device).to(torch.float8_e4m3fn)
lens = torch.tensor([1, 63, 64, 200, 300], dtype=torch.int32, device=device)
# both products on e4m3 against the widening path over the same e4m3 cache: within fp8's rounding of the queries
# and the softmax weights (2-2.5 % of the output's norm through the interpreter), in one split and across splits
for tuning in ({}, dict(split=64, block_n=32)):
    widened = DecodeAttention(S, H, KV, D, L, device, half=False, **tuning)(q, kc, vc, lens, 1 / math.sqrt(D)).float()
    out = DecodeAttention(S, H, KV, D, L, device, fp8_dots=True, **tuning)(q, kc, vc, lens, 1 / math.sqrt(D))
    rel = ((out.float() - widened).norm() / widened.norm()).item()
    print(tuning, rel)
    assert 0 < rel < 0.05, (tuning, rel)
# half (the default over an fp8 cache): both products in fp16, the softmax scale folded into the queries, against
# softmax attention in float32 over the same e4m3 values: within fp16's rounding (0.01 % of the norm through the
# interpreter), and on a GPU no further off than the products in the queries' bf16; a 16-bit cache keeps its dtype
def reference(q, kc, vc, lens):
    out = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    for s in range(q.shape[0]):
        n = int(lens[s])
        for h in range(H):
            k, v = kc[s, :n, h // (H // KV)].float(), vc[s, :n, h // (H // KV)].float()
            out[s, h] = torch.softmax(q[s, h].float() @ k.T / math.sqrt(D), -1) @ v
    return out
exact = reference(q, kc, vc, lens)
rel = lambda out: ((out.float() - exact).norm() / exact.norm()).item()
for tuning in ({}, dict(split=64, block_n=32), dict(split=64, block_n=32, v_zeroed=True)):
    half = rel(DecodeAttention(S, H, KV, D, L, device, **tuning)(q, kc, vc, lens, 1 / math.sqrt(D)))
    wide = rel(DecodeAttention(S, H, KV, D, L, device, half=False, **tuning)(q, kc, vc, lens, 1 / math.sqrt(D)))
    print("half", tuning, half, "queries' dtype", wide)
    assert half < 5e-3 and (device == "cpu" or half <= wide), (tuning, half, wide)
    wide_cache = kc.to(dtype), vc.to(dtype)
    same = DecodeAttention(S, H, KV, D, L, device, half=False, **tuning)(q, *wide_cache, lens, 1 / math.sqrt(D))
    assert torch.equal(DecodeAttention(S, H, KV, D, L, device, **tuning)(q, *wide_cache, lens, 1 / math.sqrt(D)), same)
# a sequence with no keys gets zeros; a 16-bit cache is refused, not read as e4m3 codes
att = DecodeAttention(S, H, KV, D, L, device, split=64, block_n=32, fp8_dots=True)
out = att(q, kc, vc, torch.tensor([0, 63, 0, 200, 300], dtype=torch.int32, device=device), 1 / math.sqrt(D))
assert torch.isfinite(out).all() and not out[0].any() and not out[2].any() and out[1].float().abs().sum() > 0
try:
    att(q, kc.to(dtype), vc.to(dtype), lens, 1 / math.sqrt(D))
except ValueError as e:
    assert "e4m3" in str(e), e
else:
    raise AssertionError("a 16-bit cache was read as e4m3")
"""


@needs_triton
def test_fp8_dots_stay_within_fp8_rounding_of_the_widening_path():
    run_kernel_check(FP8_DOTS)


@needs_triton
def test_registers_are_capped_by_default_and_the_cap_can_be_lifted(monkeypatch):
    from subtool.runner.kernels import decode_attention as da

    assert da.register_cap_supported()  # the Triton the tests run with takes maxnreg
    assert da.DecodeAttention(4, 64, 8, 128, 2047, "cpu").launch["maxnreg"] == da.REGISTERS == 128
    for lifted in (None, 0):
        assert "maxnreg" not in da.DecodeAttention(4, 64, 8, 128, 2047, "cpu", registers=lifted).launch
    # a Triton whose launcher would refuse the keyword: the cap is left off rather than the launch failing
    monkeypatch.setattr(da, "register_cap_supported", lambda: False)
    assert "maxnreg" not in da.DecodeAttention(4, 64, 8, 128, 2047, "cpu").launch
