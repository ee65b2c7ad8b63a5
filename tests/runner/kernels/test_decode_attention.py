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
att = DecodeAttention(S, H, KV, D, L, device, split=128, block_n=64)
out = att(q, kc, vc, lens, 1 / math.sqrt(D)).float()
worst = 0.0
for s in range(S):
    n = int(lens[s])
    for h in range(H):
        k, v = kc[s, :n, h // (H // KV)].float(), vc[s, :n, h // (H // KV)].float()
        ref = torch.softmax(q[s, h].float() @ k.T / math.sqrt(D), -1) @ v
        worst = max(worst, (out[s, h] - ref).abs().max().item())
print(worst)
assert worst < (1e-4 if device == "cpu" else 3e-2), worst
"""


@needs_triton
def test_split_key_decode_attention_matches_softmax_attention():
    run_kernel_check(CHECK)
