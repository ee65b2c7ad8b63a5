"""config.json's numbers that transformers would trip over with an exception of its own type: sizes that are not
whole numbers above 0 (a head count of 0 divides by zero), token ids that are not whole numbers ≥ 0 (its strict
config classes refuse text). Refused in one line (model.config) before anything loads."""

from __future__ import annotations

import json
from pathlib import Path

from subtool.errors import SubtoolError

# config.json's sizes (Llama's and GPT-J's names) and token ids, where given: transformers divides by a head count
# of 0 and its strict config classes refuse a size written as text, each with its own exception type
CONFIG_SIZES = (
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "num_hidden_layers",
    "vocab_size",
    "head_dim",
    "max_position_embeddings",
    "n_embd",
    "n_head",
    "n_layer",
    "n_positions",
    "rotary_dim",
)
CONFIG_TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def check_config_fields(config: dict, path: Path) -> None:
    """Each size a whole number above 0 and each token id a whole number ≥ 0 (or a list of them, or null)."""

    def whole(value, least: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= least

    for key in CONFIG_SIZES:
        if key in config and config[key] is not None and not whole(config[key], 1):
            raise SubtoolError(
                f"{key} is {json.dumps(config[key])[:40]}: a size must be a whole number above 0",
                path=path,
                rule="model.config",
            )
    for key in CONFIG_TOKEN_IDS:
        value = config.get(key)
        ids = value if isinstance(value, list) else [value]
        if value is not None and not (ids and all(whole(v, 0) for v in ids)):
            raise SubtoolError(
                f"{key} is {json.dumps(value)[:40]}: a token id must be a whole number ≥ 0 (or a list of them)",
                path=path,
                rule="model.config",
            )
