"""The fast BERT SUT's tests. The pure batching logic needs numpy only; everything else needs the model stack."""

from __future__ import annotations

import random

import pytest


@pytest.fixture(scope="session")
def small_features(tiny_checkpoint, small_squad):
    pytest.importorskip("transformers")
    from subtool.runner.bert.checkpoint import check_checkpoint
    from subtool.runner.bert.workload import load_data

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


# The BERT-on-Ray tests' inputs.
@pytest.fixture(scope="session")
def demo_features(subtool_cache):
    """The embedded demo's checkpoint and its 10,833 features, from the session's cache (the one `subtool run`
    child processes see through SUBTOOL_CACHE)."""
    from subtool.runner.bert.checkpoint import check_checkpoint
    from subtool.runner.bert.demo import demo_assets
    from subtool.runner.bert.workload import load_data

    assets = demo_assets(subtool_cache)
    data = load_data(
        assets.model_path, assets.dataset_path, subtool_cache / "features", check_checkpoint(assets.model_path)
    )
    return assets.model_path, data.features


@pytest.fixture(scope="session")
def demo_slice(demo_features):
    """The demo's first 2,000 features: long enough a run to kill workers in (they die at 500 answered, with
    1,500 still queued), short enough for CI."""
    from subtool.runner.bert.squad import SquadFeatures

    model_path, f = demo_features
    return model_path, SquadFeatures(**{k: getattr(f, k)[:2000] for k in SquadFeatures.__dataclass_fields__})


@pytest.fixture(scope="session")
def small_feature_arrays(tiny_checkpoint, small_squad):
    """The tiny checkpoint's features as the arrays a Ray worker receives (small_features is the whole data set)."""
    from subtool.runner.bert.checkpoint import check_checkpoint
    from subtool.runner.bert.workload import load_data

    return load_data(tiny_checkpoint, small_squad, None, check_checkpoint(tiny_checkpoint)).features
