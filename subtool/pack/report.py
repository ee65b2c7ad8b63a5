"""`<name>.md`: the platform (from the system JSON) and the highlights of the run, as a report people read.

It opens with the verdict in one line, because that is what a team or an organiser looks for first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from subtool import __version__
from subtool.md_table import markdown_table, md_cell
from subtool.pack.inputs import ResultInfo, RunInfo, TreeInfo

# The system JSON fields in the order a reader wants them; the rest follow alphabetically.
_PLATFORM_ORDER = (
    "system_name",
    "status",
    "system_type",
    "number_of_nodes",
    "host_processor_model_name",
    "host_processors_per_node",
    "host_processor_core_count",
    "host_processor_frequency",
    "host_processor_caches",
    "host_memory_capacity",
    "host_memory_configuration",
    "host_storage_capacity",
    "host_storage_type",
    "accelerator_model_name",
    "accelerators_per_node",
    "accelerator_memory_capacity",
    "accelerator_memory_configuration",
    "accelerator_host_interconnect",
    "accelerator_interconnect",
    "framework",
    "operating_system",
    "other_software_stack",
    "cooling",
    "hw_notes",
    "sw_notes",
)
_SKIP_PLATFORM = {"division", "submitter"}


@dataclass
class FindingView:
    rule: str
    severity: str
    path: str  # relative to the tree when it lies inside it
    message: str
    hint: str = ""


@dataclass
class ResultView:
    """The checker's verdict on one result, as far as the report needs it."""

    passed: bool
    failed: list[str]
    waived: list[str]
    value: object
    units: str
    accuracy: str


@dataclass
class ReportInput:
    name: str
    version: str
    verdict: str  # PASS | FAIL
    waive: tuple[str, ...]
    run_style: str
    demo: bool
    tree: TreeInfo
    runs: list[RunInfo]
    rows: list[dict]
    findings: list[FindingView]
    tstamps: str
    hashes: dict[str, str] = field(default_factory=dict)
    verdicts: dict[str, ResultView] = field(default_factory=dict)  # result id (its folder in the tree) → verdict
    latencies: dict[str, dict] = field(default_factory=dict)  # result folder → {"ttft_ms": {"p50": …}, …}


