"""bench/llm70b_tp.py: TP=1 against TP=2 through `subtool run --tensor-parallel`, on a CPU (gloo ranks, tiny width),
and its scaling arithmetic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

llm70b_tp = pytest.importorskip("llm70b_tp")


def test_scaling_is_against_tp1_times_the_gpus():
    points = [
        {"tensor_parallel": 1, "tokens_per_second": 100.0},
        {"tensor_parallel": 2, "tokens_per_second": 180.0},
        {"tensor_parallel": 4, "error": ["rank 3 died"]},
    ]
    assert llm70b_tp.scaling(points) == {"tp2": {"speedup": 1.8, "efficiency": 0.9}}
    assert llm70b_tp.scaling(points[1:]) == {}  # no TP=1 run: nothing to compare with


@pytest.mark.parametrize("text", ["", "0,2", "1,-2"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(SystemExit):
        llm70b_tp.sizes(text)


def test_tp1_and_tp2_run_through_subtool_on_a_cpu(tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "tp.json"
    args = ["--device", "cpu", "--tiny", "--layers", "2", "--samples", "6", "--max-new-tokens", "4", "--tp", "1,2"]
    done = subprocess.run(
        [sys.executable, str(BENCH / "llm70b_tp.py"), *args, "--work", str(tmp_path / "work"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    one, two = result["points"]
    assert "error" not in one and "error" not in two, (one, two)
    assert one["tensor_parallel"] == 1 and two["sut"]["tensor_parallel"] == 2 and two["sut"]["process_group"] == "gloo"
    # the same work at both sizes: every sample, every answer to --max-new-tokens
    assert one["sut"]["samples"] == two["sut"]["samples"] == 6
    assert one["sut"]["generated_tokens"] == two["sut"]["generated_tokens"] == 24
    assert one["tokens_per_second"] > 0 and two["tokens_per_second"] > 0
    assert set(result["scaling"]) == {"tp2"} and result["scaling"]["tp2"]["efficiency"] > 0
    assert result["model"]["layers"] == 2 and (tmp_path / "work" / "checkpoint" / "tokenizer.json").is_file()
