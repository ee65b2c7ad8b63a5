"""Markdown tables through tabulate, in the compact form subtool's Markdown has always had (`| a | b |` rows under
a `|---|---|` rule, cells neither padded nor aligned), so that readers of these files (CI summaries, pull-request
bodies, the package's README.md, the pack's .md) and the tests that read them see the same bytes.

Cells are escaped by the caller: what a cell may hold differs (a CI summary's `|` and backslashes, a report's
numbers); a cell holding a line break or a bare `|` would break the table, and is the caller's to flatten."""

from __future__ import annotations

import html
import re


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


# ------------------------------------------------------------------------------------ text a team wrote
_MD_PUNCTUATION = re.compile(r"([\\`\[\]|*_~])")
# what a GFM renderer turns into a link by itself (extended autolinks: URLs, www., e-mail addresses)
_URL_LIKE = re.compile(r"(?i)(?:https?:|ftp:|mailto:|xmpp:|www\.)|[\w.+-]@[\w-]+\.")
_BACKTICKS = re.compile(r"`+")


def _code_span(token: str) -> str:
    """`token` as a code span, where nothing links: HTML still escaped (the raw .md is read too), `|` escaped
    (GFM splits table cells before it reads code spans), fenced by more backticks than it holds."""
    inner = html.escape(token, quote=False).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(inner)), default=0) + 1)
    pad = " " if inner.startswith("`") or inner.endswith("`") else ""
    return f"{fence}{pad}{inner}{pad}{fence}"


def md_cell(value: object) -> str:
    """Team-controlled text as inert Markdown: HTML escaped (a renderer would run <img onerror=…>), the characters
    that open links, images, code spans and emphasis backslash-escaped, pipes escaped, line breaks flattened, and
    each word a renderer would autolink (https://…, www.…, a@b.c) put in a code span."""
    text = "" if value is None else str(value)
    text = " ".join(text.replace("\r", "\n").split("\n"))
    return "".join(
        _code_span(word) if _URL_LIKE.search(word) else _MD_PUNCTUATION.sub(r"\\\1", html.escape(word, quote=False))
        for word in re.split(r"(\s+)", text)
    )
