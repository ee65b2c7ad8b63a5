"""The split-key decode attention kernel against plain softmax attention, per sequence and query head.

Runs on a CUDA GPU, or on the CPU through Triton's interpreter (TRITON_INTERPRET=1, in a child process since
Triton reads it at import); skipped where Triton is not installed (the CPU-only torch wheels don't bring it)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

CHECK = r'''
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
'''


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs Triton")
def test_split_key_decode_attention_matches_softmax_attention():
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    env = dict(os.environ)
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"
    res = subprocess.run([sys.executable, "-c", CHECK, device], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
