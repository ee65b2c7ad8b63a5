"""bench/bert_gpu.py's forward over the whole data set, on the CPU (the eager executor): every feature goes
through exactly once, batched as the Offline SUT batches them, and the figures add up."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

pytest.importorskip("torch")
pytest.importorskip("transformers")


def test_the_whole_data_set_goes_through_once_in_the_suts_batches(tiny_checkpoint, small_squad):
    import bert_gpu

    from subtool.runner.bert.checkpoint import check_checkpoint
    from subtool.runner.bert.packed_model import PackedBert
    from subtool.runner.bert.workload import load_data

    features = load_data(tiny_checkpoint, small_squad, None, check_checkpoint(tiny_checkpoint)).features
    model = PackedBert(tiny_checkpoint, device="cpu", precision="fp32")
    doc = bert_gpu.data_set_forward(model, features, budget=1024, reps=2)
    assert doc["samples"] == len(features) == 45
    assert doc["tokens"] == int(features.seq_lengths.sum())  # each feature once: none dropped, none twice
    assert doc["batches"] >= int(features.seq_lengths.sum()) // 1024 + 1 > 1
    assert doc["mean_sequences_per_batch"] == round(45 / doc["batches"], 1)
    assert doc["padding_overhead"] >= 0 and doc["graphs"] == 0 and len(doc["seconds"]) == 2
    assert doc["samples_per_s"] == pytest.approx(45 / min(doc["seconds"]), rel=1e-3) and doc["samples_per_s"] > 0
