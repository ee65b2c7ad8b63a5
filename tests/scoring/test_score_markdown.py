"""leaderboard.md holds team-controlled names (issue 19, item 6): rendered by a CommonMark renderer (GitHub's
kind), they come out as text, never as HTML elements, links or images; leaderboard.html and .csv already did."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from typer.testing import CliRunner

from subtool.cli import app
from subtool.scoring.tables import md_cell

TEAM = "Eve<img src=x onerror=alert(1)>"
ACCELERATOR = (
    "AMD <script>alert(2)</script> [win](javascript:alert(3)) ![t](http://track.example/p.png) `x` a|b"
    " *bold* _u_ __b__ ~~s~~ https://evil.example/?q=<b>|x www.evil.example eve@evil.example"
)
_CODE_SPAN = re.compile(r"(?<![\\`])(`+)(?!`).*?(?<!`)\1(?!`)")  # an escaped \` opens none


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
    # a GFM renderer links a URL, www. or e-mail address by itself: each is only ever inside a code span
    outside_code = _CODE_SPAN.sub("", md)
    for link in ("http://", "https://", "www.", "@evil"):
        assert link not in outside_code, link
    assert "`https://evil.example/?q=&lt;b&gt;\\|x`" in md
    html = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(md)
    assert "<table>" in html  # the tables still render as tables
    for tag in ("<img", "<script", "<a ", "<b>", "<em>", "<strong>", "<s>", "<code>x</code>"):
        assert tag not in html, tag
    assert "Eve&lt;img src=x onerror=alert(1)&gt;" in html  # shown as the text it is
    # one cell still: the escaped | inside the code span split nothing
    assert "*bold* _u_ __b__ ~~s~~ <code>https://evil.example/?q=&amp;lt;b&amp;gt;|x</code>" in html


def test_md_cell_escapes_what_starts_html_links_code_and_cells():
    assert md_cell("<a href=x>&</a>") == "&lt;a href=x&gt;&amp;&lt;/a&gt;"
    assert md_cell("[x](y) `c` a|b \\") == "\\[x\\](y) \\`c\\` a\\|b \\\\"
    assert md_cell("two\nlines\r\nhere") == "two lines  here"


def test_md_cell_escapes_emphasis_and_puts_what_would_autolink_in_a_code_span():
    assert md_cell("*b* _u_ ~s~") == "\\*b\\* \\_u\\_ \\~s\\~"
    assert md_cell("see https://x.example/a_b*c and WWW.x.example") == (
        "see `https://x.example/a_b*c` and `WWW.x.example`"
    )
    assert md_cell("ftp://h/a|b <eve@x.example>") == "`ftp://h/a\\|b` `&lt;eve@x.example&gt;`"
    assert md_cell("http://a`b``c") == "```http://a`b``c```"  # the fence is longer than any run inside
    assert md_cell("`http://a`") == "`` `http://a` ``"
