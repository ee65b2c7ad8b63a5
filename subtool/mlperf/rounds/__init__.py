"""One module per submission round; each holds a single `ROUND` dict (see subtool/mlperf/round.py).

Adding a round = adding a module here and one line to `ROUNDS`.
"""

from __future__ import annotations

from subtool.mlperf.rounds import v5_0, v5_1, v6_0, v6_1

ROUNDS = {
    "v5.0": v5_0.ROUND,
    "v5.1": v5_1.ROUND,
    "v6.0": v6_0.ROUND,
    "v6.1": v6_1.ROUND,
}
