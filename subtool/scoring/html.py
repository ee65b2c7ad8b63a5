"""leaderboard.html: one self-contained page (inline CSS and SVG, no script, nothing fetched when viewed).

Per category: a horizontal stacked bar chart of the overall points (one colour per task, bonus last), the
overall table and one table per task. Then the disqualified entries with the checker's reasons and the flags.
Every string from a tarball is HTML-escaped.
"""

from __future__ import annotations

from html import escape

from subtool.scoring.tables import fmt_points, overall_table_rows, task_table_rows

PALETTE = ("#3b6fb6", "#e08a2e", "#4c9a5a", "#b5493f", "#7d5fb0", "#8c6d4f", "#c65f9e", "#6f7782")
BONUS_COLOUR = "#d9b43c"
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px;color:#1d2430;
background:#fff}h1{font-size:1.6em;margin:0 0 .3em}h2{margin-top:1.6em;border-bottom:2px solid #d8dee8;
padding-bottom:.2em}h3{margin:1.1em 0 .4em}p.meta{color:#4a5566;margin:.2em 0 1em}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:.92em}th,td{border:1px solid #d8dee8;
padding:4px 8px;text-align:left;vertical-align:top}th{background:#f1f4f8}td.num{text-align:right;
font-variant-numeric:tabular-nums}tr.dq td{color:#8a2c2c;background:#fdf3f3}figure{margin:.6em 0}
figcaption{font-size:.85em;color:#4a5566}svg text{font-family:inherit}
"""
_CHART_WIDTH = 760
_LABEL_WIDTH = 230
_BAR_HEIGHT = 22
_BAR_GAP = 8


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _short(text: str, limit: int = 34) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bar_chart(category: str, rows: list[dict], tasks: list[str]) -> str:
    ranked = [r for r in rows if r["status"] == "ranked"]
    colours = {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(tasks)}
    legend_items = [*tasks, "bonus"]
    legend_height = 26
    height = legend_height + max(1, len(ranked)) * (_BAR_HEIGHT + _BAR_GAP) + 24
    plot = _CHART_WIDTH - _LABEL_WIDTH - 70
    best = max([r["total"] for r in ranked] or [0.0]) or 1.0
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{_CHART_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_CHART_WIDTH} {height}" role="img" data-category="{_e(category)}" '
        f'aria-label="{_e(category)}: total points per team">',
        f"<title>{_e(category)}: total points per team</title>",
    ]
    x = _LABEL_WIDTH
    for item in legend_items:
        colour = BONUS_COLOUR if item == "bonus" else colours[item]
        parts.append(f'<rect class="legend" x="{x}" y="6" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{x + 16}" y="16" font-size="12">{_e(_short(item, 28))}</text>')
        x += 28 + 7 * min(len(item), 28)
    if not ranked:
        parts.append(
            f'<text x="{_LABEL_WIDTH}" y="{legend_height + 16}" font-size="13" fill="#8a2c2c">no ranked entry</text>'
        )
    for i, row in enumerate(ranked):
        y = legend_height + i * (_BAR_HEIGHT + _BAR_GAP)
        label = f"{row['rank']}. {row['team']} / {row['system']}"
        parts.append(
            f'<text x="{_LABEL_WIDTH - 8}" y="{y + 15}" font-size="13" text-anchor="end">{_e(_short(label))}</text>'
        )
        x = float(_LABEL_WIDTH)
        segments = [(t, row["tasks"].get(t) or 0.0, colours[t]) for t in tasks] + [
            ("bonus", row["bonus"], BONUS_COLOUR)
        ]
        for name, points, colour in segments:
            if points <= 0:
                continue
            width = plot * points / best
            tip = f"{_e(row['team'])} — {_e(name)}: {fmt_points(points)}"
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y}" width="{width:.1f}" height="{_BAR_HEIGHT}" '
                f'fill="{colour}"><title>{tip}</title></rect>'
            )
            x += width
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 15}" font-size="12">{fmt_points(row["total"])}</text>')
    axis_y = legend_height + max(1, len(ranked)) * (_BAR_HEIGHT + _BAR_GAP)
    parts.append(
        f'<line x1="{_LABEL_WIDTH}" y1="{legend_height - 2}" x2="{_LABEL_WIDTH}" y2="{axis_y}" stroke="#7a8494"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _html_table(headers: list[str], rows: list[list[object]], dq_flags: list[bool], numeric: set[int], cls: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row, dq in zip(rows, dq_flags):
        cells = "".join(
            f'<td class="num">{_e(c)}</td>' if i in numeric else f"<td>{_e(c)}</td>" for i, c in enumerate(row)
        )
        body.append(f'<tr class="{"dq" if dq else "ok"}">{cells}</tr>')
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def leaderboard_html(doc: dict) -> str:
    tasks = [t["name"] for t in doc["rules"]["tasks"]]
    out = _head_html(doc)
    for cat in doc["categories"]:
        out += _category_html(cat, tasks)
    if doc["disqualified"]:
        out.append(_disqualified_html(doc["disqualified"]))
    flagged = [(e, f) for e in doc["entries"] for f in e["flags"]]
    if flagged:
        rows = [[e["input"], ", ".join(e["teams"]), f["rule"], f["message"]] for e, f in flagged]
        out.append(
            '<section class="flags"><h2>Flags</h2><p class="meta">Handed-in files that disagree with the '
            "tarball.</p>"
            + _html_table(["Input", "Teams", "Flag", "What"], rows, [False] * len(rows), set(), "flags")
            + "</section>"
        )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _head_html(doc: dict) -> list[str]:
    c = doc["counts"]
    check = doc["rules"]["check"]
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(doc['title'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(doc['title'])}</h1>",
        f'<p class="meta">{c["inputs"]} inputs: {c["scored"]} scored, {c["errors"]} refused or unreadable; '
        f"{c['ranked']} ranked, {c['disqualified']} disqualified or not ranked. Rules: {_e(doc['rules']['source'])}"
        f" (checker {_e(check['version'])}"
        + (f", waived: {_e(', '.join(check['waive']))}" if check["waive"] else "")
        + ").</p>",
    ]


def _category_html(cat: dict, tasks: list[str]) -> list[str]:
    """One category: its chart, the overall table, one table per task."""
    out = [f'<section class="category" data-category="{_e(cat["name"])}"><h2>{_e(cat["name"])}</h2>']
    out.append(
        f"<figure>{bar_chart(cat['name'], cat['overall'], tasks)}"
        f"<figcaption>Total points per team in {_e(cat['name'])} (stacked by task).</figcaption></figure>"
    )
    headers, rows = overall_table_rows(cat, tasks)
    numeric = set(range(4, 4 + len(tasks) + 2))
    out.append(
        "<h3>Overall</h3>"
        + _html_table(headers, rows, [r["status"] != "ranked" for r in cat["overall"]], numeric, "overall")
    )
    for task, rows_in in cat["tasks"].items():
        if not rows_in:
            continue
        headers, rows = task_table_rows(rows_in)
        out.append(
            f"<h3>{_e(task)}</h3>"
            + _html_table(headers, rows, [r["status"] != "ranked" for r in rows_in], {3, 7, 8}, "task")
        )
    out.append("</section>")
    return out


def _disqualified_html(disqualified: list[dict]) -> str:
    rows = [[d["input"], d["team"], d["system"], d["category"], d["task"] or "—", d["reason"]] for d in disqualified]
    return (
        '<section class="disqualified"><h2>Disqualified and not ranked</h2>'
        + _html_table(
            ["Input", "Team", "System", "Category", "Task", "Reason"],
            rows,
            [True] * len(rows),
            set(),
            "disqualified",
        )
        + "</section>"
    )
