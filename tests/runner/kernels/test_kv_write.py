"""The KV write kernel stores what eager torch's `cache[at] = new` stores (e4m3 clamped to ±448 in an fp8 cache,
NaN kept), at the rows `at` names and nowhere else, on a CUDA GPU or through Triton's interpreter
(support/triton_check.py); and it refuses shapes it would write out of place."""

from __future__ import annotations

from support.triton_check import needs_triton, run_kernel_check

CHECK = r"""
import sys, torch
from subtool.runner.kernels.kv_write import write_kv
device = sys.argv[1]
torch.manual_seed(0)
S, KV, D, ROWS = 37, 8, 128, 200
for cache_dtype, new_dtype in ((torch.float8_e4m3fn, torch.bfloat16), (torch.bfloat16, torch.bfloat16),
                               (torch.float8_e4m3fn, torch.float32), (torch.float32, torch.float32)):
    # keys and values as a step's projection gives them: views of a wider row (q, k and v side by side)
    qkv = torch.randn(S, 1, 3 * KV, D, device=device) * 300
    if device == "cpu":  # the interpreter's e4m3 rounding is not the GPU's (125.5 becomes 64): values e4m3 holds
        qkv = qkv.clamp(-448, 448).to(torch.float8_e4m3fn).float()  # exactly, so only the clamp and the place count
    qkv = qkv.to(new_dtype)
    qkv[0, 0, KV, :4] = torch.tensor([1e4, -1e4, 448.0, float("nan")])  # past e4m3's range both ways, and a NaN
    k, v = qkv[:, 0, KV:2 * KV], qkv[:, 0, 2 * KV:]
    at = torch.randperm(ROWS, device=device)[:S]                      # any rows, in any order
    k_cache = torch.zeros(ROWS, KV, D, device=device, dtype=cache_dtype)
    v_cache = torch.zeros_like(k_cache)
    write_kv(k, v, k_cache, v_cache, at)
    ref_k, ref_v = torch.zeros_like(k_cache), torch.zeros_like(v_cache)
    for cache, new in ((ref_k, k), (ref_v, v)):
        if cache_dtype == torch.float8_e4m3fn:
            new = new.clamp(-448.0, 448.0)
        cache[at] = new.to(cache_dtype)
    untouched = torch.ones(ROWS, dtype=torch.bool, device=device)
    untouched[at] = False
    for got, want in ((k_cache, ref_k), (v_cache, ref_v)):
        g, w = got.float(), want.float()
        assert (g[untouched] == 0).all(), "a row `at` does not name was written"
        if device == "cuda" or cache_dtype != torch.float8_e4m3fn:
            assert torch.equal(g.isnan(), w.isnan()), "NaN not kept where torch keeps it"
        else:  # the interpreter also turns NaN into a number: the NaN is checked on the GPU
            g[w.isnan()] = float("nan")
        assert torch.equal(g.nan_to_num(), w.nan_to_num()), (cache_dtype, new_dtype, (g - w).abs().max().item())
    if cache_dtype == torch.float8_e4m3fn:
        assert k_cache.float().nan_to_num().abs().max() == 448  # the values past the range, saturated
    print(cache_dtype, new_dtype, "ok")
# a row outside the cache (the engine's page table never names one) is not written: nothing past the cache, which
# sits between two guards here, is touched
guarded = torch.zeros(3 * ROWS, KV, D, device=device)
k_cache, v_cache = guarded[ROWS:2 * ROWS], torch.zeros(ROWS, KV, D, device=device)
new = torch.ones(3, KV, D, device=device)
write_kv(new, new.clone(), k_cache, v_cache, torch.tensor([5, ROWS, -1], device=device))
assert (guarded[:ROWS] == 0).all() and (guarded[2 * ROWS:] == 0).all(), "written outside the cache"
assert (k_cache[5] == 1).all() and k_cache.sum() == KV * D and v_cache.sum() == KV * D
"""


@needs_triton
def test_the_kernel_stores_what_torch_stores_at_the_named_rows():
    run_kernel_check(CHECK)


@needs_triton
def test_shapes_that_do_not_fit_are_refused_before_any_launch():
    import pytest
    import torch

    from subtool.runner.kernels.kv_write import write_kv

    k = torch.zeros(4, 2, 16)
    cache = torch.zeros(10, 2, 16)
    at = torch.arange(4)
    with pytest.raises(ValueError, match="do not fit"):
        write_kv(k, torch.zeros(4, 2, 8), cache, cache.clone(), at)
    with pytest.raises(ValueError, match="do not fit"):
        write_kv(k, k.clone(), torch.zeros(10, 4, 16), torch.zeros(10, 4, 16), at)
    with pytest.raises(ValueError, match="one cache row a row"):
        write_kv(k, k.clone(), cache, cache.clone(), torch.arange(3))
    with pytest.raises(ValueError, match="share a dtype"):
        write_kv(k, k.clone(), cache, cache.to(torch.float16), at)
    with pytest.raises(ValueError, match="contiguous"):
        write_kv(torch.zeros(4, 16, 2).transpose(1, 2), k.clone(), cache, cache.clone(), at)
