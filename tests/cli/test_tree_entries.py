"""What a tree may hold instead of plain files and folders (a FIFO, a link, an unreadable file): `check` reports
it and `pack` and `publish` refuse it, all under the same rule id, because all three walk the tree with the one
walker (subtool.mlperf.layout.walk)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from subtool.cli import app

runner = CliRunner()


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _link(path: Path) -> None:
    path.symlink_to("/etc/hostname")


def _unreadable(path: Path) -> None:
    path.write_text("secret\n")
    path.chmod(0)


@pytest.mark.parametrize(
    "make, rule",
    [(_fifo, "tree.special_file"), (_link, "tree.symlink"), (_unreadable, "tree.unreadable")],
)
def test_check_pack_and_publish_name_an_entry_with_one_rule(request, tmp_path, make, rule):
    from support.unprivileged import rerun_bound_by_permissions

    if rule == "tree.unreadable" and rerun_bound_by_permissions(request):
        return
    result = tmp_path / "tree" / "closed" / "TeamX" / "results" / "sys1" / "bert-99" / "Offline"
    result.mkdir(parents=True)
    (result / "README.md").write_text("x\n")
    make(result / "odd")
    tree = tmp_path / "tree"
    check = runner.invoke(app, ["check", str(tree), "--json"])
    found = {(f["rule"], f["path"]) for f in json.loads(check.stdout)["findings"]}
    assert (rule, "closed/TeamX/results/sys1/bert-99/Offline/odd") in found
    pack = runner.invoke(app, ["pack", str(tree), "--out", str(tmp_path / "art")])
    publish = runner.invoke(app, ["publish", str(tree), "--fork", str(tmp_path / "no-fork.git"), "--dry-run"])
    for refused in (pack, publish):
        assert refused.exit_code == 2 and f"[{rule}]" in refused.stderr, refused.output
        assert "odd" in refused.stderr
    assert not (tmp_path / "art").exists()
