"""`subtool score` end to end on teams' hand-ins made by the real pack stage from real LoadGen logs: categories,
ranks and points, the disqualified teams with the checker's reasons, every output file, the verdict metrics."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from teamgen import COMPETITION
from typer.testing import CliRunner

from subtool.cli import app
from subtool.scoring.rules import default_rules_text

TARBALL = "mlperf_submission_short.tar.gz"


def _score(*args: str):
    result = CliRunner().invoke(app, ["score", *args, "--json"])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def board(sc_handins, tmp_path_factory):
    """All seven teams scored once (two workers); the module's tests read the outputs."""
    root = tmp_path_factory.mktemp("sc-board")
    handins = root / "handins"
    for team in COMPETITION:
        shutil.copytree(sc_handins[team], handins / team)
    out = root / "out"
    result = _score(str(handins), "--out", str(out), "--metrics", str(out / "metrics.csv"), "--jobs", "2")
    return {
        "out": out,
        "handins": handins,
        "stdout": json.loads(result.stdout),
        "stderr": result.stderr,
        "doc": json.loads((out / "leaderboard.json").read_text()),
    }


def _category(doc: dict, name: str) -> dict:
    return next(c for c in doc["categories"] if c["name"] == name)


def _perf_value(handins: Path, team: str, bench: str) -> float:
    """The throughput LoadGen logged, read straight from the team's tarball."""
    with tarfile.open(handins / team / TARBALL, "r:gz") as tar:
        member = f"open/{team}/results/cluster/{bench}/Offline/performance/run_1/mlperf_log_detail.txt"
        text = tar.extractfile(member).read().decode()
    key = "result_tokens_per_second" if bench.startswith("llama") else "result_samples_per_second"
    for line in text.splitlines():
        if f'"key": "{key}"' in line:
            return float(json.loads(line.split(":::MLLOG ", 1)[1])["value"])
    raise AssertionError(f"{key} not in {member}")


def test_teams_land_in_their_hardware_categories(board):
    doc = board["doc"]
    placed = {row["team"]: cat["name"] for cat in doc["categories"] for row in cat["overall"]}
    assert placed == {team: category for team, (category, _) in COMPETITION.items()}
    assert [c["name"] for c in doc["categories"]] == [
        "CPUs",
        "NVIDIA GPUs",
        "AMD GPUs",
        "Intel GPUs and accelerators",
    ]  # the rules' order
    assert doc["counts"] == {
        "inputs": 7,
        "scored": 7,
        "errors": 0,
        "ranked": 5,
        "disqualified": 3,
        "flagged": 0,
        "retried": 0,
        "skipped": 0,
    }


def test_task_ranks_follow_the_logged_throughput_and_points_are_relative_to_the_best(board):
    rows = _category(board["doc"], "NVIDIA GPUs")["tasks"]["BERT-99 Offline"]
    assert {r["team"] for r in rows} == {"Alpha", "Delta", "Epsilon"}
    for row in rows:
        assert row["value"] == pytest.approx(_perf_value(board["handins"], row["team"], "bert-99"))
        assert row["units"] == "Samples/s" and row["accuracy"] == "F1: 90.874" and row["run_style"] == "short"
    values = [r["value"] for r in rows]
    assert values == sorted(values, reverse=True) and [r["rank"] for r in rows] == [1, 2, 3]
    assert [r["points"] for r in rows] == [round(100 * v / values[0], 2) for v in values]


