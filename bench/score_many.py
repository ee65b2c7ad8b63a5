"""How fast `subtool score` gets through many teams' hand-ins, and how much memory it holds while doing so.

Generates N team hand-ins (default 200) the way the scoring tests do: real LoadGen logs (instant SUT), an
open-division tree per team with varied hardware (NVIDIA, AMD, Intel, CPU), throughput and tasks, packed by the
real pack stage (tarball + summary JSON + .run/.tstamps/.md + manifest); every 10th team misses the accuracy
threshold and every 25th tarball is cut short. Then scores the first 50, 100, … N of them with the given number
of workers and samples the resident memory of the scorer and all its worker processes (from /proc, every
20 ms): the peak sum over all processes and the peak of any single process. Memory should stay flat as N grows.

    python bench/score_many.py [--teams 200] [--jobs 2] [--out bench/results/score_many.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "scoring"))

sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))  # the checkout's subtool

import teamgen  # noqa: E402  (the scoring tests' generator of real hand-ins)
from benchmeta import Provenance  # noqa: E402

from subtool.scoring.api import ScoreOptions, score  # noqa: E402

HARDWARE = [
    {},
    teamgen.AMD_GPU,
    teamgen.CPU_ONLY,
    {"accelerator_model_name": "Intel Data Center GPU Max 1550", "accelerators_per_node": "4"},
    {"accelerator_model_name": "NVIDIA GeForce RTX 4090", "accelerators_per_node": "2"},
]


def _spec(i: int) -> teamgen.TeamSpec:
    results = {"bert-99": i % len(teamgen.DELAYS)}
    if i % 2 == 0:
        results["llama2-70b-99.9"] = (i // 2) % len(teamgen.DELAYS)
    failing = ("bert-99",) if i % 10 == 9 else ()
    return teamgen.TeamSpec(
        f"Team{i:03d}", overrides=HARDWARE[i % len(HARDWARE)], results=results, failing_accuracy=failing
    )


def _make(args: tuple) -> str:
    i, work, logs = args
    spec = _spec(i)
    artifacts = teamgen.make_team(Path(work) / "build", logs, spec)
    dest = Path(work) / "handins" / spec.team
    dest.mkdir(parents=True)
    for path in artifacts.values():
        shutil.copy(path, dest / path.name)
    shutil.rmtree(Path(work) / "build" / spec.team)
    if i % 25 == 24:  # a hand-in that was cut short on upload
        tarball = dest / "mlperf_submission_short.tar.gz"
        data = tarball.read_bytes()
        tarball.write_bytes(data[: len(data) // 2])
    return str(dest)


# --------------------------------------------------------------------------------------------- memory
def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                parents[int(name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == pid]
        found += kids
        frontier += kids
    return found


class MemorySampler(threading.Thread):
    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.stop_flag = threading.Event()
        self.peak_total = self.peak_single = self.peak_main = 0
        self.max_processes = 0

    def run(self) -> None:
        me = os.getpid()
        while not self.stop_flag.is_set():
            pids = [me, *_descendants(me)]
            sizes = [_rss_kib(p) for p in pids]
            self.peak_total = max(self.peak_total, sum(sizes))
            self.peak_single = max(self.peak_single, max(sizes))
            self.peak_main = max(self.peak_main, sizes[0])
            self.max_processes = max(self.max_processes, len(pids))
            time.sleep(self.interval)

    def stop(self) -> dict:
        self.stop_flag.set()
        self.join()
        return {
            "peak_rss_all_processes_mib": round(self.peak_total / 1024, 1),
            "peak_rss_one_process_mib": round(self.peak_single / 1024, 1),
            "peak_rss_main_mib": round(self.peak_main / 1024, 1),
            "processes": self.max_processes,
        }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--steps", type=int, nargs="*", default=None, help="team counts to score (default: 50, 100, … up to --teams)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "score_many.json")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    prov = Provenance()
    steps = args.steps or sorted({n for n in (50, 100, 200, args.teams) if n <= args.teams})

    with tempfile.TemporaryDirectory(prefix="score-many-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        logs = teamgen.generate_logs(work / "loadgen")
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            folders = list(pool.map(_make, [(i, str(work), logs) for i in range(args.teams)]))
        generated = time.perf_counter() - t0
        print(f"generated {len(folders)} hand-ins in {generated:.1f} s", file=sys.stderr)

        runs = []
        for n in steps:
            out = work / f"out-{n}"
            sampler = MemorySampler()
            sampler.start()
            start = time.perf_counter()
            result = score(ScoreOptions(inputs=[Path(f) for f in folders[:n]], out=out, jobs=args.jobs))
            seconds = time.perf_counter() - start
            memory = sampler.stop()
            entries = result.leaderboard["entries"]
            run = {
                "tarballs": n,
                "jobs": result.jobs,
                "seconds": round(seconds, 2),
                "seconds_per_tarball": round(seconds / n, 3),
                "mean_worker_seconds_per_tarball": round(sum(e["seconds"] for e in entries) / n, 3),
                **memory,
                "counts": result.counts,
            }
            runs.append(run)
            print(json.dumps(run), file=sys.stderr)

    doc = {
        "bench": "score_many",
        "teams_generated": args.teams,
        "generate_seconds": round(generated, 1),
        "goal": "under 1 s per tarball on 2 cores; memory flat in the number of tarballs",
        "runs": runs,
    }
    prov.write(doc, args.out)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
