"""leaderboard.md holds team-controlled names (issue 19, item 6): rendered by a CommonMark renderer (GitHub's
kind), they come out as text, never as HTML elements, links or images; leaderboard.html and .csv already did."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from subtool.cli import app
from subtool.scoring.tables import md_cell

TEAM = "Eve<img src=x onerror=alert(1)>"
ACCELERATOR = "AMD <script>alert(2)</script> [win](javascript:alert(3)) ![t](http://track.example/p.png) `x` a|b"


def test_html_and_links_in_team_names_are_inert_in_leaderboard_md(sc_handins, tmp_path):
    markdown_it = pytest.importorskip("markdown_it")
    tree = tmp_path / "trees" / "Eve"
    shutil.copytree(sc_handins["_trees"] / "Beta" / "tree", tree)
    (tree / "open" / "Beta").rename(tree / "open" / TEAM)
    system = tree / "open" / TEAM / "systems" / "cluster.json"
    fields = json.loads(system.read_text())
    fields.update(submitter=TEAM, accelerator_model_name=ACCELERATOR, system_name="<b>bold</b> box")
    system.write_text(json.dumps(fields))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["score", str(tree), "--out", str(out), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "leaderboard.json").read_text())
    assert doc["entries"][0]["teams"] == [TEAM] and doc["entries"][0]["error"] is None
    md = (out / "leaderboard.md").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in md and "<img" not in md and "<script" not in md
    html = markdown_it.MarkdownIt("commonmark").enable("table").render(md)
    assert "<table>" in html  # the tables still render as tables
    for tag in ("<img", "<script", "<a ", "<b>", "<code>"):
        assert tag not in html, tag
    assert "Eve&lt;img src=x onerror=alert(1)&gt;" in html  # shown as the text it is


def test_md_cell_escapes_what_starts_html_links_code_and_cells():
    assert md_cell("<a href=x>&</a>") == "&lt;a href=x&gt;&amp;&lt;/a&gt;"
    assert md_cell("[x](y) `c` a|b \\") == "\\[x\\](y) \\`c\\` a\\|b \\\\"
    assert md_cell("two\nlines\r\nhere") == "two lines  here"
