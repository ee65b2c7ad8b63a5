"""How fast `subtool pack` streams a tree into its tarball and reads it back (--verify), and how little memory
it holds while doing so.

Builds a synthetic tree of LoadGen-like detail logs (compressible text, like real submission trees) plus a few
incompressible files, then times write_tarball (at the given gzip levels) and read_tarball. Peak Python heap
(tracemalloc) shows that files are streamed, not held: it stays near the chunk size whatever the tree size.

    python bench/pack_speed.py [--mb 256] [--levels 6 9] [--out bench/results/pack_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's subtool, not another one
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmeta import Provenance  # noqa: E402

from subtool.pack.tarball import read_tarball, write_tarball  # noqa: E402

LINE = (
    ':::MLLOG {{"key": "result_samples_per_second", "value": {v:.3f}, "time_ms": {t:.6f}, "namespace": '
    '"mlperf::logging", "event_type": "POINT_IN_TIME", "metadata": {{"is_error": false, "is_warning": false, '
    '"file": "results.cc", "line_no": {n}, "pid": 4242, "tid": 4242}}}}\n'
)


def build_tree(root: Path, total_mb: int) -> tuple[int, int]:
    rng = random.Random(0)
    sub = root / "closed" / "Bench" / "results" / "box"
    files = written = 0
    target = total_mb * 1_000_000
    model = 0
    while written < target:
        res = sub / f"model{model:03d}" / "Offline"
        (res / "performance" / "run_1").mkdir(parents=True)
        (res / "accuracy").mkdir()
        for path, size in (
            (res / "performance" / "run_1" / "mlperf_log_detail.txt", 8_000_000),
            (res / "accuracy" / "mlperf_log_detail.txt", 2_000_000),
        ):
            with open(path, "w") as fh:
                n = 0
                while n < size:
                    line = LINE.format(v=rng.random() * 1e5, t=rng.random() * 1e6, n=rng.randrange(1000))
                    fh.write(line)
                    n += len(line)
            written += n
            files += 1
        blob = res / "accuracy" / "mlperf_log_accuracy.json"
        blob.write_bytes(os.urandom(1_000_000))
        written += 1_000_000
        files += 1
        model += 1
    return files, written


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=256, help="size of the synthetic tree (whole 11 MB results)")
    ap.add_argument("--levels", type=int, nargs="+", default=[6, 9])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pack_speed.json")
    return ap


def main() -> None:
    args = build_parser().parse_args()
    prov = Provenance()

    with tempfile.TemporaryDirectory(prefix="pack-bench-") as tmp:
        tree = Path(tmp) / "tree"
        files, content = build_tree(tree, args.mb)
        runs = []
        for level in args.levels:
            tarball = Path(tmp) / f"bench-{level}.tar.gz"
            tracemalloc.start()
            start = time.perf_counter()
            with open(tarball, "wb") as fh:
                stats = write_tarball(tree, fh, compresslevel=level)
            pack_s = time.perf_counter() - start
            pack_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()

            unpacked = Path(tmp) / f"unpacked-{level}"
            unpacked.mkdir()
            tracemalloc.start()
            start = time.perf_counter()
            hashes, problems = read_tarball(tarball, unpacked)
            verify_s = time.perf_counter() - start
            verify_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert not problems and hashes == stats.members
            runs.append(
                {
                    "gzip_level": level,
                    "pack_s": round(pack_s, 3),
                    "pack_mb_per_s": round(content / 1e6 / pack_s, 1),
                    "tarball_mb": round(stats.size / 1e6, 2),
                    "ratio": round(stats.size / content, 3),
                    "pack_peak_heap_mb": round(pack_peak / 1e6, 2),
                    "verify_read_extract_s": round(verify_s, 3),
                    "verify_mb_per_s": round(content / 1e6 / verify_s, 1),
                    "verify_peak_heap_mb": round(verify_peak / 1e6, 2),
                }
            )
            tarball.unlink()
    doc = {"bench": "pack_speed", "files": files, "content_mb": round(content / 1e6, 1), "runs": runs}
    prov.write(doc, args.out)
    json.dump(doc, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
