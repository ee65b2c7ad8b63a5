"""pack's use of the checker (the declared pack → checker edge): run it on a tree, and the findings as the
report and verify show them. pack/api.py and pack/verify.py both import it, so neither imports the other back."""

from __future__ import annotations

from pathlib import Path

from subtool.pack.report import FindingView, relative_finding_path


def run_checker(tree: Path, version: str, waive: frozenset[str]):
    from subtool.checker.api import CheckOptions, check_tree

    return check_tree(tree, CheckOptions(version=version, waive=frozenset(waive)))


def finding_views(report, tree: Path) -> list[FindingView]:
    views = [
        FindingView(
            rule=str(getattr(f, "rule", "")),
            severity=str(getattr(f, "severity", "")),
            path=relative_finding_path(getattr(f, "path", None), tree),
            message=str(getattr(f, "message", "")),
            hint=str(getattr(f, "hint", "") or ""),
        )
        for f in report.findings
    ]
    order = {"error": 0, "waived": 1, "warning": 2, "info": 3}
    return sorted(views, key=lambda v: (order.get(v.severity, 4), v.path, v.rule, v.message))


def verdict(report) -> str:
    return "PASS" if report.ok else "FAIL"


def portable_report(report, tree: Path):
    """The report with each summary row's Location relative to the tree, as the official checker writes it when
    run from the tree's root: the packer's own folders stay out of the hand-in, and the same tree packed (or
    re-checked by verify) anywhere gives the same summary."""
    import dataclasses

    rows = []
    for row in getattr(report, "rows", None) or []:
        row = dict(row)
        if isinstance(row.get("Location"), str):
            row["Location"] = relative_finding_path(row["Location"], tree)
        rows.append(row)
    return dataclasses.replace(report, rows=rows) if dataclasses.is_dataclass(report) else report
