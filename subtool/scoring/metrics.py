"""Per-result verdict metrics for tooling, in VirtualClient's MLPerf style.

One row per system/benchmark/scenario of every scored input: `AccuracyMode` (PASS/FAIL as 1.0/0.0) and
`PerformanceMode` (VALID/INVALID as 1.0/0.0), plus the result. The JSON form also carries each row's metrics
as VirtualClient names them (`<benchmark>-<scenario>-AccuracyMode`, unit "PASS/FAIL", HigherIsBetter, …), so a
pipeline that already ingests VirtualClient's MLPerf metrics reads them unchanged. `.csv` or `.json` by suffix.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from subtool.errors import SubtoolError

CSV_COLUMNS = ("input", "submitter", "system", "category", "division", "benchmark", "scenario", "AccuracyMode",
               "PerformanceMode", "Result", "Units", "run_style", "failed")
FORMATS = (".json", ".csv")


def metrics_format(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise SubtoolError("the metrics file must end in .json or .csv", path=path, rule="score.metrics",
                           hint="e.g. --metrics metrics.json")
    return suffix[1:]


def metric_rows(entries: list) -> list[dict]:
    rows = []
    for entry in entries:
        categories = {(s.submitter, s.system): s.category for s in entry.systems}
        for r in entry.results:
            benchmark = r.mlperf_model or r.model
            prefix = f"{benchmark}-{r.scenario}"
            acc = 1.0 if r.accuracy_ok else 0.0
            perf = 1.0 if r.performance_ok else 0.0
            meta = {"input": entry.input, "submitter": r.submitter, "system": r.system, "benchmark": benchmark,
                    "scenario": r.scenario}
            metrics = [
                {"metricName": f"{prefix}-AccuracyMode", "metricValue": acc, "metricUnit": "PASS/FAIL",
                 "metricRelativity": "HigherIsBetter", "metricMetadata": meta},
                {"metricName": f"{prefix}-PerformanceMode", "metricValue": perf, "metricUnit": "VALID/INVALID",
                 "metricRelativity": "HigherIsBetter", "metricMetadata": meta},
            ]
            if isinstance(r.value, (int, float)):
                lower = r.scenario.lower() in ("singlestream", "multistream")
                metrics.append({"metricName": f"{prefix}-Result", "metricValue": float(r.value),
                                "metricUnit": r.units, "metricRelativity": "LowerIsBetter" if lower
                                else "HigherIsBetter", "metricMetadata": meta})
            rows.append({"input": entry.input, "submitter": r.submitter, "system": r.system,
                         "category": categories.get((r.submitter, r.system), ""), "division": r.division,
                         "benchmark": benchmark, "scenario": r.scenario, "AccuracyMode": acc,
                         "PerformanceMode": perf, "Result": r.value, "Units": r.units, "run_style": r.run_style,
                         "failed": list(r.failed), "metrics": metrics})
    return rows


def render_metrics(rows: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        values = [" ".join(row[c]) if c == "failed" else row[c] for c in CSV_COLUMNS]
        writer.writerow(["" if v is None else ("'" + v if isinstance(v, str) and v[:1] in "=+-@" else v)
                         for v in values])
    return buf.getvalue()
