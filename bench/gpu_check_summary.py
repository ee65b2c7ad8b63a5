"""The headline numbers of bench/gpu_check.sh's result files, a few lines each (the end of its output).

python bench/gpu_check_summary.py [RESULTS_DIR]        # default bench/results
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _read(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _head(name: str, doc: dict) -> str:
    machine = doc.get("machine") or {}
    return (
        f"{name}: {doc.get('command')} | {machine.get('gpu') or machine.get('cpu_model')}, "
        f"{machine.get('cpus')} cores, load {(doc.get('load') or {}).get('start')} -> "
        f"{(doc.get('load') or {}).get('end')}"
    )


def bert(doc: dict) -> list[str]:
    lines = []
    for run in doc.get("runs", []):
        if "failed" in run or "skipped" in run:
            lines.append(f"  {run['name']}: {run.get('failed') or run.get('skipped')}")
            continue
        server = (run.get("server") or {}).get("best_valid_target_qps")
        f1 = (run.get("vs_fp32") or {}).get("f1")
        lines.append(
            f"  {run['name']}: Offline {run.get('offline_samples_per_s')} samples/s, Server best VALID "
            f"{server}, F1 vs fp32 {f1}"
        )
    return lines


def llm(doc: dict) -> list[str]:
    lines = []
    if doc.get("reference_offline"):
        lines.append(f"  reference-style: {doc['reference_offline'].get('result')} tokens/s")
    for p in doc.get("subtool_offline", []):
        lines.append(
            f"  subtool {p.get('weights')}, {p.get('slots')} slots: {p.get('result')} tokens/s {p.get('validity')}"
        )
    for p in doc.get("subtool_server", []):
        lines.append(
            f"  Server {p.get('weights')} at {p.get('target_qps')} QPS: {p.get('result')} tokens/s "
            f"{p.get('validity')}, TTFT p99 {(p.get('ttft_ms') or {}).get('p99')} ms, TPOT p99 "
            f"{(p.get('tpot_ms') or {}).get('p99')} ms"
        )
    return lines


def checker(doc: dict) -> list[str]:
    return [
        f"  {doc.get('results')} results: subtool {doc.get('subtool_seconds')} s wall "
        f"({doc.get('subtool_check_processes')} processes), official {doc.get('official_seconds')} s "
        f"({doc.get('official_check_processes')} process): wall ratio {doc.get('speedup')}x, CPU-time ratio "
        f"{doc.get('cpu_ratio')}x, same summary rows: {doc.get('same_summary_rows')}"
    ]


FILES = {"gpu_check_bert.json": bert, "gpu_check_llm.json": llm, "checker_speed_device.json": checker}


def main(argv: list[str]) -> int:
    results = Path(argv[1]) if len(argv) > 1 else Path("bench/results")
    for name, lines in FILES.items():
        doc = _read(results / name)
        if doc is None:
            continue
        print(_head(name, doc))
        for line in lines(doc):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
