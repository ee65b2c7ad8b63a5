"""`subtool package` without --version into a tree that already exists: the results join it in its own layout.
A second package into a v5.1 tree once wrote the v6 layout beside the v5 one (src/ beside code/, measurements.json
in the result folder), and the tree failed every check."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from subtool.cli import app

runner = CliRunner()


def _package(run_dir, out, *version: str):
    args = ["package", "--from", str(run_dir), "--submitter", "TeamX", "--division", "closed", "--out", str(out)]
    return runner.invoke(app, [*args, *(("--version", *version) if version else ())])


def test_a_second_package_without_version_keeps_the_trees_v5_layout(pkg_lg, tmp_path):
    out = tmp_path / "tree"
    assert _package(pkg_lg["v51_Offline"], out, "v5.1").exit_code == 0
    second = _package(pkg_lg["v51_SingleStream"], out)
    assert second.exit_code == 0, second.output
    assert "round v5.1: the tree is laid out for v5.0, v5.1 (closed/TeamX holds measurements/" in second.stderr
    assert sorted(p.name for p in (out / "closed/TeamX").iterdir()) == [
        "code",
        "compliance",
        "documentation",
        "measurements",
        "results",
        "systems",
    ]
    checked = runner.invoke(app, ["check", str(out), "--waive", "perf.min_duration", "--json"])
    doc = json.loads(checked.stdout)
    assert checked.exit_code == 0 and doc["version"] == "v5.1" and len(doc["results"]) == 2, doc["findings"]


def test_version_given_still_decides_where_package_writes(pkg_lg, tmp_path):
    out = tmp_path / "tree"
    assert _package(pkg_lg["v51_Offline"], out, "v5.1").exit_code == 0
    assert _package(pkg_lg["Offline"], tmp_path / "fresh").exit_code == 0  # no tree yet: the default round
    assert (tmp_path / "fresh/closed/TeamX/src").is_dir()
    assert _package(pkg_lg["SingleStream"], out, "v6.1").exit_code == 0
    assert (out / "closed/TeamX/src").is_dir()  # the user asked for v6.1: written as v6.1 lays it out
