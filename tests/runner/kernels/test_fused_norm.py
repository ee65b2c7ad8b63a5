"""The residual+LayerNorm kernel: the products' bias added in, a float32 copy for the residual stream, the e4m3
rows with their scales; on a CUDA GPU or through Triton's interpreter (support/triton_check.py)."""

from __future__ import annotations

from support.triton_check import needs_triton, run_kernel_check

CHECK = r"""
import sys, torch
from subtool.runner.kernels.fused_norm import add_layernorm
device = sys.argv[1]
torch.manual_seed(0)
rows, n = 37, 320                           # n not a power of two: the column mask is exercised
x = torch.randn(rows, n) * 3
res = torch.randn(rows, n)
xb = torch.randn(n)
w, b = torch.rand(n) + 0.5, torch.randn(n) * 0.1
ref = torch.nn.functional.layer_norm(x + xb.bfloat16().float() + res, (n,), w, b, 1e-12)   # the bias is bf16
low = torch.bfloat16
to = lambda t, dt=torch.float32: t.to(device=device, dtype=dt)
# a float32 product output and a float32 residual, written as bf16 for the next product and float32 for the residual
y, q, s, y32 = add_layernorm(to(x), to(res), to(w), to(b), 1e-12, quantize=True, x_bias=to(xb, low), dtype=low,
                             keep_fp32=True)
assert y.dtype == low and y32.dtype == torch.float32 and q.dtype == torch.float8_e4m3fn and s.shape == (rows, 1)
err32 = ((y32.cpu() - ref).norm() / ref.norm()).item()
err16 = ((y.float().cpu() - ref).norm() / ref.norm()).item()
errq = ((q.float().cpu() * s.cpu() - ref).norm() / ref.norm()).item()
print(err32, err16, errq)
assert err32 < 1e-5 and 1e-4 < err16 < 1e-2 and errq < (0.1 if device == "cpu" else 0.05)
# the plain form: bf16 in, bf16 out, no bias, no float32 copy
y, q, s, y32 = add_layernorm(to(x, low), to(res, low), to(w), to(b), 1e-12)
assert q is None and s is None and y32 is None and y.dtype == low
ref = torch.nn.functional.layer_norm(x.bfloat16().float() + res.bfloat16().float(), (n,), w, b, 1e-12)
assert ((y.float().cpu() - ref).norm() / ref.norm()).item() < 1e-2
"""


@needs_triton
def test_add_layernorm_kernel_bias_float32_copy_and_e4m3_rows():
    run_kernel_check(CHECK)
