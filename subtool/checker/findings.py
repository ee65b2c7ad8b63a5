"""A finding: one broken (or waived, or noted) rule at one path, with the fix."""

from __future__ import annotations

from dataclasses import dataclass, field

from subtool.checker.registry import RULES


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str  # "error" | "warning" | "info" | "waived"
    path: str  # relative to the tree root
    message: str
    hint: str
    result: str | None  # the result id it belongs to; None for a system / benchmark / submitter finding

    def to_dict(self) -> dict:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "path": self.path,
            "message": self.message,
            "hint": self.hint,
            "result": self.result,
        }


@dataclass
class Collector:
    """Gathers findings for one scope (a result, a system, a benchmark folder, a submitter)."""

    result: str | None = None
    findings: list[Finding] = field(default_factory=list)

    def add(self, rule: str, path: str, message: str, hint: str = "", severity: str | None = None) -> None:
        sev = severity or RULES[rule].severity
        self.findings.append(Finding(rule, sev, str(path), message, hint, self.result))

    def has_error(self) -> bool:
        return any(f.severity == "error" for f in self.findings)
