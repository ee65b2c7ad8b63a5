"""Every Triton kernel compiles for Hopper (sm_90) at the signatures its launches give it, on a machine without a GPU.

The other kernel tests run on the CPU through Triton's interpreter, which runs what the compiler refuses:
kernels/kv_write.py held a float global and an enum in a variable, passed there, and failed on its first GPU. And
fp8_gemm.py's persistent loop is compiled-only (the interpreter takes its other branch). Triton's wheel ships
ptxas, so each kernel here goes to a cubin (bench/sass_reader.compile_for, the SASS tools' compile), at the shapes
the engines run: llama2-70b's decode and BERT-large's.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("triton") is None:
    pytest.skip("needs Triton", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

from sass_reader import compile_for  # noqa: E402

HOPPER = 90


def _decode_split(tuning: dict):
    from decode_attention_sass import compile_split

    return compile_split(tuning, HOPPER)


def _decode_merge():
    from subtool.runner.kernels import decode_attention as da

    constants = {"HEADS": 64, "MERGE_HEADS": da.MERGE_HEADS, "D": 128, "SPLITS": 2, "SPLIT": 1024}
    pointers = {"O_PART": "*fp32", "LSE_PART": "*fp32", "OUT": "*bf16", "LENS": "*i32"}
    return compile_for(da._merge_kernel, constants, pointers, (), {"num_warps": 4}, HOPPER)


def _kv_write(fp8: bool):
    from subtool.runner.kernels import kv_write

    cache = "*fp8e4nv" if fp8 else "*bf16"
    pointers = {"K": "*bf16", "V": "*bf16", "KC": cache, "VC": cache, "AT": "*i64"}
    constants = {"WIDTH": 1024, "BLOCK": 1024, "FP8": fp8}  # 8 kv heads of 128
    return compile_for(kv_write._kv_write_kernel, constants, pointers, (), {"num_warps": 4}, HOPPER)


def _packed_attention(quant: bool):
    from packed_attention_sass import compile_packed

    kernel, _ = compile_packed({}, HOPPER, "bf16", quant)
    return kernel


def _fp8_gelu_gemm(bm: int | None = None, bn: int | None = None, bk: int | None = None, warps=None, stages=None):
    """The persistent fp8 GELU product at these tiles (None: its defaults)."""
    from fp8_gemm_sass import compile_gelu_gemm

    given = {"block_m": bm, "block_n": bn, "block_k": bk, "num_warps": warps, "num_stages": stages}
    return compile_gelu_gemm({k: v for k, v in given.items() if v is not None}, HOPPER)[0]


def _add_layernorm(quant: bool, keep32: bool, head: bool = False):
    from subtool.runner.kernels import fused_norm

    pointers = {"X": "*bf16", "R": "*bf16", "BIAS": "*bf16", "W": "*bf16", "B": "*bf16", "Y": "*bf16"}
    pointers.update(Y32="*fp32", Q="*fp8e4nv", S="*fp32")
    pointers.update(HEAD_W="*fp32", HEAD_B="*fp32", HEAD_ROWS="*i32", HEAD_OUT="*fp32")  # the answer head
    constants = {"HAS_RES": True, "HAS_BIAS": True, "KEEP32": keep32, "QUANT": quant, "HEAD": head, "BLOCK": 1024}
    return compile_for(fused_norm._add_layernorm_kernel, constants, pointers, ("eps",), {"num_warps": 4}, HOPPER)


def _embed_layernorm(quant: bool, keep32: bool):
    from subtool.runner.kernels import fused_norm

    pointers = {"IDS": "*i32", "POSITIONS": "*i32", "SEGMENTS": "*i32", "WORD": "*bf16", "POS": "*bf16"}
    pointers.update(TYPE="*bf16", W="*fp32", B="*fp32", Y="*bf16", Y32="*fp32", Q="*fp8e4nv", S="*fp32")
    constants = {"KEEP32": keep32, "QUANT": quant, "BLOCK": 1024}
    return compile_for(fused_norm._embed_layernorm_kernel, constants, pointers, ("eps",), {"num_warps": 4}, HOPPER)


def _rowwise_fp8(gelu: bool):
    from subtool.runner.kernels import fused_norm

    pointers = {"X": "*bf16", "BIAS": "*bf16", "Q": "*fp8e4nv", "S": "*fp32"}
    constants = {"HAS_BIAS": True, "GELU": gelu, "BLOCK": 4096}
    return compile_for(fused_norm._rowwise_fp8_kernel, constants, pointers, (), {"num_warps": 8}, HOPPER)


def _silu_fp8(one_pass: bool):
    from subtool.runner.kernels import silu_fp8

    pointers = {"GU": "*bf16", "Q": "*fp8e4nv", "S": "*fp32"}
    constants = {"BLOCK": 4096 if one_pass else 1024, "ONE_PASS": one_pass}  # llama2-70b: 28,672 columns
    return compile_for(silu_fp8._silu_mul_fp8_kernel, constants, pointers, (), {"num_warps": 8}, HOPPER)


KERNELS = {
    "decode split (defaults)": lambda: _decode_split({}),
    "decode split (bf16 products)": lambda: _decode_split({"half": False}),
    "decode merge": _decode_merge,
    "kv write (fp8 cache)": lambda: _kv_write(True),
    "kv write (bf16 cache)": lambda: _kv_write(False),
    "packed attention (e4m3 out)": lambda: _packed_attention(True),
    "packed attention (bf16 out)": lambda: _packed_attention(False),
    "fp8 GELU GEMM (persistent, its defaults)": _fp8_gelu_gemm,
    "fp8 GELU GEMM (128x128x64, 4 warps, 4 stages)": lambda: _fp8_gelu_gemm(128, 128, 64, 4, 4),
    "fp8 GELU GEMM (128x256x128, 8 warps, 3 stages)": lambda: _fp8_gelu_gemm(128, 256, 128, 8, 3),
    "fp8 GELU GEMM (64x256x128, 4 warps, 2 stages)": lambda: _fp8_gelu_gemm(64, 256, 128, 4, 2),
    "add+LayerNorm (e4m3 rows)": lambda: _add_layernorm(True, False),
    "add+LayerNorm (float32 copy)": lambda: _add_layernorm(False, True),
    "add+LayerNorm (answer head)": lambda: _add_layernorm(False, False, head=True),
    "add+LayerNorm (answer head from a float32 residual)": lambda: _add_layernorm(False, True, head=True),
    "embedding+LayerNorm (e4m3 rows)": lambda: _embed_layernorm(True, False),
    "embedding+LayerNorm (float32 copy)": lambda: _embed_layernorm(False, True),
    "row-wise e4m3 (GELU)": lambda: _rowwise_fp8(True),
    "SiLU·up e4m3 (one pass)": lambda: _silu_fp8(True),
    "SiLU·up e4m3 (two passes)": lambda: _silu_fp8(False),
}


@pytest.mark.parametrize("name", list(KERNELS))
def test_the_kernel_compiles_to_hopper_machine_code(name):
    kernel = KERNELS[name]()
    assert kernel.asm["cubin"][:4] == b"\x7fELF"  # ptxas made a cubin


def test_the_gelu_products_default_tiles_fit_as_many_programs_a_multiprocessor_as_it_launches(tmp_path):
    """fp8_gelu_linear launches PER_SM persistent programs a multiprocessor; past what fits (Hopper: 64K registers
    and 227 KB of shared memory a multiprocessor), the extra ones only queue."""
    from sass_reader import loop_mix

    from subtool.runner.kernels import fp8_gemm as g

    kernel = _fp8_gelu_gemm()
    registers = -(-loop_mix(kernel.asm["cubin"], tmp_path)["registers"] // 8) * 8  # allocated 8 a thread at a time
    threads = 32 * g.WARPS
    assert registers * threads * g.PER_SM <= 65536, (registers, threads, g.PER_SM)
    assert kernel.metadata.shared * g.PER_SM <= 227 * 1024, (kernel.metadata.shared, g.PER_SM)
