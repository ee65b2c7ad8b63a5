"""The rules, one module per concern; each registers its ids in `subtool.checker.registry` when imported.

`all_rules()` imports them all and returns the registry (RULES.md lists the same ids; a test keeps the two in
step). The rule modules import `subtool.checker.registry`, never this package, so there is no import circle.
"""

from __future__ import annotations

from subtool.checker.registry import RULES, Rule


def all_rules() -> dict[str, Rule]:
    # Importing the modules registers their rules.
    from subtool.checker.rules import (  # noqa: F401
        accuracy,
        compliance,
        inputs,
        layout,
        measurements,
        performance,
        scenarios,
        summary,
        system,
    )

    return RULES
