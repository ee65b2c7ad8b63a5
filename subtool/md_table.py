"""Markdown tables through tabulate, in the compact form subtool's Markdown has always had (`| a | b |` rows under
a `|---|---|` rule, cells neither padded nor aligned), so that readers of these files (CI summaries, pull-request
bodies, the package's README.md, the pack's .md) and the tests that read them see the same bytes.

Cells are escaped by the caller: what a cell may hold differs (a CI summary's `|` and backslashes, a report's
numbers); a cell holding a line break or a bare `|` would break the table, and is the caller's to flatten."""

from __future__ import annotations


def _rule(colwidths: list[int], colaligns: list[str | None]) -> str:
    return "|" + "|".join("---" for _ in colwidths) + "|"


def _row(row: list[object]) -> list[object]:
    """None as an empty cell; a first or second cell that tabulate would take for its row-separator mark (U+0001)
    spelled out, so that the row stays a row."""
    cells = ["" if c is None else c for c in row]
    for i, c in enumerate(cells[:2]):
        if isinstance(c, str) and c.strip() == "\x01":
            cells[i] = c.replace("\x01", "\\x01")
    return cells


def markdown_table(headers: list[str], rows: list[list[object]]) -> list[str]:
    """The table's lines: header, rule, one line per row (rows shorter than the header are filled with empty
    cells)."""
    from tabulate import DataRow, TableFormat, tabulate

    compact = TableFormat(
        lineabove=None,
        linebelowheader=_rule,
        linebetweenrows=None,
        linebelow=None,
        headerrow=DataRow("|", "|", "|"),
        datarow=DataRow("|", "|", "|"),
        padding=1,
        with_header_hide=None,
    )
    text = tabulate(
        [_row(row) for row in rows],
        headers=headers,
        tablefmt=compact,
        stralign=None,
        numalign=None,
        disable_numparse=True,
        preserve_whitespace=True,
    )
    return text.split("\n")
