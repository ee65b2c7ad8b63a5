"""leaderboard.html in a real headless browser (Debian's chromium): the tables and the bar charts render.

Another Chromium build can be named with SUBTOOL_CHROMIUM (e.g. google-chrome on GitHub's runners). The
screenshot is kept as a test artifact: in $SUBTOOL_TEST_ARTIFACTS/score/ when set (CI uploads that folder),
else in build/test-artifacts/score/ of the checkout (git ignores build/).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from teamgen import COMPETITION
from typer.testing import CliRunner

from subtool.cli import app

CHROMIUM = Path(os.environ.get("SUBTOOL_CHROMIUM") or "/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
needs_browser = pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason=f"no headless browser at {CHROMIUM}: apt-get install "
    "-y chromium (Debian), or set SUBTOOL_CHROMIUM to a Chromium/Chrome binary",
)
# Appended to a copy of the page only: measures what the browser laid out and writes it into the DOM.
MEASURE = """<script>
window.addEventListener("load", () => {
  const box = (el) => { const r = el.getBoundingClientRect(); return {w: r.width, h: r.height, x: r.x, y: r.y}; };
  const charts = [...document.querySelectorAll("svg.chart")].map((svg) => ({
    category: svg.dataset.category, box: box(svg),
    bars: [...svg.querySelectorAll("rect.bar")].map(box),
    labels: [...svg.querySelectorAll("text")].map((t) => t.textContent)}));
  const tables = [...document.querySelectorAll("table")].map((t) => ({cls: t.className, box: box(t),
    rows: t.querySelectorAll("tbody tr").length}));
  const pre = document.createElement("pre");
  pre.id = "layout";
  pre.textContent = JSON.stringify({charts, tables});
  document.body.appendChild(pre);
});
</script>"""


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def _artifact_dir() -> Path:
    base = os.environ.get("SUBTOOL_TEST_ARTIFACTS")
    folder = (Path(base) if base else REPO / "build" / "test-artifacts") / "score"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def page(sc_handins, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sc-html")
    for team in COMPETITION:
        shutil.copytree(sc_handins[team], root / "handins" / team)
    result = CliRunner().invoke(app, ["score", str(root / "handins"), "--out", str(root / "out"), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    return root / "out" / "leaderboard.html"


def test_page_is_self_contained(page):
    html = page.read_text()
    assert set(re.findall(r"https?://[^\"' >]+", html)) == {"http://www.w3.org/2000/svg"}  # a namespace only
    assert not re.search(r"\s(src|href)=", html) and "<link" not in html and "<script" not in html


@needs_browser
def test_browser_renders_tables_and_one_chart_per_category(page, tmp_path):
    doc = json.loads((page.parent / "leaderboard.json").read_text())
    measured = tmp_path / "measured.html"
    measured.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    dom = _chromium("--virtual-time-budget=5000", "--dump-dom", measured.as_uri(), profile=tmp_path / "p1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="layout">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stdout[-2000:]
    layout = json.loads(
        found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    )

    charts = {c["category"]: c for c in layout["charts"]}
    assert list(charts) == [c["name"] for c in doc["categories"]]
    for cat in doc["categories"]:
        chart = charts[cat["name"]]
        assert chart["box"]["w"] > 500 and chart["box"]["h"] > 40
        ranked = [r for r in cat["overall"] if r["status"] == "ranked"]
        segments = sum(1 for r in ranked for p in [*r["tasks"].values(), r["bonus"]] if p)
        assert len(chart["bars"]) == segments, cat["name"]
        assert all(b["w"] > 1 and b["h"] > 10 for b in chart["bars"])
        for row in ranked:
            assert any(row["team"] in label for label in chart["labels"])
    # the longest bar is the category's winner with all the points: bars scale with the totals
    nvidia = charts["NVIDIA GPUs"]["bars"]
    rows_y = sorted({b["y"] for b in nvidia})
    widths = [sum(b["w"] for b in nvidia if b["y"] == y) for y in rows_y]
    totals = [
        r["total"]
        for r in next(c for c in doc["categories"] if c["name"] == "NVIDIA GPUs")["overall"]
        if r["status"] == "ranked"
    ]
    assert [w / widths[0] for w in widths] == pytest.approx([t / totals[0] for t in totals], abs=0.01)

    tables = layout["tables"]
    assert sum(t["cls"] == "overall" for t in tables) == len(doc["categories"])
    assert all(t["box"]["h"] > 20 and t["box"]["w"] > 200 for t in tables)
    dq = next(t for t in tables if t["cls"] == "disqualified")
    assert dq["rows"] == len(doc["disqualified"]) == 3


@needs_browser
def test_screenshot_is_taken_and_kept(page, tmp_path):
    png = tmp_path / "leaderboard.png"
    shot = _chromium(
        f"--screenshot={png}", "--window-size=1200,1600", "--hide-scrollbars", page.as_uri(), profile=tmp_path / "p2"
    )
    assert shot.returncode == 0 and png.is_file(), shot.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1200, 1600)
    assert len(data) > 40_000  # a blank page compresses to a few KB; tables, text and bars do not
    shutil.copyfile(png, _artifact_dir() / "leaderboard.png")
    shutil.copyfile(page, _artifact_dir() / "leaderboard.html")
