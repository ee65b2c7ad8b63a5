"""How fast `subtool package` lays out many results with big accuracy logs, against `cp` of the same files.

Builds an MLC-style raw-results directory of N systems, each with one bert-99 Offline result whose LoadGen
detail/summary logs come from a real LoadGen run (instant SUT) and whose accuracy log is a distinct
`--size-mb` MB file in LoadGen's format. Then, in the same run and on the same disk:

  cp     `cp -r` of the source directory (what any packaging has to read and write at least), then `sync`;
  package `package_results` on it: copies each full accuracy log out of the tree while hashing it, writes the
          truncated log + hash, the other logs, measurements, READMEs and system JSONs, syncs, renames into place.
  sha256  one core hashing a sample of the same logs: the floor for any packaging (the hash line is mandatory).

Reports MB/s of accuracy-log bytes for both, and the package process's peak RSS before and after (memory
must stay flat: one 4 MiB buffer, whatever the log size).

    python bench/package_speed.py [--results 200] [--size-mb 100] [--workdir DIR]
        [--out bench/results/package_speed.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's subtool, not another one
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmeta import Provenance  # noqa: E402

LOADGEN = r"""
import array, sys, time
import mlperf_loadgen as lg
out, mode, conf = sys.argv[1], sys.argv[2], sys.argv[3]
s = lg.TestSettings(); s.FromConfig(conf, "bert", "Offline")
s.scenario = lg.TestScenario.Offline
s.mode = lg.TestMode.PerformanceOnly if mode == "performance" else lg.TestMode.AccuracyOnly
buf = array.array("B", bytes(32)); addr, n = buf.buffer_info()
def issue(qs):
    if mode == "performance":
        time.sleep(0.25)
    lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, addr, n) for q in qs])
sut = lg.ConstructSUT(issue, lambda: None); qsl = lg.ConstructQSL(10833, 10833, lambda s: None, lambda s: None)
log = lg.LogSettings(); log.log_output.outdir = out; log.log_output.copy_summary_to_stdout = False
log.enable_trace = False
lg.StartTestWithLogSettings(sut, qsl, s, log)
"""
MEASUREMENTS = {
    "input_data_types": "int32",
    "retraining": "No",
    "starting_weights_filename": "model.pytorch",
    "weight_data_types": "fp32",
    "weight_transformations": "none",
}
SYSTEM_META = {"status": "available", "cooling": "air", "host_memory_configuration": "bench", "system_type": "edge"}


def loadgen_template(work: Path) -> Path:
    """Real LoadGen logs for one bert-99 Offline result (performance + accuracy)."""
    tpl = work / "template"
    conf = work / "user.conf"
    conf.write_text("bert.Offline.target_qps = 100000\nbert.Offline.min_duration = 200\n")
    for mode, sub in (("performance", "performance/run_1"), ("accuracy", "accuracy")):
        (tpl / sub).mkdir(parents=True)
        subprocess.run(
            [sys.executable, "-c", LOADGEN, str(tpl / sub), mode, str(conf)], cwd=work, check=True, capture_output=True
        )
    shutil.copy(conf, tpl / "user.conf")
    (tpl / "accuracy" / "accuracy.txt").write_text('{"exact_match": 83.4, "f1": 90.5}\n')
    return tpl


def accuracy_block(rng: random.Random, target: int) -> bytes:
    """LoadGen accuracy-log lines (bert's 384x2 fp32 logits → 6144 hex chars each), ~`target` bytes."""
    lines = []
    size = 0
    i = 0
    while size < target:
        data = rng.randbytes(3072).hex().upper()
        line = f'{{ "seq_id" : {i}, "qsl_idx" : {rng.randrange(10833)}, "data" : "{data}" }},\n'.encode()
        lines.append(line)
        size += len(line)
        i += 1
    return b"".join(lines)


def write_accuracy_log(path: Path, block: bytes, size: int, salt: int) -> int:
    last = f'{{ "seq_id" : {salt}, "qsl_idx" : 0, "data" : "{salt:064X}" }}\n]\n'.encode()
    with open(path, "wb") as fh:
        fh.write(b"[\n" + f'{{ "seq_id" : -{salt}, "qsl_idx" : 0, "data" : "00" }},\n'.encode())
        written = 0
        while written < size:
            fh.write(block)
            written += len(block)
        fh.write(last)
    return path.stat().st_size


def build_source(root: Path, tpl: Path, n: int, size: int) -> int:
    rng = random.Random(0)
    block = accuracy_block(rng, 4 << 20)
    total = 0
    for i in range(n):
        system = root / f"box{i:03d}"
        scen = system / "bert-99" / "Offline"
        shutil.copytree(tpl / "performance", scen / "performance")
        (scen / "accuracy").mkdir(parents=True)
        for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "accuracy.txt"):
            shutil.copy(tpl / "accuracy" / name, scen / "accuracy" / name)
        total += write_accuracy_log(scen / "accuracy" / "mlperf_log_accuracy.json", block, size, i)
        shutil.copy(tpl / "user.conf", scen / "user.conf")
        (scen / "measurements.json").write_text(json.dumps(MEASUREMENTS))
        (system / "system_meta.json").write_text(json.dumps(SYSTEM_META))
    os.sync()
    return total


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=int, default=200)
    ap.add_argument("--size-mb", type=int, default=100)
    ap.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "package_speed.json")
    return ap