def test_failed_accuracy_is_disqualified_with_the_checkers_reason_and_scores_zero(board):
    nvidia = _category(board["doc"], "NVIDIA GPUs")
    llama = {r["team"]: r for r in nvidia["tasks"]["Llama2-70B Offline"]}
    assert llama["Alpha"]["status"] == "ranked" and llama["Alpha"]["points"] == 100.0
    assert llama["Alpha"]["units"] == "Tokens/s"
    assert llama["Alpha"]["value"] == pytest.approx(_perf_value(board["handins"], "Alpha", "llama2-70b-99.9"))
    delta = llama["Delta"]
    assert delta["status"] == "disqualified" and delta["rank"] is None and delta["points"] == 0.0
    assert delta["reason"].startswith("acc.below_threshold: ROUGE1 30.1 is below the v6.1 threshold")
    assert "open/Delta/results/cluster/llama2-70b-99.9/Offline/accuracy/accuracy.txt" in delta["reason"]
    overall = {r["team"]: r for r in nvidia["overall"]}
    bert = {r["team"]: r["points"] for r in nvidia["tasks"]["BERT-99 Offline"]}
    assert overall["Alpha"]["total"] == pytest.approx(bert["Alpha"] + 100.0)
    assert overall["Delta"]["status"] == "ranked" and overall["Delta"]["total"] == bert["Delta"]  # llama: 0
    assert overall["Delta"]["tasks"] == {"BERT-99 Offline": bert["Delta"], "Llama2-70B Offline": None}
    totals = [r["total"] for r in nvidia["overall"]]
    assert totals == sorted(totals, reverse=True)


def test_a_team_the_checker_fails_is_listed_with_the_reason(board):
    doc = board["doc"]
    zeta = _category(doc, "Intel GPUs and accelerators")["overall"]
    assert [(r["team"], r["status"]) for r in zeta] == [("Zeta", "disqualified")]
    assert "system.status_invalid" in zeta[0]["reason"] and "open/Zeta/systems/cluster.json" in zeta[0]["reason"]
    dq = {(d["team"], d["task"]): d["reason"] for d in doc["disqualified"]}
    assert set(dq) == {("Delta", "Llama2-70B Offline"), ("Zeta", "BERT-99 Offline"), ("Eta", "BERT-99 Offline")}
    assert "sometime" in dq[("Zeta", "BERT-99 Offline")]
    assert dq[("Eta", "BERT-99 Offline")].startswith("perf.result_invalid: ")
    assert "Zeta" in board["stderr"] and "system.status_invalid" in board["stderr"]


def test_honest_hand_ins_raise_no_flags(board):
    for entry in board["doc"]["entries"]:
        assert entry["flags"] == [], entry["input"]
        tarball = board["handins"].parent / entry["input"]
        assert entry["sha256"] == hashlib.sha256(tarball.read_bytes()).hexdigest()
        assert entry["status"] == "scored" and entry["kind"] == "tarball"


def test_csv_and_markdown_carry_the_same_tables(board):
    rows = list(csv.DictReader(io.StringIO((board["out"] / "leaderboard.csv").read_text())))
    by = {(r["category"], r["board"], r["team"]): r for r in rows}
    assert by[("NVIDIA GPUs", "overall", "Alpha")]["rank"] == "1"
    delta = by[("NVIDIA GPUs", "Llama2-70B Offline", "Delta")]
    assert delta["status"] == "disqualified" and "acc.below_threshold" in delta["reason"]
    assert by[("CPUs", "BERT-99 Offline", "Gamma")]["units"] == "Samples/s"
    assert {r["board"] for r in rows} == {"overall", "BERT-99 Offline", "Llama2-70B Offline"}
    md = (board["out"] / "leaderboard.md").read_text()
    for heading in (
        "# Student Cluster Competition: MLPerf Inference",
        "## NVIDIA GPUs",
        "### Overall",
        "### Llama2-70B Offline",
        "## Disqualified and not ranked",
    ):
        assert heading in md.splitlines(), heading
    assert "| Rank   | Team    | System   | Accelerator" in md
    assert "4 × NVIDIA H100-SXM-80GB" in md and "2 × NVIDIA GeForce RTX 4090" in md


def test_verdict_metrics_one_row_per_result(board):
    rows = list(csv.DictReader(io.StringIO((board["out"] / "metrics.csv").read_text())))
    key = {(r["submitter"], r["benchmark"]): r for r in rows}
    assert len(rows) == 9 and len(key) == 9
    assert key[("Delta", "llama2-70b-99.9")]["AccuracyMode"] == "0.0"
    assert key[("Delta", "llama2-70b-99.9")]["PerformanceMode"] == "1.0"
    assert key[("Alpha", "bert-99")]["AccuracyMode"] == "1.0" and key[("Alpha", "bert-99")]["Units"] == "Samples/s"
    assert (key[("Eta", "bert-99")]["AccuracyMode"], key[("Eta", "bert-99")]["PerformanceMode"]) == ("1.0", "0.0")
    assert "perf.result_invalid" in key[("Eta", "bert-99")]["failed"].split()
    assert all(r["scenario"] == "Offline" for r in rows)


