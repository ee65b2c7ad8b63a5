"""The packed (variable-length) attention kernel against softmax attention, sequence by sequence, on a CUDA GPU
or through Triton's interpreter (support/triton_check.py)."""

from __future__ import annotations

from support.triton_check import needs_triton, run_kernel_check

CHECK = r"""
import math, sys, torch
from subtool.runner.kernels.packed_attention import packed_attention
device = sys.argv[1]
dtype = torch.float32 if device == "cpu" else torch.bfloat16
torch.manual_seed(0)
H, D = 4, 64
lengths = [1, 63, 64, 65, 130, 7]          # around the 64-token tiles, and a sequence of one token
n = sum(lengths)
capacity = 8                               # two unused (empty) sequences at the end, as a graph's shape has
tokens = n + 5                             # and padding tokens past the last sequence
cu = torch.tensor([0] + [sum(lengths[:i + 1]) for i in range(len(lengths))] + [n] * (capacity - len(lengths)),
                  dtype=torch.int32, device=device)
qkv = torch.randn(tokens, 3, H, D, device=device, dtype=dtype) * 2
refs = []
for s in range(len(lengths)):
    a, b = int(cu[s]), int(cu[s + 1])
    q, k, v = (qkv[a:b, i].float().transpose(0, 1) for i in range(3))          # [H, L, D]
    refs.append(torch.softmax(q @ k.transpose(1, 2) / math.sqrt(D), -1) @ v)
# the default tiles, and others bench/bert_gpu.py tries (queries and keys per tile; warps and stages change only
# the compiled code, so the GPU run checks them)
for tiles in ({}, dict(block_m=128, block_n=64, num_warps=8), dict(block_m=64, block_n=128),
              dict(block_m=64, block_n=32, num_stages=2)):
    out = packed_attention(qkv, cu, max_len=160, **tiles).float()
    worst = 0.0
    for s in range(len(lengths)):
        a, b = int(cu[s]), int(cu[s + 1])
        worst = max(worst, (out[a:b].view(b - a, H, D).transpose(0, 1) - refs[s]).abs().max().item())
    print(tiles, worst)
    assert worst < (1e-4 if device == "cpu" else 3e-2), (tiles, worst)
out = packed_attention(qkv, cu, max_len=160).float()
# e4m3 output at a static scale: |attention| <= max |v|, so that bound keeps every value in range
bound = qkv[:n, 2].float().abs().max().item()
q8 = packed_attention(qkv, cu, max_len=160, out_scale=bound / 448)
assert q8.dtype == torch.float8_e4m3fn
deq = q8[:n].float() * (bound / 448)
rel = ((deq - out[:n]).norm() / out[:n].norm()).item()
print(rel)
assert rel < (0.1 if device == "cpu" else 0.04), rel       # the interpreter's e4m3 conversion truncates
"""


@needs_triton
def test_packed_attention_matches_softmax_attention_per_sequence():
    run_kernel_check(CHECK)


@needs_triton
def test_a_scale_that_is_not_positive_is_refused_before_any_launch():
    """The kernel scales each row's maximum instead of every score, which is the same only for a positive scale."""
    import pytest
    import torch

    from subtool.runner.kernels.packed_attention import packed_attention

    qkv = torch.zeros(4, 3, 2, 16)
    cu = torch.tensor([0, 4], dtype=torch.int32)
    for scale in (0.0, -0.125, float("nan")):
        with pytest.raises(ValueError, match="positive softmax scale"):
            packed_attention(qkv, cu, max_len=4, scale=scale)