def main() -> int:
    args = build_parser().parse_args()
    prov = Provenance()

    from subtool.package.api import PackageOptions, package_results

    size = args.size_mb * 1_000_000
    work = Path(tempfile.mkdtemp(prefix="package_speed-", dir=args.workdir))
    need = 2.2 * args.results * size
    free = shutil.disk_usage(work).free
    if free < need:
        print(f"need {need / 1e9:.1f} GB free in {work}, have {free / 1e9:.1f} GB", file=sys.stderr)
        shutil.rmtree(work)
        return 2
    try:
        tpl = loadgen_template(work)
        src = work / "mlc_results"
        t0 = time.perf_counter()
        acc_bytes = build_source(src, tpl, args.results, size)
        gen_s = time.perf_counter() - t0
        src_bytes = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())

        t0 = time.perf_counter()
        subprocess.run(["cp", "-r", str(src), str(work / "cp_copy")], check=True)
        cp_s = time.perf_counter() - t0
        os.sync()
        cp_sync_s = time.perf_counter() - t0
        shutil.rmtree(work / "cp_copy")
        os.sync()

        # the floor that no packaging can go under: SHA-256 of every byte (the official hash line), one core
        sample = sorted(src.rglob("mlperf_log_accuracy.json"))[: min(10, args.results)]
        t0 = time.perf_counter()
        hashed = 0
        buf = bytearray(4 << 20)
        for path in sample:
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                while n := fh.readinto(buf):
                    h.update(memoryview(buf)[:n])
                    hashed += n
        sha_mbps = hashed / 1e6 / (time.perf_counter() - t0)

        rss_before = rss_mb()
        t0 = time.perf_counter()
        res = package_results(
            PackageOptions(
                from_dirs=[src],
                perf=None,
                acc=None,
                compliance=[],
                model=None,
                scenario=None,
                submitter="Bench",
                division="open",
                system=None,
                system_file=None,
                out=work / "tree",
                full_logs=work / "full_logs",
            )
        )
        pkg_s = time.perf_counter() - t0
        os.sync()
        pkg_sync_s = time.perf_counter() - t0
        rss_after = rss_mb()
        assert len(res.results) == args.results
        tree_bytes = sum(p.stat().st_size for p in (work / "tree").rglob("*") if p.is_file())
        mb = acc_bytes / 1e6
        doc = {
            "bench": "package_speed",
            "results": args.results,
            "accuracy_log_mb": args.size_mb,
            "accuracy_bytes": acc_bytes,
            "source_bytes": src_bytes,
            "tree_bytes": tree_bytes,
            "generate_s": round(gen_s, 2),
            "cp_s": round(cp_s, 2),
            "cp_plus_sync_s": round(cp_sync_s, 2),
            "package_s": round(pkg_s, 2),
            "package_plus_sync_s": round(pkg_sync_s, 2),
            "cp_MBps": round(mb / cp_s, 1),
            "cp_plus_sync_MBps": round(mb / cp_sync_s, 1),
            "package_MBps": round(mb / pkg_s, 1),
            "package_plus_sync_MBps": round(mb / pkg_sync_s, 1),
            "package_vs_cp_plus_sync": round(cp_sync_s / pkg_sync_s, 2),
            "sha256_one_core_MBps": round(sha_mbps, 1),
            "peak_rss_mb_before": round(rss_before, 1),
            "peak_rss_mb_after": round(rss_after, 1),
        }
        prov.write(doc, args.out)
        print(json.dumps(doc, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
