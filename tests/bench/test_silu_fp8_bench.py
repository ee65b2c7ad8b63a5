"""bench/silu_fp8_gpu.py at a smoke size under Triton's interpreter: each form is timed on the same gate/up
product and the JSON says, per row count, how each compares with eager torch's e4m3 codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.triton_check import needs_triton

BENCH = Path(__file__).resolve().parents[2] / "bench" / "silu_fp8_gpu.py"


@needs_triton
def test_the_bench_times_every_form_and_counts_their_disagreements(tmp_path):
    out = tmp_path / "silu.json"
    args = ["--device", "cpu", "--scale", "256", "--rows", "3,5", "--repeats", "1", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, str(BENCH), *args],
        env={**os.environ, "TRITON_INTERPRET": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(out.read_text())
    assert [p["m"] for p in record["points"]] == [3, 5] and set(record["triton_over_compiled"]) == {"3", "5"}
    for point in record["points"]:
        assert point["bytes"] == point["m"] * (2 * 2 * 112 + 112 + 4)  # fp16 gate/up in, e4m3 and scales out
        assert all(point[form]["us"] > 0 for form in ("eager", "compiled", "triton"))
        assert point["eager"]["codes_more_than_one_apart"] == 0
        # the interpreter's e4m3 cast truncates, crudely in the lowest codes: a few, never most, differ
        assert point["triton"]["codes_more_than_one_apart"] < point["m"] * 112 // 4
    assert "silu_fp8_gpu.py" in record["command"]
