"""The submission path at the accuracy boundary: a closed bert-99 run whose accuracy sits exactly at, just over or
0.01 under the round's F1 threshold, laid out by `subtool package` and packed by `subtool pack`. At or over packs
PASS (exit 0); under packs FAIL (exit 1) with acc.below_threshold, so a threshold read even 0.01 low fails here."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from subtool.cli import app

THRESHOLD = 90.874 * 0.99  # bert-99's published F1 limit (never read from the code under test)
STEP = 0.01


def _with_f1(run_dir, f1: float) -> None:
    acc = run_dir / "accuracy" / "accuracy.txt"
    text, n = re.subn(r'("f1": )[0-9.]+', lambda m: m.group(1) + repr(f1), acc.read_text())
    assert n == 1
    acc.write_text(text)
    run = json.loads((run_dir / "run.json").read_text())
    run["modes"]["accuracy"]["metrics"]["f1"] = f1
    (run_dir / "run.json").write_text(json.dumps(run, indent=2))


@pytest.mark.parametrize(
    "where, f1, verdict",
    [("at", THRESHOLD, "PASS"), ("over", THRESHOLD + STEP, "PASS"), ("under", THRESHOLD - STEP, "FAIL")],
)
def test_package_and_pack_at_the_f1_threshold(pkg_lg, pkg_copy, tmp_path, where, f1, verdict):
    runs = [pkg_copy(pkg_lg[scenario], f"{scenario}-{where}") for scenario in ("Offline", "SingleStream")]
    for run_dir in runs:  # closed edge bert-99 needs both scenarios
        _with_f1(run_dir, f1)
    tree = tmp_path / "tree"
    packaged = CliRunner().invoke(
        app,
        [
            "package",
            *(a for r in runs for a in ("--from", str(r))),
            "--submitter",
            "TeamX",
            "--out",
            str(tree),
            "--json",
        ],
    )
    assert packaged.exit_code == 0, packaged.output
    texts = [p.read_text() for p in tree.glob("closed/TeamX/results/*/bert-99/*/accuracy/accuracy.txt")]
    assert len(texts) == 2 and all(repr(f1) in t for t in texts)
    packed = CliRunner().invoke(
        app, ["pack", str(tree), "--out", str(tmp_path / "art"), "--waive", "perf.min_duration", "--json"]
    )
    doc = json.loads(packed.stdout)
    assert (packed.exit_code, doc["verdict"]) == ((0 if verdict == "PASS" else 1), verdict), packed.output
    assert doc["errors"] == (0 if verdict == "PASS" else 2)  # one per scenario
    assert ("acc.below_threshold" in packed.stderr) is (verdict == "FAIL")
