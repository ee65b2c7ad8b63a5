"""The fast BERT SUT's tests. The pure batching logic needs numpy only; everything else needs the model stack."""

from __future__ import annotations

import random

import pytest


@pytest.fixture(scope="session")
def small_features(tiny_checkpoint, small_squad):
    pytest.importorskip("transformers")
    from subtool.runner.workloads.bert import check_checkpoint, load_data

    return load_data(tiny_checkpoint, small_squad, None, check_checkpoint(tiny_checkpoint))


@pytest.fixture(scope="session")
def hf_logits(tiny_checkpoint, small_features):
    """Reference start/end logits of every feature from transformers' own BertForQuestionAnswering, batch 1."""
    torch = pytest.importorskip("torch")
    from transformers import BertForQuestionAnswering

    model = BertForQuestionAnswering.from_pretrained(str(tiny_checkpoint), dtype=torch.float32).eval()
    f = small_features.features
    out = {}
    with torch.inference_mode():
        for i in range(len(f)):
            n = int(f.seq_lengths[i])
            res = model(
                input_ids=torch.from_numpy(f.input_ids[i : i + 1, :n].astype("int64")),
                token_type_ids=torch.from_numpy(f.segment_ids[i : i + 1, :n].astype("int64")),
            )
            out[i] = torch.stack([res.start_logits[0], res.end_logits[0]], -1).numpy()
    return out


@pytest.fixture
def rng():
    return random.Random(11)
