"""score: organisers' side. Safe extraction of teams' tarballs, the checker, ranking rules (TOML), leaderboards.

Entry point: `score(ScoreOptions) -> ScoreResult` (subtool.scoring.api).
"""

from subtool.scoring.api import ScoreOptions, ScoreResult, score

__all__ = ["ScoreOptions", "ScoreResult", "score"]
