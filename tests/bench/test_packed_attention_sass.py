"""bench/packed_attention_sass.py compiles BERT's packed attention kernel for sm_90 here, without a GPU, and reads
its loop over key blocks: the loop runs on tensor cores, pays for no key mask (only the block past a sequence's
end does, outside the loop) and fuses the softmax scale into the exponent's subtraction (a multiply-add an
element, no separate multiply of every score)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("triton")


def _main_loop(row: dict) -> dict:
    return max(row["loops"], key=lambda loop: loop["instructions"])


@pytest.mark.parametrize("dtype,quant", [("bf16", 1), ("fp16", 0)])
def test_the_key_loop_is_unmasked_and_scales_in_its_exponent(tmp_path, dtype, quant):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import packed_attention_sass

    out = tmp_path / "sass.json"
    tilings = [{}, {"block_m": 128, "num_warps": 8}]
    argv = ["--tilings", json.dumps(tilings), "--dtype", dtype, "--quant", str(quant), "--out", str(out)]
    packed_attention_sass.main(argv)
    doc = json.loads(out.read_text())
    assert doc["target"] == "sm_90" and doc["shape"]["dtype"] == dtype and "packed_attention_sass.py" in doc["command"]
    assert [row["tiling"] for row in doc["kernels"]] == tilings
    for row in doc["kernels"]:
        assert row["registers"] > 0 and row["shared_bytes"] > 0
        ops = _main_loop(row)["opcodes"]
        assert any(op.startswith("HGMMA") for op in ops), ops  # Hopper's tensor-core products
        assert "FSEL" not in ops, ops  # no key mask inside the loop
        exponentials = ops["MUFU.EX2"]
        assert ops.get("FFMA", 0) >= exponentials - 2, ops  # each score's scale and subtraction in one instruction
        assert ops.get("FMUL", 0) < 2 * exponentials, ops
