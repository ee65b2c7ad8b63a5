"""Stages that run no model start without torch, transformers or LoadGen (organizers' and CI machines)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support.cli_child import BLOCK_HEAVY


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["check", "--help"],
        ["package", "--help"],
        ["pack", "--help"],
        ["publish", "--help"],
        ["score", "--help"],
        ["system", "--help"],
        ["ci", "--help"],
        ["all", "--help"],
        ["run", "--help"],
        ["fetch", "--help"],
    ],
)
def test_help_never_imports_the_model_stack(args):
    proc = subprocess.run([sys.executable, "-c", BLOCK_HEAVY, *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "blocked heavy import" not in proc.stderr


def test_check_runs_on_a_tree_without_the_model_stack(tmp_path):
    tree = tmp_path / "tree"
    (tree / "open" / "TeamX" / "results").mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_HEAVY, "check", str(tree), "--json"], capture_output=True, text=True
    )
    assert "blocked heavy import" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 1), proc.stderr