def format_number(value: float | int) -> str:
    """One notation for every number a reader sees: counts as integers (13368, not 13368.000), large values in
    plain fixed point (7350879.6, not 7.35088e+06), small ones to six significant digits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 1e5:
        return f"{value:.1f}"
    text = f"{value:.6g}"
    return f"{value:.6f}".rstrip("0") if "e" in text and abs(value) >= 1e-6 else text


def _cell(value: object) -> str:
    if value is None or value == "":
        return "–"
    text = format_number(value) if isinstance(value, (int, float)) else str(value)
    return " ".join(text.replace("|", "\\|").split())


def _inert(value: object) -> str:
    """A value a team wrote, as _cell formats it but inert: numbers as numbers, text through md_cell."""
    return _cell(value) if isinstance(value, (int, float)) else md_cell(value)


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    return markdown_table(header, [[_cell(v) for v in row] for row in rows])


def _row_for(result: ResultInfo, rows: list[dict]) -> dict | None:
    for row in rows:
        if (
            str(row.get("Platform")) == result.system
            and str(row.get("Model")) == result.model
            and str(row.get("Scenario")) == result.scenario
            and str(row.get("Division")) == result.division
        ):
            return row
    return None


def _errors_in(result: ResultInfo, findings: list[FindingView]) -> list[FindingView]:
    prefix = result.rel_dir + "/"
    return [f for f in findings if f.severity == "error" and (f.path + "/").startswith(prefix)]


def _result_verdict(view: ResultView | None, errors: list[FindingView], row: dict | None) -> str:
    if view is not None:
        if not view.passed:
            return "FAIL: " + ", ".join(f"`{r}`" for r in view.failed)
        return "PASS" + (" (waived: " + ", ".join(f"`{r}`" for r in view.waived) + ")" if view.waived else "")
    if errors:
        return "FAIL: " + ", ".join(sorted({f"`{f.rule}`" for f in errors}))
    return "PASS" if row is not None else "FAIL (not in the summary)"


def _verdict_paragraph(data: ReportInput, counts: dict[str, int]) -> list[str]:
    checker = f"the checker (subtool {__version__}, rules {data.version})"
    if data.verdict == "PASS":
        line = f"**Verdict: PASS**: {checker} found no errors."
    else:
        line = (
            f"**Verdict: FAIL**: {checker} found {counts['error']} error(s). These artifacts were packed so "
            "that there is something to hand in, but the submission does not pass: fix the errors listed "
            "under *Checker findings* and pack again."
        )
    out = [line]
    short_errors = [f for f in data.findings if f.severity == "error" and f.rule == "perf.min_duration"]
    if short_errors and "perf.min_duration" not in data.waive:
        out.append(
            "The runs are shorter than the official 600 s. For a competition's short run, pack with "
            "`--waive perf.min_duration`: the checker then reports the rule as waived and checks "
            "everything else."
        )
    if data.waive:
        waived = ", ".join(f"`{r}`" for r in data.waive)
        out.append(f"Waived rules: {waived} ({counts['waived']} finding(s) waived; they are listed below, not hidden).")
    if data.run_style == "short":
        out.append(
            "This is a **short run**: fine for the competition's quick task and for trying things, "
            "not submittable as an official MLPerf result."
        )
    if data.demo:
        out.append(
            "These results come from subtool's **embedded demo** (random weights, generated data): the "
            "numbers measure the machinery, not the model."
        )
    return out


def render_report(data: ReportInput) -> str:
    counts = {s: sum(1 for f in data.findings if f.severity == s) for s in ("error", "warning", "waived", "info")}
    tree = data.tree
    lines = [f"# MLPerf Inference submission: {', '.join(tree.submitters) or 'unknown submitter'}", ""]
    lines += [p for para in _verdict_paragraph(data, counts) for p in (para, "")]
    lines += _overview_lines(data, counts)
    lines += ["## Results", ""]
    lines += _results_lines(data)
    lines += _latency_lines(data)
    lines += ["## Notable settings", ""]
    lines += _settings_lines(data)
    lines += ["## Platform", ""]
    lines += _platform_lines(data)
    lines += ["## Checker findings", ""]
    lines += _findings_lines(data)
    lines += ["## Timestamps (`date -u`, before and after each run)", ""]
    lines += ["```", *(data.tstamps.splitlines() or ["(none found)"]), "```", ""]
    lines += ["## Artifacts", ""]
    lines += _artifact_lines(data)
    return "\n".join(lines)


def _overview_lines(data: ReportInput, counts: dict[str, int]) -> list[str]:
    tree = data.tree
    return _table(
        ["Submission", ""],
        [
            ["Submitter", ", ".join(tree.submitters)],
            ["Division", ", ".join(tree.divisions)],
            ["Systems", ", ".join(s.name for s in tree.systems)],
            ["Rules", data.version],
            ["Run style", data.run_style],
            ["LoadGen", ", ".join(tree.loadgen_versions())],
            ["Checker", f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['waived']} waived"],
        ],
    ) + [""]


def _results_lines(data: ReportInput) -> list[str]:
    """One row per result: the checker's view of its value when it has one, else the summary's, else the logs'."""
    tree = data.tree
    lines: list[str] = []
    table = []
    for result in tree.results:
        row = _row_for(result, data.rows)
        view = data.verdicts.get(result.rel_dir)
        value, unit = result.main_result()
        accuracy = result.accuracy_line
        if view is not None and view.value is not None:
            value, unit, accuracy = view.value, view.units or unit, view.accuracy or accuracy
        elif row is not None:
            value, unit, accuracy = row.get("Result", value), row.get("Units", unit), row.get("Accuracy", accuracy)
        errors = _errors_in(result, data.findings)
        table.append(
            [
                result.system,
                result.model,
                result.scenario,
                value,
                unit,
                accuracy,
                result.perf.get("result_validity"),
                ", ".join(result.compliance),
                _result_verdict(view, errors, row),
            ]
        )
    if table:
        lines += _table(
            ["System", "Model", "Scenario", "Result", "Units", "Accuracy", "LoadGen verdict", "Compliance", "Checker"],
            table,
        )
    else:
        lines.append("No results found under `results/`.")
    lines.append("")
    return lines


