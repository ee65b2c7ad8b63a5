"""One module per submission round; each holds a single `ROUND` dict (see subtool/mlperf/round.py). This
package also says which rounds exist (VERSIONS, DEFAULT_VERSION, check_version): layout.py and round.py both
need that list, and round.py imports layout.py.

Adding a round = adding a module here and one line to `ROUNDS`.
"""

from __future__ import annotations

from subtool.errors import EXIT_USAGE, SubtoolError
from subtool.mlperf.rounds import v5_0, v5_1, v6_0, v6_1

ROUNDS = {
    "v5.0": v5_0.ROUND,
    "v5.1": v5_1.ROUND,
    "v6.0": v6_0.ROUND,
    "v6.1": v6_1.ROUND,
}

# Every round subtool knows, oldest first, and the one it uses when nothing says otherwise.
VERSIONS = tuple(sorted(ROUNDS))
DEFAULT_VERSION = "v6.1"
ROUND_RULE = "round.unknown"


def check_version(version: str) -> str:
    """Refuse a round subtool has no table for (one rule id for every command)."""
    if version not in ROUNDS:
        raise SubtoolError(
            f"unknown submission round {version!r}",
            rule=ROUND_RULE,
            exit_code=EXIT_USAGE,
            hint=f"use one of {', '.join(reversed(VERSIONS))}",
        )
    return version
