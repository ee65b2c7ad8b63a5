"""Session fixtures of tests/scoring/ (prefix `sc_`): real LoadGen logs, and teams' hand-ins packed by the real
pack stage, built once; tests copy what they change."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sc_logs(tmp_path_factory):
    pytest.importorskip("mlperf_loadgen", reason="the scoring tests pack real LoadGen logs (pip install .[run])")
    from teamgen import generate_logs

    return generate_logs(tmp_path_factory.mktemp("sc-loadgen"))


@pytest.fixture(scope="session")
def sc_handins(sc_logs, tmp_path_factory) -> dict[str, Path]:
    """team → folder holding that team's seven packed artifacts (pristine: copy before changing)."""
    import teamgen

    work = tmp_path_factory.mktemp("sc-teams")
    out = {}
    for team, (_category, spec) in teamgen.COMPETITION.items():
        artifacts = teamgen.make_team(work, sc_logs, teamgen.TeamSpec(team, **spec))
        out[team] = artifacts["tarball"].parent
    out["_trees"] = work
    return out


@pytest.fixture
def sc_copy(sc_handins, tmp_path):
    """Copy some teams' hand-ins into tmp_path/<dest>/<team>/ and return that folder."""

    def copy(teams, dest: str = "handins") -> Path:
        root = tmp_path / dest
        for team in teams:
            shutil.copytree(sc_handins[team], root / team)
        return root

    return copy