def _settings_lines(data: ReportInput) -> list[str]:
    """LoadGen's effective settings of each result, then what each run recorded beside them."""
    tree = data.tree
    lines: list[str] = []
    settings = []
    for result in tree.results:
        p = result.perf
        settings.append(
            [
                f"{result.model} {result.scenario}",
                p.get("effective_test_mode"),
                p.get("effective_target_qps"),
                p.get("effective_target_latency_ns"),
                p.get("effective_min_duration_ms"),
                p.get("effective_samples_per_query"),
                p.get("result_query_count"),
                p.get("num_errors"),
            ]
        )
    if settings:
        lines += _table(
            [
                "Result",
                "Mode",
                "target_qps",
                "target_latency_ns",
                "min_duration_ms",
                "samples_per_query",
                "queries",
                "LoadGen errors",
            ],
            settings,
        ) + [""]
    for run in data.runs:
        extras = [f"{k}={v}" for k, v in sorted(run.settings.items())]
        versions = [f"{k} {v}" for k, v in sorted(run.versions.items())]
        env = [f"{k}={v}" for k, v in sorted(run.env.items())]
        lines.append(
            f"- run `{run.path.parent.name}/{run.path.name}` "
            f"({run.model} {run.scenario}, {run.run_style or 'style unknown'}"
            f"{', demo' if run.demo else ''}): "
            + "; ".join(part for part in (", ".join(extras), ", ".join(versions), ", ".join(env)) if part)
        )
    if data.runs:
        lines.append("")
    return lines


def _platform_lines(data: ReportInput) -> list[str]:
    tree = data.tree
    lines: list[str] = []
    for system in tree.systems:
        f = system.fields
        ordered = [k for k in _PLATFORM_ORDER if k in f] + sorted(k for k in f if k not in _PLATFORM_ORDER)
        # a team writes these (system_name, notes, any field): inert Markdown, as score's leaderboards show them,
        # so that `<img onerror=…>` or `[a link](…)` in a system description stays text in the .md readers open
        lines += [f"### {md_cell(f.get('system_name') or system.name)} ({md_cell(system.rel_path)})", ""]
        rows = [[md_cell(k), _inert(f[k])] for k in ordered if k not in _SKIP_PLATFORM and f[k] not in (None, "")]
        lines += markdown_table(["Field", "Value"], rows) + [""]
    if not tree.systems:
        lines += ["No system description (`systems/<system>.json`) in the tree.", ""]
    return lines


def _findings_lines(data: ReportInput) -> list[str]:
    lines: list[str] = []
    for severity, title in (("error", "Errors"), ("waived", "Waived"), ("warning", "Warnings"), ("info", "Notes")):
        chosen = [f for f in data.findings if f.severity == severity]
        if not chosen:
            continue
        lines += [f"### {title} ({len(chosen)})", ""]
        for f in chosen:
            hint = f" Fix: {f.hint}" if f.hint else ""
            lines.append(f"- `{f.rule}` {f.path}: {' '.join(f.message.split())}{hint}")
        lines.append("")
    if not data.findings:
        lines += ["None.", ""]
    return lines


def _artifact_lines(data: ReportInput) -> list[str]:
    lines = _table(["File", "sha256"], [[f"`{k}`", f"`{v}`"] for k, v in sorted(data.hashes.items())])
    lines += [
        "",
        f"`{data.name}_summary.json` and `{data.name}.sha256` list these hashes too; "
        f"`subtool pack --verify {data.name}.tar.gz` checks them and re-runs the checker.",
        "",
    ]
    return lines


_LATENCY_TITLES = (
    ("ttft_ms", "time to first token"),
    ("tpot_ms", "time per output token"),
    ("latency_ms", "query latency"),
)


def _latency_lines(data: ReportInput) -> list[str]:
    """LoadGen's percentiles of each result's performance run (ms): TTFT and TPOT for the LLMs, query latency."""
    rows = []
    columns: list[str] = []
    for result in data.tree.results:
        for key, title in _LATENCY_TITLES:
            found = (data.latencies.get(result.rel_dir) or {}).get(key)
            if found:
                columns += [p for p in found if p not in columns]
                rows.append((f"{result.model} {result.scenario}", title, found))
    if not rows:
        return []
    columns.sort(key=lambda p: float(p[1:]))
    table = [[label, title, *(found.get(p) for p in columns)] for label, title, found in rows]
    return [
        "## Latency percentiles (ms, from the performance logs)",
        "",
        *_table(["Result", "Metric", *columns], table),
        "",
    ]


def relative_finding_path(path: object, tree: Path) -> str:
    if path is None or path == "":
        return ""
    p = Path(str(path))
    for base in (tree, tree.resolve()):
        try:
            return p.relative_to(base).as_posix()
        except ValueError:
            continue
    if p.is_absolute():
        try:
            return p.resolve().relative_to(tree.resolve()).as_posix()
        except (ValueError, OSError):
            pass
    return p.as_posix()
