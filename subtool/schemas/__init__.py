"""JSON Schemas shipped as package data (system description, measurements.json, run.json)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources


@cache
def load_schema(name: str) -> dict:
    """`load_schema("system_desc")` → the parsed `system_desc.schema.json`."""
    text = resources.files(__name__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    return json.loads(text)
