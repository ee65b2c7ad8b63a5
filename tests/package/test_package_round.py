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


def _seeded(run_dir, tmp_path, name: str, round_: str | None):
    """A copy of `run_dir` whose run.json records the round of the seeds it ran with, as `subtool run` writes it."""
    import shutil

    from tests.support.submission_fixtures import PKG_V51_SEEDS

    copy = tmp_path / name
    shutil.copytree(run_dir, copy)
    record = json.loads((copy / "run.json").read_text())
    record["seeds"] = {"round": round_, **PKG_V51_SEEDS, "set_by": "--version"} if round_ else None
    (copy / "run.json").write_text(json.dumps(record))
    return copy


def test_runs_made_with_an_older_rounds_seeds_are_packaged_for_that_round(pkg_lg, tmp_path):
    # `run --version v5.1` then `package` without it: the new tree was laid out for v6.1 and failed perf.seeds
    offline = _seeded(pkg_lg["v51_Offline"], tmp_path, "offline", "v5.1")
    single = _seeded(pkg_lg["v51_SingleStream"], tmp_path, "single", "v5.1")
    out = tmp_path / "tree"
    args = ["package", "--from", str(offline), "--from", str(single), "--submitter", "TeamX", "--division", "closed"]
    packaged = runner.invoke(app, [*args, "--out", str(out)])
    assert packaged.exit_code == 0, packaged.output
    assert "round v5.1: the runs were made with v5.1's LoadGen seeds (run.json)" in packaged.stderr
    assert (out / "closed/TeamX/measurements").is_dir() and not (out / "closed/TeamX/src").exists()
    checked = runner.invoke(app, ["check", str(out), "--waive", "perf.min_duration", "--json"])
    doc = json.loads(checked.stdout)
    assert checked.exit_code == 0 and doc["version"] == "v5.1" and len(doc["results"]) == 2, doc["findings"]


def test_runs_of_two_rounds_seeds_are_not_filed_by_either(pkg_lg, tmp_path):
    older = _seeded(pkg_lg["v51_Offline"], tmp_path, "older", "v5.1")
    unknown = _seeded(pkg_lg["v51_SingleStream"], tmp_path, "unknown", None)
    args = ["package", "--from", str(older), "--from", str(unknown), "--submitter", "TeamX", "--division", "closed"]
    packaged = runner.invoke(app, [*args, "--out", str(tmp_path / "tree")])
    assert "the runs were made with" not in packaged.stderr  # one run says nothing: the benchmarks decide
    assert (tmp_path / "tree/closed/TeamX/src").is_dir()
