"""bench/decode_attention_gpu.py under Triton's interpreter: every tuning axis it sweeps (page-number loads ahead,
programs launched longest first, kv-head-major pages) gives the default's output, and the best tuning it writes
is one the engine takes."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

from support.triton_check import needs_triton

BENCH = Path(__file__).resolve().parents[2] / "bench" / "decode_attention_gpu.py"


@needs_triton
def test_each_layout_and_table_load_gives_the_defaults_output(tmp_path):
    out, best = tmp_path / "sweep.json", tmp_path / "best.json"
    args = ["--device", "cpu", "--sequences", "2", "--splits", "1024", "--blocks", "64", "--warps", "4"]
    args += ["--stages", "2", "--table-ahead", "0,1", "--ordered", "0,1", "--layouts", "token,head", "--repeats", "1"]
    done = subprocess.run(
        [sys.executable, str(BENCH), *args, "--out", str(out), "--best-out", str(best)],
        env={**os.environ, "TRITON_INTERPRET": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    tunings = json.loads(out.read_text())["tunings"]
    seen = {(t["table_ahead"], t["ordered"], t.get("layout", "token")) for t in tunings}
    assert seen == set(itertools.product((False, True), (False, True), ("token", "head")))
    assert all(t["worst_difference_from_default"] == 0.0 for t in tunings)
    from subtool.runner.kernels.decode_attention import DecodeAttention

    DecodeAttention(4, 64, 8, 128, 2047, "cpu", **json.loads(best.read_text()))  # the engine's decode_tuning


def test_an_unknown_layout_is_refused_before_anything_runs(tmp_path):
    out = tmp_path / "sweep.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--device", "cpu", "--layouts", "token,rows", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "rows is not a layout" in done.stderr
    assert not out.exists()
