"""`<name>_summary.json` in the competitions' form, plus a `subtool` block.

The form is MLC's: read summary.csv with pandas, transpose, `to_json(orient="columns", indent=4)`: one object
per result row keyed by its row number ("0", "1", …), the checker's CSV columns as fields, pandas' types and
escaping (numbers parsed, empty cells and "N/A" as null, "/" written as "\\/"). pandas writes it, so the rows are
exactly what a team's MLC flow would have produced from the same CSV. The `subtool` block is appended as one
more top-level key in the same style.
"""

from __future__ import annotations

import json
from pathlib import Path


def _pandas_rows_json(csv_path: Path) -> str:
    import pandas  # heavy: only when a summary is written

    return pandas.read_csv(csv_path).T.to_json(orient="columns", indent=4)


def _block_json(block: dict) -> str:
    # pandas' style: 4-space indent, no space after ':'; nested one level under the top object.
    text = json.dumps(block, indent=4, separators=(",", ":"), ensure_ascii=True)
    return "\n".join("    " + line for line in text.splitlines())


def render_summary_json(csv_path: Path, block: dict) -> str:
    rows = _pandas_rows_json(csv_path).strip()
    if not (rows.startswith("{") and rows.endswith("}")):
        raise ValueError(f"unexpected pandas JSON: {rows[:40]!r}")
    body = rows[1:-1].strip("\n")
    tail = '    "subtool":' + _block_json(block).lstrip()
    # No newline at the end, as pandas writes it.
    return "{\n" + (body + ",\n" if body.strip() else "") + tail + "\n}"


def summary_rows(csv_path: Path) -> dict:
    """The result rows of the summary JSON that `render_summary_json` writes for this CSV, as JSON reads them."""
    return json.loads(_pandas_rows_json(csv_path))
