"""Findings → human output (rich, grouped by result), the JSON report, and the official summary.csv."""

from __future__ import annotations

import errno
import io
from collections import defaultdict
from pathlib import Path

from subtool.checker.api import SUMMARY_COLUMNS, CheckReport
from subtool.errors import EXIT_USAGE, SubtoolError, safe_markup
from subtool.fsutil import atomic_write_json, atomic_write_text

REPORT_SCHEMA = "subtool.check/1"
_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan", "waived": "magenta"}
_ORDER = {"error": 0, "waived": 1, "warning": 2, "info": 3}
# Above this many results, clean passes are counted instead of listed (the JSON report lists every one).
LIST_ALL_UP_TO = 100


def report_to_dict(report: CheckReport) -> dict:
    counts = defaultdict(int)
    for f in report.findings:
        counts[f.severity] += 1
    return {
        "schema": REPORT_SCHEMA,
        "tree": report.tree,
        "version": report.version,
        "ok": report.ok,
        "waived_rules": report.waived_rules,
        "counts": {
            "results": len(report.results),
            "passed": sum(r.passed for r in report.results),
            "failed": sum(not r.passed for r in report.results),
            **{k: counts[k] for k in _ORDER},
        },
        "results": [r.to_dict() for r in report.results],
        "findings": [f.to_dict() for f in report.findings],
        "summary_rows": report.rows,
        "official_diff": _official_dict(report.official_diff),
    }


def _official_dict(diff: object) -> object:
    if diff is None:
        return None
    to_dict = getattr(diff, "to_dict", None)
    return to_dict() if callable(to_dict) else diff


def _written(option: str, path: str | Path, write) -> Path:
    try:
        return write()
    except OSError as exc:
        what = "is a folder" if exc.errno == errno.EISDIR else (exc.strerror or str(exc))
        raise SubtoolError(
            f"{option}: cannot write the file ({what})",
            path=path,
            rule="cli.output",
            hint="give a writable file path",
            exit_code=EXIT_USAGE,
        ) from None


def write_report_json(report: CheckReport, path: str | Path, option: str = "--report") -> Path:
    return _written(option, path, lambda: atomic_write_json(path, report_to_dict(report)))


def summary_csv_text(report: CheckReport) -> str:
    """Header unquoted, every value quoted as the official exporter writes it (str() of the value)."""
    buf = io.StringIO()
    buf.write(",".join(SUMMARY_COLUMNS) + "\n")
    for row in report.rows:
        buf.write(",".join(f'"{row.get(col, "")}"' for col in SUMMARY_COLUMNS) + "\n")
    return buf.getvalue()


def write_summary_csv(report: CheckReport, path: str | Path, option: str = "--csv") -> Path:
    return _written(option, path, lambda: atomic_write_text(path, summary_csv_text(report)))


def _fmt_value(value: float | None, units: str) -> str:
    if value is None:
        return "no result"
    # two decimals, as `subtool all` prints a result (1268.59, not 1,269); four significant digits below 1
    return f"{value:.2f} {units}" if abs(value) >= 1 else f"{value:.4g} {units}"


def print_human(report: CheckReport, console) -> None:
    escape = safe_markup

    by_result = defaultdict(list)
    for f in report.findings:
        by_result[f.result].append(f)
    shared = by_result.pop(None, [])
    console.print(f"[bold]subtool check[/] {escape(report.tree)}  rules {report.version}", highlight=False)
    if shared:
        console.print("[bold]tree, submitters, systems, benchmarks[/]", highlight=False)
        for f in sorted(shared, key=lambda f: (_ORDER[f.severity], f.path)):
            _print_finding(console, f, escape)
    quiet = len(report.results) > LIST_ALL_UP_TO
    clean = 0
    for verdict in report.results:
        own = sorted(by_result.get(verdict.result, []), key=lambda f: (_ORDER[f.severity], f.rule))
        if quiet and verdict.passed and not own and not verdict.waived:
            clean += 1
            continue
        if verdict.passed:
            badge = "[bold green]PASS[/]" if not verdict.waived else "[bold magenta]PASS (waived)[/]"
        else:
            badge = "[bold red]FAIL[/]"
        value = _fmt_value(verdict.value, verdict.units)
        acc = f"  accuracy {escape(verdict.accuracy)}" if verdict.accuracy else ""
        console.print(f"{badge} {escape(verdict.result)}  {escape(value)}{acc}", highlight=False)
        inherited = [r for r in verdict.failed if r not in {f.rule for f in own}]
        if inherited:
            console.print(
                f"    [red]fails with shared findings above:[/] {escape(', '.join(inherited))}", highlight=False
            )
        for f in own:
            _print_finding(console, f, escape)
        for rule in verdict.waived:
            why = "short run" if rule == "perf.min_duration" else "waived on request"
            console.print(f"    [magenta]{escape(rule)} waived ({why})[/]", highlight=False)
    if clean:
        console.print(
            f"[bold green]PASS[/] {clean} more results without findings (listed in --json / --report)", highlight=False
        )
    passed = sum(r.passed for r in report.results)
    total = len(report.results)
    errors = sum(f.severity == "error" for f in report.findings)
    colour = "green" if report.ok else "red"
    tail = f"; waived: {', '.join(report.waived_rules)}" if report.waived_rules else ""
    console.print(f"[bold {colour}]{passed}/{total} results pass, {errors} error(s){escape(tail)}[/]", highlight=False)
    if report.official_diff is not None:
        from subtool.checker.official import print_official_diff

        print_official_diff(report.official_diff, console)


def _print_finding(console, f, escape) -> None:
    style = _STYLE[f.severity]
    console.print(
        f"    [{style}]{f.severity:<7}[/] [bold]{escape(f.rule)}[/] {escape(f.path)}: {escape(f.message)}",
        highlight=False,
        soft_wrap=True,
    )
    if f.hint and f.severity in ("error", "warning"):
        console.print(f"            fix: {escape(f.hint)}", highlight=False, soft_wrap=True)


__all__ = ["print_human", "report_to_dict", "write_report_json", "write_summary_csv", "summary_csv_text"]
