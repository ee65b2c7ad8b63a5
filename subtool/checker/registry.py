"""The checker's rule registry: every finding names one of these ids; RULES.md documents them (a test keeps
the two in step).

Each rules module (checker/rules/*.py) registers its ids with `define(...)` at import time; this module
imports none of them, so anything may import it (findings, rules, the report) without an import circle.
`subtool.checker.rules.all_rules()` imports every rules module and returns the full registry.
"""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("error", "warning", "info", "waived")


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str  # default severity; some rules downgrade in the open division
    summary: str
    official: str  # what the official checker does for the same problem


RULES: dict[str, Rule] = {}


def define(rule_id: str, severity: str, summary: str, official: str) -> str:
    if rule_id in RULES:
        raise ValueError(f"rule {rule_id} defined twice")
    if severity not in SEVERITIES:
        raise ValueError(f"bad severity {severity} for {rule_id}")
    RULES[rule_id] = Rule(rule_id, severity, summary, official)
    return rule_id
