"""LoadGen detail logs (mlperf_log_detail.txt) written by hand, each line as LoadGen writes it: key, value, then
time_ms, namespace, event_type and metadata (the one log reader expects that order)."""

from __future__ import annotations

import json
from pathlib import Path


def write_detail_log(path: Path, entries: list[dict]) -> Path:
    """`entries`: {"key", "value"} each, with "metadata" where it matters (is_error, is_warning); else {}."""
    tail = {"time_ms": 1.0, "namespace": "mlperf::logging", "event_type": "POINT_IN_TIME"}
    lines = (
        ":::MLLOG " + json.dumps({"key": e["key"], "value": e["value"], **tail, "metadata": e.get("metadata", {})})
        for e in entries
    )
    path.write_text("".join(line + "\n" for line in lines))
    return path