def test_metrics_json_uses_virtualclient_names(board, tmp_path):
    out = tmp_path / "again"
    _score(str(board["handins"] / "Delta"), "--out", str(out), "--metrics", str(out / "m.json"), "--jobs", "1")
    rows = json.loads((out / "m.json").read_text())["results"]
    llama = next(r for r in rows if r["benchmark"] == "llama2-70b-99.9")
    names = {m["metricName"]: m for m in llama["metrics"]}
    stem = "cluster-PyTorch_k_99_9_MaxP-Offline"  # <system>-<harness>_k_<variant>_<power>-<scenario>
    assert names[f"{stem}-AccuracyMode"]["metricValue"] == 0.0
    assert names[f"{stem}-AccuracyMode"]["metricUnit"] == "PASS/FAIL"
    assert names[f"{stem}-PerformanceMode"] == {
        "metricName": f"{stem}-PerformanceMode",
        "metricValue": 1.0,
        "metricUnit": "VALID/INVALID",
        "metricRelativity": "HigherIsBetter",
        "metricMetadata": {
            "input": "Delta/mlperf_submission_short.tar.gz",
            "submitter": "Delta",
            "system": "cluster",
            "benchmark": "llama2-70b-99.9",
            "scenario": "Offline",
        },
    }
    assert names[f"{stem}-Result"]["metricUnit"] == "Tokens/s"


def test_trees_single_tarballs_and_wrapped_tarballs_are_inputs_too(sc_handins, tmp_path):
    tree = sc_handins["_trees"] / "Beta" / "tree"  # already extracted
    wrapped = tmp_path / "wrapped"  # MLC: tar czf x.tar.gz submission_dir
    shutil.copytree(sc_handins["_trees"] / "Gamma" / "tree", wrapped / "mlperf_submission")
    subprocess.run(["tar", "czf", str(tmp_path / "gamma.tar.gz"), "-C", str(wrapped), "mlperf_submission"], check=True)
    out = tmp_path / "out"
    result = _score(
        str(tree),
        str(sc_handins["Epsilon"] / TARBALL),
        str(tmp_path / "gamma.tar.gz"),
        "--out",
        str(out),
        "--jobs",
        "1",
    )
    doc = json.loads((out / "leaderboard.json").read_text())
    kinds = {e["input"]: (e["kind"], e["teams"], e["flags"]) for e in doc["entries"]}
    assert kinds["tree"] == ("tree", ["Beta"], [])
    assert kinds[TARBALL] == ("tarball", ["Epsilon"], [])
    assert kinds["gamma.tar.gz"][:2] == ("tarball", ["Gamma"])
    # handed in without its companions: each missing file is flagged, the result still counts
    assert sorted(f["message"] for f in kinds["gamma.tar.gz"][2]) == [
        "no gamma.md beside the tarball",
        "no gamma.run beside the tarball",
        "no gamma.tstamps beside the tarball",
        "no gamma_summary.json beside the tarball",
    ]
    assert {r["team"] for c in doc["categories"] for r in c["overall"] if r["status"] == "ranked"} == {
        "Beta",
        "Gamma",
        "Epsilon",
    }
    assert json.loads(result.stdout)["counts"]["scored"] == 3


