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


HEAD = r"""
import sys, torch
from subtool.runner.kernels.fused_norm import add_layernorm
device = sys.argv[1]
torch.manual_seed(0)
tokens, n = 29, 320
x, res, xb = torch.randn(tokens, n) * 3, torch.randn(tokens, n), torch.randn(n)
w, b = torch.rand(n) + 0.5, torch.randn(n) * 0.1
hw, hb = torch.randn(2, n), torch.randn(2)
rows = torch.randperm(60)[:tokens].int()      # each token's output row, scattered; the other rows stay as they were
to = lambda t, dt=torch.float32: t.to(device=device, dtype=dt)
for keep in (False, True):
    out = torch.zeros(60, 2)
    out[rows.long()] = 0.0
    untouched = torch.ones(60, dtype=torch.bool)
    untouched[rows.long()] = False
    out[untouched] = 7.0
    dev_out = to(out)
    got = add_layernorm(to(x, torch.bfloat16), to(res, torch.bfloat16), to(w), to(b), 1e-12, x_bias=to(xb),
                        dtype=torch.bfloat16, keep_fp32=keep, head=(to(hw), to(hb), to(rows, torch.int32), dev_out))
    assert got == (None, None, None, None)
    y = torch.nn.functional.layer_norm(x.bfloat16().float() + xb + res.bfloat16().float(), (n,), w, b, 1e-12)
    y = y if keep else y.bfloat16().float()     # the head reads what the residual stream would hold
    want = out.clone()
    want[rows.long()] = y @ hw.T + hb
    err = ((dev_out.cpu() - want).norm() / want.norm()).item()
    print(keep, err)
    assert err < (1e-3 if keep else 2e-2), err
    assert (dev_out.cpu()[untouched] == 7.0).all()
"""


EMBED = r"""
import sys, torch
from subtool.runner.kernels.fused_norm import embed_layernorm
device = sys.argv[1]
torch.manual_seed(0)
tokens, n, vocab = 41, 320, 97
word, pos, types = torch.randn(vocab, n), torch.randn(50, n), torch.randn(2, n)
ids, positions = torch.randint(0, vocab, (tokens,)), torch.randint(0, 50, (tokens,))
segments = torch.randint(0, 2, (tokens,))
w, b = torch.rand(n) + 0.5, torch.randn(n) * 0.1
ref = torch.nn.functional.layer_norm(word[ids] + pos[positions] + types[segments], (n,), w, b, 1e-12)
to = lambda t, dt=None: t.to(device=device, dtype=dt or t.dtype)
idx = [to(t, torch.int32) for t in (ids, positions, segments)]
y, q, s, y32 = embed_layernorm(*idx, to(word), to(pos), to(types), to(w), to(b), 1e-12, quantize=True,
                               dtype=torch.bfloat16, keep_fp32=True)
assert y.dtype == torch.bfloat16 and y32.dtype == torch.float32 and s.shape == (tokens, 1)
err32 = ((y32.cpu() - ref).norm() / ref.norm()).item()
errq = ((q.float().cpu() * s.cpu() - ref).norm() / ref.norm()).item()
print(err32, errq)
assert err32 < 1e-5 and errq < (0.1 if device == "cpu" else 0.05)
# bf16 tables (the model's): the three rows are summed in float32, not rounded to bf16 pairwise
y, q, s, y32 = embed_layernorm(*idx, to(word, torch.bfloat16), to(pos, torch.bfloat16), to(types, torch.bfloat16),
                               to(w), to(b), 1e-12)
assert q is None and s is None and y32 is None and y.dtype == torch.bfloat16
low = lambda t: t.bfloat16().float()
ref = torch.nn.functional.layer_norm(low(word)[ids] + low(pos)[positions] + low(types)[segments], (n,), w, b, 1e-12)
assert ((y.float().cpu() - ref).norm() / ref.norm()).item() < 1e-2
"""


@needs_triton
def test_add_layernorm_kernel_bias_float32_copy_and_e4m3_rows():
    run_kernel_check(CHECK)


@needs_triton
def test_the_embedding_layernorm_gathers_its_three_rows():
    run_kernel_check(EMBED)


@needs_triton
def test_the_last_layernorm_writes_the_answer_logits_to_their_rows():
    run_kernel_check(HEAD)
