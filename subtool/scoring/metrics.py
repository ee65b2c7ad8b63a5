"""Per-result verdict metrics for tooling, named and aggregated the way VirtualClient's MLPerf workload reports them.

VirtualClient reports one metric per system, harness, benchmark variant, power mode and scenario, under the
benchmark it ran, e.g. benchmark `bert`, metric `DGX-A100_A100-SXM4-40GBx8_TRT-custom_k_99_9_MaxP-Server-
PerformanceMode` (1.0 = VALID, 0.0 = INVALID) and `…-Offline-AccuracyMode` (1.0 = PASS, 0.0 = FAIL), and gives
min, max and avg over repeated runs. subtool names each result's metrics the same way:

    <system>-<harness>_k_<variant>_<power>-<Scenario>-<Mode>      under the benchmark <model without -99/-99.9>

- system: the system's folder name (subtool's default name already carries accelerator × count, as NVIDIA's does);
- harness: the first word of the system description's `framework` (e.g. `PyTorch`), `custom` when it has none;
- variant: the accuracy target, `99` or `99_9` (from the model name, else from the round's target for it);
- power: `MaxQ` for a power result (Watts or joules), else `MaxP`;
- Mode: `AccuracyMode` (PASS/FAIL), `PerformanceMode` (VALID/INVALID), and `Result` (the result's value, units).

Results that share a submitter, benchmark and metric name (one team's repeated runs: several hand-ins, or the same
system scored again) are one metric with min, max and avg over the `count` runs. `.json` holds those aggregated
metrics (`metrics`) and the per-result rows they come from (`results`); `.csv` holds one row per result with its
verdicts and its metric name stem (`metric`, `benchmark_group`), for a spreadsheet.
"""

from __future__ import annotations

import csv
import io
import json
import re
from functools import cache
from pathlib import Path

from subtool.errors import SubtoolError

CSV_COLUMNS = (
    "input",
    "submitter",
    "system",
    "category",
    "division",
    "benchmark",
    "scenario",
    "AccuracyMode",
    "PerformanceMode",
    "Result",
    "Units",
    "run_style",
    "failed",
    "benchmark_group",
    "metric",
)
FORMATS = (".json", ".csv")
MODES = (("AccuracyMode", "PASS/FAIL"), ("PerformanceMode", "VALID/INVALID"))
_VARIANT_SUFFIX = re.compile(r"-(9\d(?:\.9+)?)$")  # -99, -99.9, -95 (yolo-95)
_UNSAFE = re.compile(r"[^A-Za-z0-9.+]+")


