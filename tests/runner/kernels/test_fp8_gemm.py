"""The fused fp8 feed-forward product (bias + GELU + e4m3 output in the epilogue) and its static output scale.

The kernel runs on a CUDA GPU with fp8 (Ada/Hopper), or through Triton's interpreter (support/triton_check.py),
whose float→e4m3 conversion does not round to nearest, so its tolerance is wider than the GPU's."""

from __future__ import annotations

import math

import pytest
from support.triton_check import needs_triton, run_kernel_check

CHECK = r"""
import sys, torch
from subtool.runner.kernels.fp8_gemm import fp8_gelu_linear, gelu_output_bound
device = sys.argv[1]
torch.manual_seed(0)
M, K, N = 70, 256, 320                      # M and N not multiples of the tiles: the masks are exercised
ln_w, ln_b = torch.rand(K) + 0.5, torch.randn(K) * 0.1
x = torch.nn.functional.layer_norm(torch.randn(M, K), (K,), ln_w, ln_b)
w = torch.randn(N, K) * 0.05
b = (torch.randn(N) * 0.1).bfloat16()
xs = x.abs().amax(1, keepdim=True) / 448
xq = (x / xs).to(torch.float8_e4m3fn)
ws = w.abs().amax(1) / 448
wq = (w / ws[:, None]).to(torch.float8_e4m3fn)
scale = gelu_output_bound(w, b, ln_w, ln_b) / 448
h = (xq.float() * xs) @ (wq.float() * ws[:, None]).T + b.float()
ref = h * torch.sigmoid(1.5957691216057308 * (h + 0.044715 * h ** 3))
kw = dict(block_m=32, block_n=64, block_k=64, num_warps=4, num_stages=2) if device == "cpu" else {}
out = fp8_gelu_linear(xq.to(device), xs.to(device), wq.to(device), ws[None, :].contiguous().to(device),
                      b.to(device), scale, **kw)
assert out.dtype == torch.float8_e4m3fn and out.shape == (M, N)
err = ((out.float().cpu() * scale - ref).norm() / ref.norm()).item()
print(err)
assert err < (0.1 if device == "cpu" else 0.04), err
"""


@needs_triton
def test_fused_fp8_feed_forward_matches_torch():
    run_kernel_check(CHECK, min_capability=(8, 9))


def test_static_gelu_scale_bounds_every_layernorm_output_and_is_tight():
    torch = pytest.importorskip("torch")
    # pure torch: runs without Triton (the bound lives in kernels/fp8_scale.py, not the Triton module)
    from subtool.runner.kernels.fp8_scale import gelu_output_bound

    g = torch.Generator().manual_seed(1)
    n, out = 128, 64
    ln_w, ln_b = torch.randn(n, generator=g), torch.randn(n, generator=g) * 0.3
    w, b = torch.randn(out, n, generator=g) * 0.1, torch.randn(out, generator=g)
    bound = gelu_output_bound(w, b, ln_w, ln_b)
    z = torch.nn.functional.layer_norm(torch.randn(4096, n, generator=g) * 3, (n,))  # |z|_2 = sqrt(n)
    seen = torch.nn.functional.gelu(torch.nn.functional.layer_norm(z, (n,), ln_w, ln_b) @ w.T + b).abs().max()
    assert seen <= bound
    # the worst case: z along the heaviest row, signs matching the bias terms
    j = int(((w * ln_w).norm(dim=1) * math.sqrt(n) + (w @ ln_b).abs() + b.abs()).argmax())
    sign = 1.0 if float(w[j] @ ln_b + b[j]) >= 0 else -1.0
    z = sign * math.sqrt(n) * (w[j] * ln_w) / (w[j] * ln_w).norm()
    worst = float((w[j] @ (ln_w * z + ln_b) + b[j]).abs())
    assert worst <= bound <= worst * 1.01
