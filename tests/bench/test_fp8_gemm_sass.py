"""bench/fp8_gemm_sass.py compiles BERT's fused fp8 GELU product for sm_90 here, without a GPU, and reads its tile
loop (its epilogue's opcodes are the commonest): the e4m3 conversion saturates by itself (no clamp
before it), and each output value costs at most seven multiplies and fused multiply-adds beside its one tanh."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


def _tile_loop(row: dict) -> dict:
    return max(row["loops"], key=lambda loop: loop["instructions"])


def test_the_epilogue_saturates_in_its_conversion_and_spends_seven_alu_instructions_a_value(tmp_path):
    import fp8_gemm_sass

    out = tmp_path / "sass.json"
    tilings = [{}, {"block_n": 256, "num_warps": 8}]
    fp8_gemm_sass.main(["--tilings", json.dumps(tilings), "--out", str(out)])
    doc = json.loads(out.read_text())
    assert doc["target"] == "sm_90" and doc["shape"]["k"] == 1024 and "fp8_gemm_sass.py" in doc["command"]
    assert [row["tiling"] for row in doc["kernels"]] == tilings and doc["kernels"][1]["block_n"] == 256
    for row in doc["kernels"]:
        assert row["registers"] > 0 and row["shared_bytes"] > 0 and row["spill_loads"] == 0
        ops = _tile_loop(row)["opcodes"]
        values = ops["MUFU.TANH"]  # one a value of the thread's share of the tile
        assert any(op.startswith("F2FP.SATFINITE.E4M3") for op in ops), ops
        assert "FMNMX" not in ops, ops  # no clamp: the conversion saturates
        assert ops.get("FMUL", 0) + ops.get("FFMA", 0) + ops.get("FADD", 0) <= 7 * values, ops
