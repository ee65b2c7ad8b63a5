"""The embedded demo's generated data set has exactly the official bert-99 counts."""

from __future__ import annotations

from subtool.runner.demo import N_QUESTIONS, demo_assets
from subtool.runner.workloads import bert


def test_demo_data_yields_the_official_feature_count():
    assets = demo_assets()
    config = bert.check_checkpoint(assets.model_path)
    data = bert.load_data(assets.model_path, assets.dataset_path, None, config)
    assert len(data.examples) == N_QUESTIONS == 10570
    assert len(data.features) == bert.WORKLOADS["bert-99"].sample_count == 10833
    lengths = data.features.seq_lengths
    # SQuAD-like spread of sequence lengths, not everything padded to 384
    assert 120 < lengths.mean() < 240 and lengths.min() < 100 and lengths.max() == 384
    # generating again gives the same bytes (deterministic, cached by version)
    assert demo_assets() == assets
