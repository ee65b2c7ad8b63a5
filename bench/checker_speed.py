"""How fast `subtool check` is on a 1,000-result tree, and how that compares with the official checker.

    python bench/checker_speed.py [--official CHECKOUT] [--results 1000] [--repeat 3] [--tree TREE]
                                  [--out bench/results/checker_speed.json] [--profile PROFILE.txt]

The tree is generated from real LoadGen logs (tests/checker/treegen.py: an instant SUT, official seeds):
closed bert-99 edge systems (Offline + SingleStream, TEST01) and closed llama3.1-8b / llama2-70b-99.9
datacenter systems (Offline + Server, TEST06), replicated with hard links until it holds the requested number
of results. Both checkers run as fresh processes (`subtool check TREE --csv …` and `python -m
submission_checker.main --input TREE …`), output discarded, after one untimed warm-up run each. Their bytecode
goes to a private cache (PYTHONPYCACHEPREFIX in a temporary folder, PYTHONDONTWRITEBYTECODE unset for them), so
the warm-up compiles both packages once and no timed run compiles, whatever the caller's settings, without
writing into either source tree. Reported: the best of --repeat wall times of each, their ratio
(`speedup`: wall time, with `subtool check` using up to 8 worker processes while the official checker runs in
one), and the ratio of their CPU times (`cpu_ratio`: process and workers together), which does not depend on
the number of cores.

--profile PROFILE.txt also checks the tree once in this process, in one process (no workers, so every call is
seen), under cProfile, and writes the functions that take the most time (own time, then with callees) there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "checker"))

sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))  # the checkout's subtool

from benchmeta import Provenance  # noqa: E402
from treegen import TreeBuilder, generate_runs  # noqa: E402

TEMPLATES = (  # (system template, benchmark, scenarios, system_type)
    ("edge", "bert-99", ("Offline", "SingleStream"), "edge"),
    ("dc8b", "llama3.1-8b", ("Offline", "Server"), "datacenter"),
    ("dc70b", "llama2-70b-99.9", ("Offline", "Server"), "datacenter"),
)


def build_tree(dest: Path, results: int, runs) -> int:
    """A closed-division tree with `results` results (rounded up to whole systems); returns the count."""
    builder = TreeBuilder(dest, runs)
    sub = dest / "closed" / "Bench"
    for name, benchmark, scenarios, system_type in TEMPLATES:
        builder.system("closed", "Bench", name, {"system_type": system_type})
        for scenario in scenarios:
            builder.result("closed", "Bench", name, benchmark, scenario)
    per_system = 2
    systems = -(-results // per_system)
    count = 0
    for i in range(systems):
        name, *_ = TEMPLATES[i % len(TEMPLATES)]
        system = f"{name}-{i:04d}"
        shutil.copytree(sub / "results" / name, sub / "results" / system, copy_function=os.link)
        data = json.loads((sub / "systems" / f"{name}.json").read_text())
        data["system_name"] = f"Bench system {i}"
        (sub / "systems" / f"{system}.json").write_text(json.dumps(data, indent=2))
        count += per_system
    for name, *_ in TEMPLATES:
        shutil.rmtree(sub / "results" / name)
        (sub / "systems" / f"{name}.json").unlink()
    return count


def time_once(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (the process and its workers), exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, default=None, help="checkout of mlcommons/inference")
    parser.add_argument("--results", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "checker_speed.json")
    parser.add_argument(
        "--tree", type=Path, default=None, help="time this existing tree instead of generating one (no LoadGen needed)"
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="also write a cProfile of one single-process check here"
    )
    return parser


def profile_check(tree: Path, out: Path, top: int = 40) -> None:
    """cProfile of `check_tree` on `tree` in this process, without workers; the top functions to `out`."""
    import cProfile
    import io
    import pstats

    from subtool.checker import api

    saved = api.PARALLEL_MIN_RESULTS
    api.PARALLEL_MIN_RESULTS = 1 << 60  # one process: the workers' calls would not be profiled
    profiler = cProfile.Profile(time.process_time)  # CPU time: the machine may be shared
    try:
        profiler.runcall(api.check_tree, tree, api.CheckOptions())
    finally:
        api.PARALLEL_MIN_RESULTS = saved
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text.getvalue())


def check_processes(results: int) -> int:
    """How many processes `subtool check` spreads `results` over here (subtool/checker/api.py's rule)."""
    from subtool.checker.api import PARALLEL_MIN_RESULTS

    cores = min(os.cpu_count() or 1, 8)
    return 1 if results < PARALLEL_MIN_RESULTS or cores < 2 else cores


def child_env(pycache: Path) -> dict:
    """The checkers' environment: bytecode written to and read from `pycache` only."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def main() -> int:
    args = build_parser().parse_args()
    prov = Provenance()

    with tempfile.TemporaryDirectory(prefix="subtool-bench-") as tmp:
        tmp = Path(tmp)
        if args.tree:
            tree = args.tree.resolve()
            count = sum(1 for _ in tree.glob("*/*/results/*/*/*") if _.is_dir())
        else:
            tree = tmp / "tree"
            count = build_tree(tree, args.results, generate_runs(tmp / "runs"))
        work = tmp / "work"
        work.mkdir()
        ours_cmd = [sys.executable, "-m", "subtool.cli", "check", str(tree), "--csv", str(work / "ours.csv")]
        official_cmd = cwd = None
        if args.official:
            from subtool.checker.official import locate_checker

            cwd = locate_checker(args.official)
            official_cmd = [
                sys.executable,
                "-m",
                "submission_checker.main",
                "--input",
                str(tree),
                "--version",
                "v6.1",
                "--csv",
                str(work / "official.csv"),
            ]
        env = child_env(tmp / "pycache")
        time_once(ours_cmd, ROOT, env)  # untimed warm-up: disk cache and bytecode
        if official_cmd:
            time_once(official_cmd, cwd, env)
        # Interleaved, best of --repeat each: both see the same machine load.
        ours_times, official_times, ours_cpu, official_cpu = [], [], [], []
        ours_rc = official_rc = 0
        for _ in range(args.repeat):
            seconds, cpu, ours_rc = time_once(ours_cmd, ROOT, env)
            ours_times.append(seconds)
            ours_cpu.append(cpu)
            if official_cmd:
                seconds, cpu, official_rc = time_once(official_cmd, cwd, env)
                official_times.append(seconds)
                official_cpu.append(cpu)
        if args.profile:
            profile_check(tree, args.profile)
        ours_s = min(ours_times)
        record = {
            "benchmark": "checker_speed",
            "results": count,
            "repeat": args.repeat,
            "subtool_seconds": round(ours_s, 3),
            "subtool_all_seconds": [round(t, 3) for t in ours_times],
            "subtool_cpu_seconds": round(min(ours_cpu), 3),
            "subtool_exit": ours_rc,
            "subtool_check_processes": check_processes(count),
            "official_check_processes": 1,
            "warm_up": "one untimed run of each checker; bytecode in a private PYTHONPYCACHEPREFIX",
        }
        if official_cmd:
            official_s = min(official_times)
            same_rows = _rows(work / "ours.csv") == _rows(work / "official.csv")
            record.update(
                {
                    "official_seconds": round(official_s, 3),
                    "official_all_seconds": [round(t, 3) for t in official_times],
                    "official_cpu_seconds": round(min(official_cpu), 3),
                    "cpu_ratio": round(min(official_cpu) / min(ours_cpu), 1),
                    "official_exit": official_rc,
                    "speedup": round(official_s / ours_s, 1),
                    "same_summary_rows": same_rows,
                }
            )
    prov.write(record, args.out)
    print(json.dumps(record, indent=2))
    return 0


def _rows(path: Path) -> list[tuple]:
    """summary.csv rows without Location (it names the folder each checker was given)."""
    import csv

    with open(path, newline="") as fh:
        return sorted(tuple(v for k, v in row.items() if k != "Location") for row in csv.DictReader(fh))


if __name__ == "__main__":
    sys.exit(main())
