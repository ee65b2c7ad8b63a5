"""Every command that takes --version refuses a round subtool has no table for, first, with one rule id."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from subtool.cli import app
from subtool.mlperf.rounds import ROUND_RULE

runner = CliRunner()


def _commands(tmp_path):
    tree = tmp_path / "tree"
    (tree / "closed" / "TeamX" / "results").mkdir(parents=True)
    tarball = tmp_path / "x.tar.gz"
    tarball.write_bytes(b"")
    return {
        "run": ["run", "--model", "bert-99", "--demo", "--out", str(tmp_path / "o1")],
        "package": ["package", "--submitter", "TeamX", "--from", str(tmp_path), "--out", str(tmp_path / "o2")],
        "check": ["check", str(tree)],
        "pack": ["pack", str(tree), "--out", str(tmp_path / "o3")],
        "pack --verify": ["pack", "--verify", str(tarball)],
        "all": ["all", "--submitter", "TeamX", "--out", str(tmp_path / "o4")],
        "ci": ["ci", str(tmp_path), "--base-ref", "origin/main"],  # not even a git checkout: --version is first
    }


@pytest.mark.parametrize("version", ["v4.9", "6.1", "V6.1", ""])
def test_an_unknown_round_is_refused_first_by_every_command(tmp_path, version):
    for what, args in _commands(tmp_path).items():
        result = runner.invoke(app, [*args, "--version", version])
        assert result.exit_code == 2 and f"[{ROUND_RULE}]" in result.stderr, (what, result.output)
        assert "Traceback" not in result.output
    assert not any((tmp_path / o).exists() for o in ("o1", "o2", "o3", "o4"))