def test_rules_file_rank_points_bonus_and_disqualify_on_a_failed_task(sc_copy, tmp_path):
    handins = sc_copy(["Alpha", "Delta", "Epsilon"])
    text = default_rules_text()
    text = text.replace('failed_result = "zero"', 'failed_result = "disqualify"')
    text = text.replace(
        'points = "relative"\nmax_points = 100\nweight = 1.0\n\n[[task]]\nname = "Llama2-70B',
        'points = "rank"\nrank_points = [50, 30]\nweight = 2.0\n\n[[task]]\nname = "Llama2-70B',
    )
    text += (
        '\n[[bonus]]\nname = "consumer GPU"\npoints = 5\ntasks = ["BERT-99 Offline"]\n'
        "match = { accelerator_model_name = 'geforce' }\n"
    )
    rules = tmp_path / "rules.toml"
    rules.write_text(text)
    out = tmp_path / "out"
    _score(str(handins), "--out", str(out), "--rules", str(rules))
    doc = json.loads((out / "leaderboard.json").read_text())
    nvidia = _category(doc, "NVIDIA GPUs")
    bert = nvidia["tasks"]["BERT-99 Offline"]
    ranked = [r for r in bert if r["status"] == "ranked"]
    # Alpha's SUT answers faster than Epsilon's, but both throughputs are real LoadGen timings: on a loaded machine
    # the order can swap, so the expected order is the one the measured values give (Delta is out altogether).
    assert sorted(r["team"] for r in ranked) == ["Alpha", "Epsilon"]
    assert ranked[0]["value"] >= ranked[1]["value"]
    assert [r["points"] for r in ranked] == [100.0, 60.0]  # rank points × weight 2
    by_team = {r["team"]: r for r in ranked}
    assert by_team["Epsilon"]["bonus"] == 5.0 and by_team["Epsilon"]["bonus_for"] == ["consumer GPU"]
    assert by_team["Alpha"].get("bonus", 0) in (0, 0.0, None) and not by_team["Alpha"].get("bonus_for")
    overall = {r["team"]: r for r in nvidia["overall"]}
    alpha_bert = by_team["Alpha"]["points"]  # Alpha also has the Llama2-70B task (relative points, 100 as the best)
    assert overall["Epsilon"]["total"] == by_team["Epsilon"]["points"] + 5.0
    assert overall["Alpha"]["total"] == alpha_bert + 100.0
    assert overall["Delta"]["status"] == "disqualified"
    assert overall["Delta"]["reason"].startswith("Llama2-70B Offline: acc.below_threshold")
    assert doc["rules"]["source"] == str(rules) and doc["rules"]["failed_result"] == "disqualify"


def test_bad_rules_and_bad_inputs_are_usage_errors(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text(default_rules_text().replace('version = "v6.1"', 'version = "v6.1"\nverison = "v6.0"'))
    (tmp_path / "in").mkdir()
    result = CliRunner().invoke(
        app, ["score", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--rules", str(rules)]
    )
    assert result.exit_code == 2
    assert "check: unknown key verison [score.rules]" in result.output
    result = CliRunner().invoke(app, ["score", str(tmp_path / "in"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no .tar.gz / .tgz and no submission tree" in result.output
    result = CliRunner().invoke(app, ["score", str(tmp_path / "missing.tar.gz"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no such file or folder [score.input]" in result.output
    result = CliRunner().invoke(
        app, ["score", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--metrics", str(tmp_path / "m.xlsx")]
    )
    assert result.exit_code == 2 and "must end in .json or .csv" in result.output
    assert not (tmp_path / "o").exists()  # nothing written before the work starts


def test_a_folder_where_one_leaderboard_goes_leaves_the_previous_set_whole(sc_copy, tmp_path):
    """leaderboard.md is a folder: neither the scoring nor its write may replace the csv and json first (the
    set would then mix two scorings), and the line names leaderboard.md."""
    from subtool.scoring.api import write_outputs

    handins, out = sc_copy(["Gamma"]), tmp_path / "out"
    _score(str(handins), "--out", str(out), "--jobs", "1")
    (out / "leaderboard.md").unlink()
    (out / "leaderboard.md").mkdir()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    sc_copy(["Beta"])  # a second team: every leaderboard would change
    result = CliRunner().invoke(app, ["score", str(handins), "--out", str(out), "--jobs", "1"])
    said = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert f"error: {out / 'leaderboard.md'}: cannot replace: a folder is in the place of this output" in said
    assert "[io.eisdir]" in said
    # the write itself checks too (the folder may appear while the teams are scored)
    doc = json.loads(before["leaderboard.json"])
    doc["title"] = "another scoring"
    with pytest.raises(OSError) as err:
        write_outputs(doc, out, [], None)
    assert err.value.rule == "io.eisdir" and err.value.path == str(out / "leaderboard.md")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
