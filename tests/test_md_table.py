"""Markdown tables through tabulate keep the bytes subtool always wrote: `| a | b |` rows under a `|---|---|`
rule, cells neither padded nor aligned (CI summaries, pull-request bodies, README.md and the pack's .md are read
by people, GitHub and the tests; a reformatted table would be a diff in every results repository)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from subtool.md_table import markdown_table


def _hand_built(header: list[str], rows: list[list[str]]) -> list[str]:
    """How pack/report.py, ci.py, publish/content.py and package/documents.py built their tables before."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


_cell = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_tables = st.integers(1, 6).flatmap(
    lambda n: st.tuples(
        st.lists(_cell, min_size=n, max_size=n), st.lists(st.lists(_cell, min_size=n, max_size=n), max_size=5)
    )
)


@given(_tables)
def test_same_bytes_as_the_hand_built_tables(table):
    header, rows = table
    # tabulate reads a first or second cell of U+0001 as "draw a separator here": spelled out, the row stays
    marked = [
        [c.replace("\x01", "\\x01") if i < 2 and c.strip() == "\x01" else c for i, c in enumerate(r)] for r in rows
    ]
    assert "\n".join(markdown_table(header, rows)) == "\n".join(_hand_built(header, marked))  # as callers join


def test_short_rows_none_and_numbers():
    assert markdown_table(["a", "b"], [["only"], [None, 1.5], ["\x01", "x"]]) == [
        "| a | b |",
        "|---|---|",
        "| only |  |",
        "|  | 1.5 |",
        "| \\x01 | x |",
    ]
    assert markdown_table(["x"], []) == ["| x |", "|---|"]
