"""The runner's tests need the model stack; the shared fixtures live in tests/conftest.py."""

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("mlperf_loadgen")
