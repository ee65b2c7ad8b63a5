"""The embedded demo's generated data set has exactly the official bert-99 counts."""

from __future__ import annotations

from subtool.runner.bert import workload as bert
from subtool.runner.bert.demo import N_QUESTIONS, demo_assets


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


def _tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_demo_assets_are_the_same_bytes_when_generated_twice(tmp_path):
    """Two caches, two generations: every file (data set, vocabulary, weights, config) is byte-identical, so a
    team's demo result is reproducible anywhere (an unseeded data set or model would differ here)."""
    first = demo_assets(cache=tmp_path / "a")
    second = demo_assets(cache=tmp_path / "b")
    assert first.dataset_path != second.dataset_path
    a, b = _tree_bytes(first.dataset_path.parent), _tree_bytes(second.dataset_path.parent)
    assert {"squad-demo-v1.1.json", "model/vocab.txt", "model/config.json"} <= set(a)
    assert any(name.endswith(".safetensors") or name.endswith(".bin") for name in a)
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), [k for k in a if a[k] != b.get(k)]


def test_llm_demo_assets_are_the_same_bytes_when_generated_twice(tmp_path):
    from subtool.runner.llm.demo import demo_assets as llm_demo_assets
    from subtool.runner.llm.specs import LLM_SPECS

    spec = LLM_SPECS["llama3.1-8b"]
    first = llm_demo_assets(spec, cache=tmp_path / "a", sample_count=8)
    second = llm_demo_assets(spec, cache=tmp_path / "b", sample_count=8)
    a, b = _tree_bytes(first.dataset_path.parent), _tree_bytes(second.dataset_path.parent)
    assert first.dataset_path.name in a and any(name.endswith(".safetensors") for name in a)
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), [k for k in a if a[k] != b.get(k)]
