"""`subtool publish` refuses a tree with a symbolic link before anything reaches the forge (issue 19, item 13).

A link to ~/.config/gh would push the file that holds the token; a link to / would publish the filesystem.
The rule is the checker's (tree.symlink), shared with check and pack, so every kind of link is refused:
out of the tree, inside it, dangling, a loop, as a file, a folder, a submitter or a division.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from subtool.errors import SubtoolError
from subtool.publish.api import publish_tree

from .conftest import UPSTREAM

BRANCH = "subtool/TeamX"


def _gh_config(tmp_path: Path, token: str) -> Path:
    """What `gh auth login` leaves in ~/.config/gh: the token in hosts.yml."""
    gh = tmp_path / "home" / ".config" / "gh"
    gh.mkdir(parents=True)
    (gh / "hosts.yml").write_text(f"github.com:\n    oauth_token: {token}\n    user: alice\n")
    return gh


def _run_cli(args: list[str], token: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_TOKEN", "GH_TOKEN", "GITHUB_API_URL")}
    env.update(GITHUB_TOKEN=token, SUBTOOL_CACHE=str(tmp_path / "xdg-cache"), HOME=str(tmp_path / "home"))
    code = "import sys; from subtool.cli import main; sys.argv[0] = 'subtool'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, "publish", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_link_to_the_gh_config_is_refused_before_anything_is_pushed(tmp_path, forge, users, alice_fork, tree):
    gh = _gh_config(tmp_path, users.alice)
    (tree / "open/TeamX/documentation/notes").symlink_to(gh)
    args = [str(tree), "--fork", alice_fork, "--upstream", UPSTREAM, "--api-url", forge.api_url]
    before = list(forge.log)  # (the fixture forked the upstream through the API)
    result = _run_cli(args, users.alice, tmp_path)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "[tree.symlink]" in errors[0] and "outside the tree" in errors[0]
    assert "open/TeamX/documentation/notes" in errors[0]
    assert "Traceback" not in result.stderr
    assert users.alice not in result.stdout + result.stderr
    # nothing reached the forge: no API call, no git request, no branch on the fork
    assert forge.log == before
    assert forge.branch_sha("alice/results", BRANCH) is None


def _link(tree: Path, tmp_path: Path, kind: str) -> Path:
    team = tree / "open" / "TeamX"
    if kind == "root_folder":
        return _make(team / "documentation" / "everything", Path("/"))
    if kind == "outside_file":
        secret = tmp_path / "secret.txt"
        secret.write_text("not for the fork\n")
        return _make(team / "systems" / "extra.json", secret)
    if kind == "relative_outside":
        return _make(team / "src" / "up", Path("../../../.."))
    if kind == "inside_file":
        return _make(team / "src" / "again.md", Path("../documentation/README.md"))
    if kind == "dangling":
        return _make(team / "src" / "gone", tmp_path / "does-not-exist")
    if kind == "loop":
        return _make(team / "results" / "loop", Path("loop"))
    if kind == "submitter":
        return _make(tree / "open" / "TeamY", team)
    if kind == "division":
        (tree / "open").rename(tmp_path / "elsewhere")
        return _make(tree / "open", tmp_path / "elsewhere")
    raise AssertionError(kind)


def _make(link: Path, target: Path) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


@pytest.mark.parametrize(
    "kind",
    ["root_folder", "outside_file", "relative_outside", "inside_file", "dangling", "loop", "submitter", "division"],
)
def test_every_link_is_refused_with_the_checker_rule(tmp_path, forge, users, alice_fork, tree, fast, monkeypatch, kind):
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    link = _link(tree, tmp_path, kind)
    before = list(forge.log)
    with pytest.raises(SubtoolError) as info:
        publish_tree(fast(tree, alice_fork))
    err = info.value
    assert err.rule == "tree.symlink" and err.exit_code == 2
    assert err.path == str(link) and "symbolic link" in err.message
    assert "\n" not in err.one_line()
    assert forge.log == before and forge.branch_sha("alice/results", BRANCH) is None


def test_check_and_pack_give_the_same_rule_for_the_same_link(tmp_path, tree):
    """One rule for the three stages: check reports tree.symlink on the link, pack refuses with it."""
    from subtool.checker.api import CheckOptions, check_tree
    from subtool.pack.api import PackOptions, pack_tree

    gh = _gh_config(tmp_path, "ghp_" + "0" * 36)
    link = tree / "open" / "TeamX" / "documentation" / "notes"
    link.symlink_to(gh)
    report = check_tree(tree, CheckOptions())
    (finding,) = [f for f in report.findings if f.rule == "tree.symlink"]
    assert finding.severity == "error" and finding.path == "open/TeamX/documentation/notes"
    assert "outside the tree" in finding.message and not report.ok
    with pytest.raises(SubtoolError) as info:
        pack_tree(PackOptions(tree=tree, out=tmp_path / "out"))
    assert info.value.rule == "tree.symlink" and info.value.path == str(link)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
