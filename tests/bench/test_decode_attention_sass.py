"""bench/decode_attention_sass.py compiles the split kernel for sm_90 here, without a GPU, and reads its loop's
instructions: the default (half) widens the fp8 cache to fp16 alone, the bf16 path also turns fp16 into bf16,
and each tuning knob reaches the machine code (a knob that compiled to the same code would time the same)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("triton")


def test_the_loop_of_each_tuning_is_read_from_its_sass(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import decode_attention_sass

    tunings = [{}, {"half": False}, {"v_zeroed": True}, {"prefetch": True}, {"registers": 96}]
    out = tmp_path / "sass.json"
    decode_attention_sass.main(["--tunings", json.dumps(tunings), "--out", str(out)])
    doc = json.loads(out.read_text())
    assert doc["target"] == "sm_90" and doc["triton"] and "decode_attention_sass.py" in doc["command"]
    rows = {json.dumps(r["tuning"], sort_keys=True): r for r in doc["kernels"]}
    half, bf16 = rows["{}"], rows['{"half": false}']
    for row in doc["kernels"]:
        assert row["registers"] > 0 and row["shared_bytes"] > 0 and len(row["loops"]) >= 1
    main_loop = lambda row: max(row["loops"], key=lambda loop: loop["instructions"])  # noqa: E731
    assert "F2F.BF16.F16" not in main_loop(half)["opcodes"] and main_loop(bf16)["opcodes"]["F2F.BF16.F16"] > 0
    assert main_loop(bf16)["instructions"] > main_loop(half)["instructions"]
    assert any(key.startswith("HMMA") for key in main_loop(half)["opcodes"])
    capped = rows['{"registers": 96}']
    assert capped["registers"] <= 96 < half["registers"]  # the cap reaches ptxas
    assert capped["spill_loads"] > 0 and capped["spill_stores"] > 0 and main_loop(capped)["spills"] > 0
    assert bf16["spill_loads"] == bf16["spill_stores"] == 0  # 128 registers hold the bf16 path whole
    for knob in ('{"v_zeroed": true}', '{"prefetch": true}'):
        changed = rows[knob]
        assert (changed["shared_bytes"], changed["registers"], changed["loops"]) != (
            half["shared_bytes"],
            half["registers"],
            half["loops"],
        ), knob
