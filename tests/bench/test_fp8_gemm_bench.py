"""bench/fp8_gemm_gpu.py on the CPU at a shrunken size: it times each model's own four products (BERT-large's or
Llama-2-70B's shapes, scaled down), at that model's layer count, and writes what it measured with its provenance."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

pytest.importorskip("torch")


@pytest.mark.parametrize(
    "model, products, layers",
    [
        ("bert-large", [("qkv", 32, 96), ("attn_out", 32, 32), ("ffn_in", 32, 128), ("ffn_out", 128, 32)], 24),
        ("llama2-70b", [("qkv", 256, 320), ("o", 256, 256), ("gate_up", 256, 1792), ("down", 896, 256)], 80),
    ],
)
def test_each_model_times_its_own_products_at_its_layer_count(tmp_path, model, products, layers):
    import fp8_gemm_gpu

    out = tmp_path / "gemm.json"
    argv = ["--model", model, "--rows", "8", "--scale", "32", "--repeats", "1", "--device", "cpu", "--out", str(out)]
    assert fp8_gemm_gpu.main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["model"] == model and doc["layers"] == layers and doc["command"].endswith(" ".join(argv))
    assert [(p["product"], p["k"], p["n"]) for p in doc["products"]] == products
    for p in doc["products"]:  # no GPU: bf16 (float32 here) and the quantisation only, bf16 exact against itself
        assert (
            p["m"] == 8
            and p["bf16"]["max_rel_error"] == 0
            and p["bf16"]["model_ms"] == pytest.approx(p["bf16"]["us"] * layers / 1000, abs=0.01)
        )
    assert doc["model_ms_per_step_by_rows"]["8"]["bf16"] == pytest.approx(
        sum(p["bf16"]["model_ms"] for p in doc["products"]), abs=0.02
    )
