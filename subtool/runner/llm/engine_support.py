"""Which models and options the continuous engine (engine.py) takes: models decided from a config.json before
anything is loaded, and the engine's option names. Pure Python (no torch): a SUT asks before it loads a checkpoint.
"""

from __future__ import annotations


def supports_config(config: dict, generation) -> str | None:
    """Why the engine cannot run a model of this config.json (None when it can): decided before loading."""
    if generation.num_beams > 1:
        return "beam search (gptj) needs the batched engine"
    if config.get("model_type") != "llama":
        return f"model_type {config.get('model_type')!r} (only llama)"
    if config.get("hidden_act", "silu") != "silu":
        return f"activation {config.get('hidden_act')!r} (only silu)"
    return None


def check_options(weights: str, kv_cache: str, decode_attention: str) -> None:
    """Refuse an engine option outside those it knows (ValueError)."""
    if weights not in ("model", "fp8"):
        raise ValueError(f"weights must be 'model' or 'fp8', not {weights!r}")
    if kv_cache not in ("model", "fp8", "auto"):
        raise ValueError(f"kv_cache must be 'model', 'fp8' or 'auto', not {kv_cache!r}")
    if decode_attention not in ("auto", "triton", "flash", "sdpa"):
        raise ValueError(f"decode_attention must be auto, triton, flash or sdpa, not {decode_attention!r}")
