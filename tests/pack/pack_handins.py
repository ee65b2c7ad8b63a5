"""Hand-ins for the pack tests: a team tree laid out from real LoadGen logs (the scoring tests' teamgen) and packed
through the CLI, a copy of one to change, and `pack --verify` on it."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scoring"))
import teamgen  # noqa: E402  (the scoring tests' real-LoadGen team trees)

from subtool.cli import app  # noqa: E402

NAME = "mlperf_submission_short"


def pack_team(logs, root: Path, run: int, *waive: str, exit_codes=(0, 1)) -> Path:
    """TeamV's tree with performance run `run` of `logs`, packed with `waive`; the tarball."""
    tree = teamgen.build_team_tree(root / "tree", logs, teamgen.TeamSpec("TeamV", results={"bert-99": run}))
    result = CliRunner().invoke(
        app, ["pack", str(tree), "--out", str(root / "out"), "--json", *[a for w in waive for a in ("--waive", w)]]
    )
    assert result.exit_code in exit_codes, result.output
    return root / "out" / f"{NAME}.tar.gz"


def copy_handin(packed: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for f in packed.parent.iterdir():
        shutil.copyfile(f, dest / f.name)
    return dest / packed.name


def verify(tarball: Path):
    result = CliRunner().invoke(app, ["pack", "--verify", str(tarball), "--json"])
    return result, json.loads(result.stdout[result.stdout.index("{") :])
