"""The Ray backend's tests: one local Ray cluster (2 CPUs) for the whole package, shared by every test.

Each module skips when Ray is not installed (it is the optional extra `mlperf-subtool[ray]`). Ray's own start-up takes
seconds, so the cluster is started once and every test reuses it: in-process SUTs join it directly, and
`subtool run` child processes join it through --ray-address HOST:PORT, the way a multi-node run joins a
`ray start --head` cluster.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="package")
def ray_cluster():
    """The cluster's GCS address (HOST:PORT); this process is connected to it as a driver."""
    import logging

    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="package")
def demo_features(subtool_cache):
    """The embedded demo's checkpoint and its 10,833 features, from the session's cache (the one `subtool run`
    child processes see through SUBTOOL_CACHE)."""
    from subtool.runner.demo import demo_assets
    from subtool.runner.workloads.bert import check_checkpoint, load_data

    assets = demo_assets(subtool_cache)
    data = load_data(
        assets.model_path, assets.dataset_path, subtool_cache / "features", check_checkpoint(assets.model_path)
    )
    return assets.model_path, data.features


@pytest.fixture(scope="package")
def demo_slice(demo_features):
    """The demo's first 4,000 features: long enough a run to kill workers in, short enough for CI."""
    from subtool.runner.workloads.squad import SquadFeatures

    model_path, f = demo_features
    return model_path, SquadFeatures(**{k: getattr(f, k)[:4000] for k in SquadFeatures.__dataclass_fields__})


@pytest.fixture(scope="package")
def small_features(tiny_checkpoint, small_squad):
    from subtool.runner.workloads.bert import check_checkpoint, load_data

    return load_data(tiny_checkpoint, small_squad, None, check_checkpoint(tiny_checkpoint)).features
