"""Static fp8 output scales from the weights alone: bounds of what a product that follows a LayerNorm can output.

Pure torch (no Triton): the fp8 GPU path (kernels/fp8_gemm.py, bert/packed_model.py) scales its e4m3 outputs
with them, and they are tested on any machine.
"""

from __future__ import annotations

import math


def linear_output_bound(weight, bias, ln_weight, ln_bias) -> float:
    """An upper bound of |W x + b| for every x a LayerNorm(ln_weight, ln_bias) can output.

    A LayerNorm output is ln_weight * z + ln_bias with |z|_2 <= sqrt(n), so by Cauchy-Schwarz
    |(W x)_j| <= sqrt(n) |W_j * ln_weight|_2 + |W_j . ln_bias|."""
    w = weight.float()
    n = w.shape[1]
    bound = (
        math.sqrt(n) * (w * ln_weight.float()[None, :]).norm(dim=1) + (w @ ln_bias.float()).abs() + bias.float().abs()
    )
    return float(bound.max()) * (1 + 1e-3)  # float32 rounding of the bound itself


def gelu_output_bound(weight, bias, ln_weight, ln_bias) -> float:
    """An upper bound of |GELU(W x + b)| over LayerNorm outputs x: GELU never grows a magnitude beyond
    max(|h|, 0.17)."""
    return max(linear_output_bound(weight, bias, ln_weight, ln_bias), 0.17)