def metrics_format(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise SubtoolError(
            "the metrics file must end in .json or .csv",
            path=path,
            rule="score.metrics",
            hint="e.g. --metrics metrics.json",
        )
    return suffix[1:]


# ------------------------------------------------------------------------------------------------ naming
def _token(text: str, default: str) -> str:
    cleaned = _UNSAFE.sub("_", str(text or "").strip()).strip("_")
    return cleaned or default


@cache
def _target_fraction(model: str) -> float | None:
    """The accuracy target of a model without a -99/-99.9 suffix, from the newest round that knows it."""
    from subtool.mlperf.round import round_config

    for version in ("v6.1", "v6.0", "v5.1", "v5.0"):
        rules = round_config(version).model(model)
        bounds = rules.accuracy("Offline") if rules else ()
        if bounds:
            return max(b.fraction for b in bounds)
    return None


def variant(model: str) -> str:
    """`99` or `99_9`: the accuracy target the benchmark variant must reach (VirtualClient's `k_99`, `k_99_9`)."""
    m = _VARIANT_SUFFIX.search(model)
    if m:
        return m.group(1).replace(".", "_")
    fraction = _target_fraction(model)
    if fraction is None:
        return "default"
    return f"{fraction * 100:.4g}".replace(".", "_")


def benchmark_group(model: str) -> str:
    """The benchmark a VirtualClient metric is reported under: the model without its accuracy variant."""
    return _VARIANT_SUFFIX.sub("", model)


def power_mode(units: str) -> str:
    return "MaxQ" if re.search(r"watt|joule", str(units or ""), re.IGNORECASE) else "MaxP"


def metric_stem(system: str, framework: str, model: str, units: str, scenario: str) -> str:
    harness = _token(str(framework or "").split(" ")[0].split(",")[0], "custom")
    return f"{_token(system, 'system')}-{harness}_k_{variant(model)}_{power_mode(units)}-{scenario}"


# ------------------------------------------------------------------------------------------------- rows
def _metric(name: str, value: float, unit: str, relativity: str, meta: dict) -> dict:
    return {
        "metricName": name,
        "metricValue": value,
        "metricUnit": unit,
        "metricRelativity": relativity,
        "metricMetadata": meta,
    }


def metric_rows(entries: list) -> list[dict]:
    rows = []
    for entry in entries:
        systems = {(s.submitter, s.system): s for s in entry.systems}
        for r in entry.results:
            benchmark = r.mlperf_model or r.model
            system = systems.get((r.submitter, r.system))
            fields = system.fields if system else {}
            stem = metric_stem(r.system, fields.get("framework", ""), benchmark, r.units, r.scenario)
            acc = 1.0 if r.accuracy_ok else 0.0
            perf = 1.0 if r.performance_ok else 0.0
            meta = {
                "input": entry.input,
                "submitter": r.submitter,
                "system": r.system,
                "benchmark": benchmark,
                "scenario": r.scenario,
            }
            metrics = [
                _metric(f"{stem}-AccuracyMode", acc, "PASS/FAIL", "HigherIsBetter", meta),
                _metric(f"{stem}-PerformanceMode", perf, "VALID/INVALID", "HigherIsBetter", meta),
            ]
            if isinstance(r.value, (int, float)) and not isinstance(r.value, bool):
                lower = r.scenario.lower() in ("singlestream", "multistream")
                metrics.append(
                    _metric(
                        f"{stem}-Result", float(r.value), r.units, "LowerIsBetter" if lower else "HigherIsBetter", meta
                    )
                )
            rows.append(
                {
                    "input": entry.input,
                    "submitter": r.submitter,
                    "system": r.system,
                    "category": system.category if system else "",
                    "division": r.division,
                    "benchmark": benchmark,
                    "scenario": r.scenario,
                    "AccuracyMode": acc,
                    "PerformanceMode": perf,
                    "Result": r.value,
                    "Units": r.units,
                    "run_style": r.run_style,
                    "failed": list(r.failed),
                    "benchmark_group": benchmark_group(benchmark),
                    "metric": stem,
                    "metrics": metrics,
                }
            )
    return rows


def aggregate(rows: list[dict]) -> list[dict]:
    """One metric per (submitter, benchmark, metric name): min, max and avg over the runs that report it."""
    groups: dict[tuple, dict] = {}
    for row in rows:
        for m in row["metrics"]:
            key = (row["submitter"], row["benchmark_group"], m["metricName"])
            group = groups.setdefault(
                key,
                {
                    "scenario": row["benchmark_group"],
                    "metricName": m["metricName"],
                    "metricUnit": m["metricUnit"],
                    "metricRelativity": m["metricRelativity"],
                    "values": [],
                    "metricMetadata": {
                        "submitter": row["submitter"],
                        "system": row["system"],
                        "benchmark": row["benchmark"],
                        "scenario": row["scenario"],
                        "inputs": [],
                    },
                },
            )
            group["values"].append(m["metricValue"])
            if row["input"] not in group["metricMetadata"]["inputs"]:
                group["metricMetadata"]["inputs"].append(row["input"])
    out = []
    for key in sorted(groups):
        group = groups[key]
        values = group.pop("values")
        out.append(
            {**group, "count": len(values), "min": min(values), "max": max(values), "avg": sum(values) / len(values)}
        )
    return out


def render_metrics(rows: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"metrics": aggregate(rows), "results": rows}, indent=2) + "\n"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        values = [" ".join(row[c]) if c == "failed" else row[c] for c in CSV_COLUMNS]
        writer.writerow(
            ["" if v is None else ("'" + v if isinstance(v, str) and v[:1] in "=+-@" else v) for v in values]
        )
    return buf.getvalue()
