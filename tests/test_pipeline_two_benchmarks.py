"""One team, two benchmarks, one hand-in: the bert demo and the llama3.1-8b demo into one `--out`, through the CLI.

The two `subtool all` runs are made once (the `two_demos` session fixture); each test reads or copies what they
left. What a second benchmark must not break: `.run`/`.tstamps` cover both runs and subtool's own scorer finds
nothing to flag (item 7); the shared system description lists both suites and counts a multi-node run's nodes
(item 9); the reproduction steps in the tree work from the tree (item 13); the summary is portable and says the
same in its CSV and JSON, loose demo logs stay a demo, the full logs stay inside --out (item 14); latency
percentiles reach the .md, the summary and --json, in one number notation (item 15).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from typer.testing import CliRunner

from subtool.cli import app

NAME = "mlperf_submission_short"
SUB = Path("open/TeamX")
runner = CliRunner()


def _cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _system(tree: Path) -> tuple[Path, dict]:
    systems = sorted((tree / SUB / "systems").glob("*.json"))
    assert len(systems) == 1, systems
    return systems[0], json.loads(systems[0].read_text())


def _result_dirs(tree: Path) -> dict[str, Path]:
    return {p.parent.name: p for p in (tree / SUB / "results").glob("*/*/Offline")}


# ------------------------------------------------------------------------------------------------ item 7
def test_run_and_tstamps_cover_both_benchmarks_and_the_scorer_flags_nothing(two_demos, tmp_path):
    out, docs = two_demos
    art = out / "artifacts"
    script = (art / f"{NAME}.run").read_text()
    bert, llama = (shlex.join(d["argv"]) for d in docs)
    assert script.count(bert + "\n") == 1 and script.count(llama + "\n") == 1
    assert script.index(bert) < script.index(llama)  # oldest run first
    assert script.count(f"date -u >> {NAME}.tstamps") == 4  # a pair around each run
    for model in ("bert-99", "llama3.1-8b"):
        assert re.search(rf"packed as open/TeamX/results/[^/]+/{re.escape(model)}/Offline", script)
    if shutil.which("bash"):
        assert subprocess.run(["bash", "-n", str(art / f"{NAME}.run")]).returncode == 0
    stamps = (art / f"{NAME}.tstamps").read_text().splitlines()
    assert len(stamps) == 4, stamps

    res = _cli("score", art, "--out", tmp_path / "score", "--json")
    assert res.exit_code == 0, res.output
    board = json.loads((tmp_path / "score" / "leaderboard.json").read_text())
    [entry] = board["entries"]
    assert entry["flags"] == [], entry["flags"]  # tstamps.outside was the bug
    assert {r["model"] for r in entry["results"]} == {"bert-99", "llama3.1-8b"}


# ------------------------------------------------------------------------------------------------ item 9
def test_shared_system_lists_both_suites(two_demos):
    out, docs = two_demos
    tree = out / "submission"
    _, system = _system(tree)
    assert system["system_type"] == "datacenter,edge"  # bert-99 is edge, llama3.1-8b datacenter
    assert "system_type 'edge' → 'datacenter,edge'" in " ".join(docs[1]["stderr"].split())
    assert docs[1]["doc"]["check_ok"] is True
    rows = (out / "artifacts" / f"{NAME}_summary.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 and all('"datacenter,edge"' in row for row in rows)


def test_official_checker_takes_both_benchmarks_of_the_shared_system(two_demos, official_checker, tmp_path):
    out, _ = two_demos
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "submission_checker.main",
            "--input",
            str(out / "submission"),
            "--version",
            "v6.1",
            "--csv",
            str(tmp_path / "official.csv"),
        ],
        cwd=official_checker,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [
        ln
        for ln in (proc.stdout + proc.stderr).splitlines()
        if " ERROR] " in ln
        and not re.search(
            r"Test duration less than 600s|Some .* failed for|SUMMARY: submission has errors|"
            r"NoResults",
            ln,
        )
    ]
    assert errors == [], errors
    # both results are read as results of the shared, widened system: only the short duration stops them
    short = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "Test duration less than 600s" in ln]
    assert len(short) == 2 and any("/bert-99/" in ln for ln in short) and any("/llama3.1-8b/" in ln for ln in short)


def test_a_multi_node_run_sets_number_of_nodes(two_demos, tmp_path):
    out, _ = two_demos
    tree = tmp_path / "submission"
    shutil.copytree(out / "submission", tree)
    run = tmp_path / "runs" / "llama3.1-8b" / "Offline"
    shutil.copytree(out / "runs" / "llama3.1-8b" / "Offline", run)
    record = json.loads((run / "run.json").read_text())
    record["sut"] = {
        "workers": 3,
        "per_worker": [{"node": "10.0.0.1", "samples": 1}, {"node": "10.0.0.2"}, {"node": "10.0.0.2"}],
    }
    (run / "run.json").write_text(json.dumps(record))
    res = _cli(
        "package", "--from", run, "--submitter", "TeamX", "--out", tree, "--force", "--full-logs", tmp_path / "full"
    )
    assert res.exit_code == 0, res.output
    _, system = _system(tree)
    assert system["number_of_nodes"] == 2  # two Ray nodes ran it
    assert system["system_type"] == "datacenter,edge"  # widened, never narrowed again
    assert "number_of_nodes 1 → 2" in " ".join(res.output.split())


# ----------------------------------------------------------------------------------------------- item 13
def test_reproduction_steps_work_from_the_tree(two_demos, tmp_path):
    out, docs = two_demos
    sub = out / "submission" / SUB
    copy = sub / "src" / "subtool-0.1.0"
    readme = (_result_dirs(out / "submission")["llama3.1-8b"] / "README.md").read_text()
    assert "pip install './src/subtool-0.1.0[run]'" in readme and "mlperf-subtool==" not in readme
    assert "subtool all --submitter TeamX --model llama3.1-8b --demo" in readme
    # the submitter's documents name the second benchmark too, not only the first packaged
    docs_readme = (sub / "documentation" / "README.md").read_text()
    assert re.search(r"^- \S+ / bert-99 / Offline", docs_readme, re.M)
    assert re.search(r"^- \S+ / llama3\.1-8b / Offline", docs_readme, re.M)
    assert "--model llama3.1-8b --demo" in (sub / "src" / "README.md").read_text()
    # the copy installs as the distribution that ran, with its `run` extra, without any package index
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path / "wheel"),
            str(copy),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    [wheel] = list((tmp_path / "wheel").glob("mlperf_subtool-0.1.0-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert {"subtool/cli.py", "subtool/schemas/system_desc.schema.json", "subtool/scoring/default_rules.toml"} <= names
    assert "Provides-Extra: run" in meta and re.search(r"Requires-Dist: torch>=2\.4; extra == .run.", meta)
    assert "subtool = subtool.cli:main" in entry_points


def test_repackaged_under_another_submitter_the_steps_name_it(two_demos, tmp_path):
    out, _ = two_demos
    tree, art = tmp_path / "tree", tmp_path / "art"
    res = _cli("package", "--from", out / "runs", "--submitter", "TeamY", "--out", tree)
    assert res.exit_code == 0, res.output
    readme = (next((tree / "open" / "TeamY" / "results").glob("*/llama3.1-8b/Offline")) / "README.md").read_text()
    assert "subtool all --submitter TeamY --model llama3.1-8b --demo" in readme and "TeamX" not in readme
    res = _cli("pack", tree, "--out", art, "--runs", out / "runs", "--waive", "perf.min_duration")
    assert res.exit_code == 0, res.output
    script = (art / f"{NAME}.run").read_text()
    # the benchmarks ran as TeamX; the tree was laid out for TeamY by `subtool package`, which the script says
    assert "subtool all --submitter TeamX" in script
    assert re.search(r"\nsubtool package --from \S+ --from \S+ --submitter TeamY --division open", script)
    assert "`subtool all` above also packs" not in script and f"\nsubtool pack {tree}" in script
    assert len((art / f"{NAME}.tstamps").read_text().splitlines()) == 4


# ----------------------------------------------------------------------------------------------- item 14
def test_summary_is_portable_and_says_the_same_in_csv_and_json(two_demos):
    out, _ = two_demos
    art = out / "artifacts"
    csv_text = (art / f"{NAME}_summary.csv").read_text()
    json_text = (art / f"{NAME}_summary.json").read_text()
    assert str(out) not in csv_text and str(out).replace("/", "\\/") not in json_text  # no packer's paths
    import csv

    rows = list(csv.DictReader(csv_text.splitlines()))
    doc = json.loads(json_text)
    for i, row in enumerate(rows):
        assert re.fullmatch(r"open/TeamX/results/[^/]+/[^/]+/Offline/performance/run_1", row["Location"])
        assert doc[str(i)]["Location"] == row["Location"]
        # the same accelerator in both (a bare "N/A" would be null in the JSON)
        assert doc[str(i)]["accelerator_model_name"] == row["accelerator_model_name"] != ""
        # v6.1 without a power run: the official checker writes None, MLC's pandas JSON null
        assert row["design_power_watts"] == "None" and doc[str(i)]["design_power_watts"] is None


def test_full_accuracy_logs_are_stored_once(two_demos):
    out, _ = two_demos
    for model in ("bert-99", "llama3.1-8b"):
        run_log = out / "runs" / model / "Offline" / "accuracy" / "mlperf_log_accuracy.json"
        [kept] = list((out / "full_logs").glob(f"open/TeamX/*/{model}/Offline/accuracy/mlperf_log_accuracy.json"))
        assert kept.stat().st_ino == run_log.stat().st_ino  # one file, two names: not 2 x 65 MB


def test_loose_logs_of_a_demo_stay_a_demo_inside_out(two_demos, tmp_path):
    out, _ = two_demos
    run = out / "runs" / "bert-99" / "Offline"
    tree = tmp_path / "loose"
    args = [
        "package",
        "--perf",
        run / "performance" / "run_1",
        "--acc",
        run / "accuracy",
        "--model",
        "bert-99",
        "--submitter",
        "TeamZ",
        "--out",
        tree,
    ]
    res = _cli(*args, "--division", "closed")
    assert res.exit_code == 2 and "[package.demo_closed]" in res.output
    res = _cli(*args)
    assert res.exit_code == 0, res.output
    [result] = list((tree / "open" / "TeamZ" / "results").glob("*/bert-99/Offline"))
    assert result.parent.parent.name.endswith("-demo")
    assert "**DEMO**" in (result / "README.md").read_text()
    weights = json.loads((result / "measurements.json").read_text())["starting_weights_filename"]
    assert "zenodo" not in weights and "demo" in weights.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loose"]  # no loose_full_logs beside --out
    assert list((tree / ".full_logs").rglob("mlperf_log_accuracy.json"))


# ----------------------------------------------------------------------------------------------- item 15
def test_latency_percentiles_reach_md_summary_and_json_in_one_notation(two_demos, tmp_path):
    out, docs = two_demos
    art = out / "artifacts"
    block = json.loads((art / f"{NAME}_summary.json").read_text())["subtool"]
    lat = block["latency_percentiles"]
    assert {k.split("/")[-2] for k in lat} == {"bert-99", "llama3.1-8b"}
    assert all(set(v["latency_ms"]) >= {"p50", "p90", "p99"} for v in lat.values())
    md = (art / f"{NAME}.md").read_text()
    assert "## Latency percentiles" in md and "| llama3.1-8b Offline | query latency |" in md
    ours = md.split("## Checker findings")[0]  # the findings quote the checker's words
    assert not re.search(r"\de[+-]\d", ours)  # no 7.35088e+06
    assert docs[1]["doc"]["run"]["latency_ms"]["p99"] > 0  # `all --json`
    res = _cli(
        "pack",
        out / "submission",
        "--out",
        tmp_path / "art",
        "--runs",
        out / "runs",
        "--waive",
        "perf.min_duration",
        "--json",
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["latency_percentiles"] == lat  # `pack --json`
    stderr = " ".join(docs[1]["stderr"].split())
    assert "gen_num = 13368 " in stderr and "13368.000" not in stderr
    assert re.search(r"gen_len \d+ < 7350879\.6", stderr)  # not 1.43791e+06 < 7.35088e+06


# ------------------------------------------------------------------------------- items 7, 8 and 12 together
def _git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def test_two_demos_publish_to_a_local_fork_and_score_as_one_hand_in(two_demos, tmp_path):
    """Issue 20's walk-through: bert demo + llama demo in one --out, publish to a local fork, score the artifacts:
    one hand-in, both results, no integrity finding, both on the branch — and a demo is published only when
    the user says so, marked as a demo."""
    out, _ = two_demos
    seed = tmp_path / "seed"
    seed.mkdir()
    _git("init", "-q", "-b", "main", cwd=seed)
    (seed / "README.md").write_text("results\n")
    _git("add", "-A", cwd=seed)
    _git("-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "start", cwd=seed)
    fork = tmp_path / "fork.git"
    _git("clone", "-q", "--bare", str(seed), str(fork))

    refused = _cli("publish", out / "submission", "--fork", fork, "--cache", tmp_path / "cache")
    assert refused.exit_code == 2 and "publish.short_run" in refused.stderr, refused.output
    assert _git("--git-dir", str(fork), "branch", "--list", "subtool/*") == ""  # nothing was pushed

    res = _cli("publish", out / "submission", "--fork", fork, "--cache", tmp_path / "cache", "--allow-short")
    assert res.exit_code == 0, res.output
    [branch] = _git("--git-dir", str(fork), "branch", "--list", "subtool/*").split()
    files = _git("--git-dir", str(fork), "ls-tree", "-r", "--name-only", branch).splitlines()
    for model in ("bert-99", "llama3.1-8b"):
        assert any(
            re.match(
                rf"open/TeamX/results/[^/]+/{re.escape(model)}/Offline/performance/run_1/"
                r"mlperf_log_detail\.txt$",
                f,
            )
            for f in files
        ), (model, files)
    assert "DEMO" in _git("--git-dir", str(fork), "log", "-1", "--format=%B", branch)

    score = _cli("score", out / "artifacts", "--out", tmp_path / "score", "--json")
    assert score.exit_code == 0, score.output
    [entry] = json.loads((tmp_path / "score" / "leaderboard.json").read_text())["entries"]
    assert entry["flags"] == [] and {r["model"] for r in entry["results"]} == {"bert-99", "llama3.1-8b"}
