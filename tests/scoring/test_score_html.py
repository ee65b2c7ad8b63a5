"""leaderboard.html read back as a document: every string a team or the organisers wrote is text (never markup,
never an attribute's end), the charts and tables hold the leaderboard's rows in its order, and the counts line,
the disqualified entries and the flags say what leaderboard.json says."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from teamgen import COMPETITION
from typer.testing import CliRunner

from subtool.cli import app
from subtool.scoring.tables import fmt_points, overall_table_rows, task_table_rows

DEFAULT_RULES = Path(__file__).resolve().parents[2] / "subtool" / "scoring" / "default_rules.toml"
TEAM = "Eve<img src=x onerror=alert(1)>"
ACCELERATOR = 'AMD <script>alert(2)</script> "MI300"'
TITLE = 'SCC <i>finals</i> & "friends"'
NVIDIA = 'NVIDIA "GPUs" <em>&amp;</em>'
BERT_TASK = "BERT-99 <u>Offline</u>"
BONUS = 'bert "bonus" <s>x</s>'
TWIN = "Gamma-twin-0123456789"  # its chart label, "1. <team> / cluster", is 34 characters: the longest kept whole


def _rules(dest: Path) -> Path:
    """The default rules with markup and quotes in what the organisers name (title, a category, a task, a bonus
    that every bert-99 result earns, so that bars have a bonus segment)."""
    text = DEFAULT_RULES.read_text()
    for old, new in (
        ('title = "Student Cluster Competition: MLPerf Inference"', f"title = {json.dumps(TITLE)}"),
        ('name = "NVIDIA GPUs"', f"name = {json.dumps(NVIDIA)}"),
        ('name = "BERT-99 Offline"', f"name = {json.dumps(BERT_TASK)}"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    text += f"\n[[bonus]]\nname = {json.dumps(BONUS)}\npoints = 5\nmatch = {{ model = '^bert-99$' }}\n"
    dest.write_text(text)
    return dest


@pytest.fixture(scope="module")
def board(sc_handins, tmp_path_factory) -> tuple[dict, str]:
    root = tmp_path_factory.mktemp("sc-html-doc")
    handins = root / "handins"
    for team in [t for t in COMPETITION if t != "Zeta"]:  # without Zeta the ranked and disqualified counts differ
        shutil.copytree(sc_handins[team], handins / team)
    for companion in [*handins.glob("Alpha/*.tstamps"), *handins.glob("Alpha/*.run")]:
        companion.unlink()  # two flags on one entry
    (handins / "Broken").mkdir()  # an input refused: inputs, scored and errors all differ
    (handins / "Broken" / "mlperf_submission_short.tar.gz").write_bytes(b"not a tarball")
    # Gamma's result handed in again by two other teams, each in its own input: the three share rank 1
    for n, team in enumerate((TWIN, "Theta")):
        twin = handins / f"Twins{n}"
        shutil.copytree(sc_handins["_trees"] / "Gamma" / "tree" / "open" / "Gamma", twin / "open" / team)
        for system in (twin / "open" / team / "systems").glob("*.json"):
            system.write_text(json.dumps({**json.loads(system.read_text()), "submitter": team}))
    pair = handins / "Pair"  # one input holding two teams: flagged and held (entry.several_teams)
    for team in ("Kappa", "Lambda"):
        shutil.copytree(sc_handins["_trees"] / "Delta" / "tree" / "open" / "Delta", pair / "open" / team)
    tree = handins / "Eve"  # markup in a team name: disqualified for it, still listed
    shutil.copytree(sc_handins["_trees"] / "Beta" / "tree", tree)
    (tree / "open" / "Beta").rename(tree / "open" / TEAM)
    system = tree / "open" / TEAM / "systems" / "cluster.json"
    fields = json.loads(system.read_text())
    fields.update(submitter=TEAM, accelerator_model_name=ACCELERATOR)
    system.write_text(json.dumps(fields))
    out = root / "out"
    result = CliRunner().invoke(
        app, ["score", str(handins), "--out", str(out), "--jobs", "1", "--rules", str(_rules(root / "rules<i>.toml"))]
    )
    assert result.exit_code == 0, result.output
    return json.loads((out / "leaderboard.json").read_text()), (out / "leaderboard.html").read_text()


# ------------------------------------------------------------------------------------- the page, read back
VOID = {"meta"}  # the page closes its SVG rect and line elements itself (<rect .../>)
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "section", "figure", "figcaption",
    "svg", "rect", "text", "line", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
PLOT_WIDTH = 760 - 230 - 70  # the chart's width less its label column and the room for the total


def _attr(keyword: str) -> str:
    """class_ → class, text_anchor → text-anchor"""
    return keyword.rstrip("_").replace("_", "-")


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None]) -> None:
        self.tag, self.attrs, self.children, self.parts = tag, attrs, [], []

    @property
    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text for p in self.parts)

    def all(self, tag: str, **attrs: str) -> list[Node]:
        found = []
        for child in self.children:
            if child.tag == tag and all(child.attrs.get(_attr(k)) == v for k, v in attrs.items()):
                found.append(child)
            found += child.all(tag, **attrs)
        return found


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs))
        self.tags.add(tag)
        self.stack[-1].children.append(node)
        self.stack[-1].parts.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        while len(self.stack) > 1:
            if self.stack.pop().tag == tag:
                break

    def handle_data(self, data):
        self.stack[-1].parts.append(data)


def _parse(html: str) -> tuple[Node, set[str]]:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root, builder.tags


def _cells(table: Node) -> tuple[list[str], list[tuple[str, list[str]]]]:
    head = [th.text for th in table.all("th")]
    rows = [(tr.attrs["class"], [td.text for td in tr.all("td")]) for tr in table.all("tbody")[0].all("tr")]
    return head, rows


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _strings(row: list[object]) -> list[str]:
    return ["" if c is None else str(c) for c in row]


def test_every_string_a_team_or_the_organisers_wrote_is_text_in_leaderboard_html(board):
    doc, html = board
    page, tags = _parse(html)
    assert tags <= ALLOWED_TAGS, tags - ALLOWED_TAGS  # no <img>, <script>, <b>, <i>, <em>, <u>, <s> from a name
    assert page.all("title")[0].text == page.all("h1")[0].text == TITLE
    sections = page.all("section", class_="category")
    assert [s.attrs["data-category"] for s in sections] == [c["name"] for c in doc["categories"]]
    assert NVIDIA in [s.attrs["data-category"] for s in sections]  # the quotes did not end the attribute
    for section, cat in zip(sections, doc["categories"]):
        (svg,) = section.all("svg")
        assert section.all("h2")[0].text == cat["name"]
        assert svg.attrs["data-category"] == cat["name"]
        assert svg.attrs["aria-label"] == svg.children[0].text == f"{cat['name']}: total points per team"
    everything = page.text
    for hostile in (TEAM, ACCELERATOR, BERT_TASK, BONUS):
        assert hostile in everything or _short(hostile, 28) in everything, hostile
    eve = [cells for t in page.all("table") for _, cells in _cells(t)[1] if TEAM in cells]
    assert eve and any(ACCELERATOR in cell for cells in eve for cell in cells)  # the disqualified row, as written


def test_the_counts_line_says_what_leaderboard_json_counts(board):
    doc, html = board
    page, _ = _parse(html)
    c = doc["counts"]
    assert c["inputs"] != c["scored"] and c["errors"] and c["ranked"] != c["disqualified"]  # each number its own
    waived = ", ".join(doc["rules"]["check"]["waive"])
    assert page.all("p", class_="meta")[0].text == (
        f"{c['inputs']} inputs: {c['scored']} scored, {c['errors']} refused or unreadable; {c['ranked']} ranked, "
        f"{c['disqualified']} disqualified or not ranked. Rules: {doc['rules']['source']} "
        f"(checker {doc['rules']['check']['version']}, waived: {waived})."
    )


def test_each_chart_stacks_the_ranked_teams_points_in_rank_order(board):
    doc, html = board
    page, _ = _parse(html)
    tasks = [t["name"] for t in doc["rules"]["tasks"]]
    for section, cat in zip(page.all("section", class_="category"), doc["categories"]):
        (svg,) = section.all("svg")
        ranked = [r for r in cat["overall"] if r["status"] == "ranked"]
        texts = svg.all("text")
        assert [t.text for t in texts[: len(tasks) + 1]] == [_short(t, 28) for t in [*tasks, "bonus"]]
        labels = svg.all("text", text_anchor="end")
        assert [t.text for t in labels] == [_short(f"{r['rank']}. {r['team']} / {r['system']}", 34) for r in ranked]
        bars = svg.all("rect", class_="bar")
        best = max(r["total"] for r in ranked)
        for row, label in zip(ranked, labels):
            mine = [b for b in bars if float(b.attrs["y"]) + 15 == float(label.attrs["y"])]
            segments = [(t, row["tasks"].get(t) or 0.0) for t in tasks] + [("bonus", row["bonus"])]
            segments = [(name, points) for name, points in segments if points > 0]
            assert [b.children[0].text for b in mine] == [
                f"{row['team']} — {name}: {fmt_points(points)}" for name, points in segments
            ]
            x = 230.0
            for bar, (_, points) in zip(mine, segments):
                assert float(bar.attrs["x"]) == pytest.approx(x, abs=0.11)  # each segment starts where the last ended
                assert float(bar.attrs["width"]) == pytest.approx(PLOT_WIDTH * points / best, abs=0.11)
                x += float(bar.attrs["width"])
        assert len(bars) == sum(
            1 for r in ranked for p in [*(r["tasks"].get(t) or 0.0 for t in tasks), r["bonus"]] if p > 0
        )
    ranked = [[r for r in c["overall"] if r["status"] == "ranked"] for c in doc["categories"]]
    assert any(len(r["tasks"]) > 1 for rows in ranked for r in rows)  # a bar of two tasks' segments (and the bonus)
    assert any(a["rank"] == b["rank"] for rows in ranked for a, b in zip(rows, rows[1:]))  # a shared rank
    assert f"1. {TWIN} / cluster" in html and len(f"1. {TWIN} / cluster") == 34


def test_each_table_holds_the_leaderboards_rows_in_its_order_and_marks_the_disqualified(board):
    doc, html = board
    page, _ = _parse(html)
    tasks = [t["name"] for t in doc["rules"]["tasks"]]
    for section, cat in zip(page.all("section", class_="category"), doc["categories"]):
        headers, rows = overall_table_rows(cat, tasks)
        (overall,) = section.all("table", class_="overall")
        assert _cells(overall) == (
            headers,
            [("ok" if r["status"] == "ranked" else "dq", _strings(row)) for r, row in zip(cat["overall"], rows)],
        )
        entered = [(task, rows_in) for task, rows_in in cat["tasks"].items() if rows_in]
        assert [h.text for h in section.all("h3")] == ["Overall", *[task for task, _ in entered]]
        for table, (_task, rows_in) in zip(section.all("table", class_="task"), entered, strict=True):
            headers, rows = task_table_rows(rows_in)
            assert _cells(table) == (
                headers,
                [("ok" if r["status"] == "ranked" else "dq", _strings(row)) for r, row in zip(rows_in, rows)],
            )
    statuses = {r["status"] for c in doc["categories"] for r in c["overall"]}
    assert statuses == {"ranked", "disqualified"}  # both kinds of row were there to mark
    assert not [td for td in page.all("td") if td.text == "None"]


def test_the_disqualified_entries_and_the_flags_are_listed_with_their_reasons(board):
    doc, html = board
    page, _ = _parse(html)
    (dq,) = page.all("table", class_="disqualified")
    assert _cells(dq) == (
        ["Input", "Team", "System", "Category", "Task", "Reason"],
        [
            ("dq", [d["input"], d["team"], d["system"], d["category"], d["task"] or "—", d["reason"]])
            for d in doc["disqualified"]
        ],
    )
    assert any(not d["task"] for d in doc["disqualified"]) and len(doc["disqualified"]) > 1
    (flags,) = page.all("table", class_="flags")
    flagged = [(e, f) for e in doc["entries"] for f in e["flags"]]
    assert _cells(flags) == (
        ["Input", "Teams", "Flag", "What"],
        [("ok", [e["input"], ", ".join(e["teams"]), f["rule"], f["message"]]) for e, f in flagged],
    )
    assert any(len(e["flags"]) > 1 for e in doc["entries"])  # an entry with two flags lists both
    assert any(len(e["teams"]) > 1 and e["flags"] for e in doc["entries"])  # and one of two teams names both
