"""Damaged archives and names that cannot be written (issue 19, items 1 and 2): a tarball whose gzip CRC or
length is wrong, that is cut short or padded with garbage, or whose member names are not UTF-8, is refused for
that team alone with a named rule; the other teams are ranked and every leaderboard file is written."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess

import pytest
from hostile import build, damaged_gzip
from typer.testing import CliRunner

from subtool.cli import app
from subtool.scoring.api import writable
from subtool.scoring.extract import ExtractLimits, Refused, extract_tarball

TARBALL = "mlperf_submission_short.tar.gz"


def _score(inputs, out, *extra):
    result = CliRunner().invoke(app, ["score", *map(str, inputs), "--out", str(out), "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads((out / "leaderboard.json").read_text()), result


def _errors(doc):
    return {e["input"].split("/")[-2]: e["error"]["rule"] for e in doc["entries"] if e["error"]}


def test_the_damaged_tarball_really_is_damaged_and_would_rank_first(sc_handins, tmp_path):
    """The test input is what the issue describes: gzip -t says crc error, and its result is bigger."""
    bad = damaged_gzip(sc_handins["Beta"] / TARBALL, tmp_path / "bad.tar.gz")
    if shutil.which("gzip"):
        probe = subprocess.run(["gzip", "-t", str(bad)], capture_output=True, text=True)
        assert probe.returncode != 0 and "crc error" in probe.stderr
    with pytest.raises(gzip.BadGzipFile):
        gzip.decompress(bad.read_bytes())
    dest = tmp_path / "x"
    dest.mkdir()
    with pytest.raises(Refused) as refused:
        extract_tarball(bad, dest, ExtractLimits())
    assert refused.value.rule == "extract.corrupt" and "CRC check failed" in refused.value.message


def test_crc_truncation_and_garbage_are_refused_per_team_and_the_others_ranked(sc_copy, tmp_path):
    handins = sc_copy(["Alpha", "Gamma"])
    cases = {
        "crc_flipped": "extract.corrupt",
        "cut_6_bytes": "extract.truncated",
        "trailing_garbage": "extract.corrupt",
        "data_after_tar_end": "extract.trailing_data",
    }
    for case in cases:
        (handins / case).mkdir()
        build(case, handins / "Alpha" / TARBALL, handins / case / TARBALL, tmp_path)
    doc, result = _score([handins], tmp_path / "out", "--jobs", "2")
    assert _errors(doc) == cases
    ranked = {r["team"] for c in doc["categories"] for r in c["overall"] if r["status"] == "ranked"}
    assert ranked == {"Alpha", "Gamma"}
    crc = next(e for e in doc["entries"] if e["input"].startswith("handins/crc_flipped/"))
    assert "CRC check failed" in crc["error"]["message"]
    for rule in cases.values():  # one line per refused team on the terminal
        assert f"{rule}: refused:" in result.stderr


def test_a_non_utf8_system_folder_refuses_that_team_and_every_output_is_written(sc_copy, tmp_path):
    handins = sc_copy(["Alpha", "Gamma"])
    (handins / "Mallory").mkdir()
    build("non_utf8_name", handins / "Gamma" / TARBALL, handins / "Mallory" / TARBALL, tmp_path)
    out = tmp_path / "out"
    doc, _ = _score([handins], out, "--jobs", "2", "--metrics", str(tmp_path / "metrics.csv"))
    assert _errors(doc) == {"Mallory": "extract.name_not_utf8"}
    for name in ("leaderboard.csv", "leaderboard.json", "leaderboard.md", "leaderboard.html"):
        (out / name).read_bytes().decode("utf-8")  # strict UTF-8, all four written
    assert "\\udcff" in (out / "leaderboard.json").read_text()  # the name is shown escaped, ASCII only
    ranked = {r["team"] for c in doc["categories"] for r in c["overall"] if r["status"] == "ranked"}
    assert ranked == {"Alpha", "Gamma"}


def test_an_extracted_tree_with_a_non_utf8_folder_is_refused(sc_handins, tmp_path):
    tree = tmp_path / "trees" / "Beta"
    shutil.copytree(sc_handins["_trees"] / "Beta" / "tree", tree)
    os.rename(
        os.fsencode(tree / "open" / "Beta" / "results" / "cluster"),
        os.fsencode(tree / "open" / "Beta" / "results") + b"/clu\xffster",
    )
    doc, _ = _score([tree], tmp_path / "out", "--jobs", "1")
    assert [e["error"]["rule"] for e in doc["entries"]] == ["extract.name_not_utf8"]


def test_text_no_output_can_hold_is_replaced_before_writing(sc_handins, tmp_path):
    """A JSON escape in a system description gives a lone surrogate, which UTF-8 cannot encode: the leaderboard
    is still written, with U+FFFD in its place; NaN and Infinity become null (strict JSON)."""
    tree = tmp_path / "trees" / "Beta"
    shutil.copytree(sc_handins["_trees"] / "Beta" / "tree", tree)
    system = tree / "open" / "Beta" / "systems" / "cluster.json"
    system.write_text(
        system.read_text().replace(
            '"accelerator_model_name": "AMD Instinct MI300X"', '"accelerator_model_name": "AMD Instinct \\udcff MI300X"'
        )
    )
    out = tmp_path / "out"
    doc, _ = _score([tree], out, "--jobs", "1")
    assert doc["entries"][0]["error"] is None
    assert "AMD Instinct \ufffd" in (out / "leaderboard.csv").read_text(encoding="utf-8")
    assert writable({"a": [float("nan"), float("inf"), "x\udcffy", "e\x1b[2Jf\tg\n"]}) == {
        "a": [None, None, "x\ufffdy", "e\ufffd[2Jf\tg\n"]
    }
