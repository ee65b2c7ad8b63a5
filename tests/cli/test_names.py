"""One alphabet for submitter and system names, one rule id, every command.

A name is given on the command line (package, all, system, pack --name) or found as a folder of a tree (check,
ci, pack's summary, publish). Each command gets the same lists; a good name is never refused for its name (the
command may still stop for another reason, under another rule), a bad one is refused with `tree.bad_name`.
The help texts say the alphabet the code enforces.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from subtool.cli import app
from subtool.mlperf.layout import BAD_NAME, NAME_ALPHABET, check_name, name_problem

runner = CliRunner()
RULE = f"[{BAD_NAME}]"

GOOD = ["TeamX", "Team_X", "team-x", "Team.X", "Team+X", "A", "9lives", "1-node-2S-EMR-PyTorch", "v6.1_H100x8"]
# Names a folder can have that the alphabet refuses.
BAD_FOLDERS = ["Team X", ".hidden", "-dash", "_under", "+plus", "Équipe", "Team$", "a:b", "Team\tX", "x'y"]
# ...and names no folder can have (still refused on the command line, the same way).
BAD = [*BAD_FOLDERS, "Team/X", "", ".."]


def _refused(result) -> bool:
    text = result.stderr if result.stderr_bytes else result.output
    if result.exit_code == 2 and RULE in text:
        return True
    assert RULE not in text, text  # never a name finding on a good name
    return False


def test_the_lists_are_what_the_alphabet_says():
    assert all(name_problem(n) is None for n in GOOD)
    assert all(name_problem(n) for n in BAD)
    for name in BAD:
        with pytest.raises(Exception) as err:
            check_name(name, "submitter")
        assert err.value.rule == BAD_NAME and err.value.exit_code == 2


# ------------------------------------------------------------------------------------ names given as options
def _option_commands(tmp_path: Path, name: str) -> dict[str, list[str]]:
    out = str(tmp_path / "out")
    nowhere = str(tmp_path / "no-such-run")
    return {
        "package --submitter": ["package", "--submitter", name, "--from", nowhere, "--out", out],
        "package --system": ["package", "--submitter", "TeamX", "--system", name, "--from", nowhere, "--out", out],
        "all --submitter": ["all", "--submitter", name, "--out", out, "--only", "publish"],
        "all --system": ["all", "--submitter", "TeamX", "--system", name, "--out", out, "--only", "publish"],
        "system --submitter": ["system", "--submitter", name, "--validate", str(tmp_path / "none.json")],
        "pack --name": ["pack", str(tmp_path / "no-tree"), "--out", out, "--name", name],
    }


@pytest.mark.parametrize("name", GOOD + BAD)
def test_every_command_gives_an_option_name_the_same_verdict(tmp_path, name):
    expected = name_problem(name) is not None
    if name == "":  # `system --submitter ""` means "leave the field empty", which is no folder name
        commands = {k: v for k, v in _option_commands(tmp_path, name).items() if k != "system --submitter"}
    else:
        commands = _option_commands(tmp_path, name)
    verdicts = {what: _refused(runner.invoke(app, args)) for what, args in commands.items()}
    assert verdicts == dict.fromkeys(commands, expected), name


# ----------------------------------------------------------------------------------- names found in a tree
def _tree(root: Path, submitter: str, system: str) -> Path:
    result = root / "closed" / submitter / "results" / system / "bert-99" / "Offline"
    result.mkdir(parents=True, exist_ok=True)
    (result / "README.md").write_text("x\n")
    return root


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True)


def _combined_tree(root: Path, names=None) -> dict[str, tuple[str, str]]:
    """One tree holding every name, as a submitter folder and as a system folder: name → the two paths."""
    where = {}
    for name in names if names is not None else GOOD + BAD_FOLDERS:
        _tree(root, name, "sys1")
        _tree(root, "TeamX", name)
        where[name] = (f"closed/{name}", f"closed/TeamX/results/{name}")
    return where


def _flagged(findings: list[dict]) -> set[str]:
    return {f["path"] for f in findings if f["rule"] == BAD_NAME}


def test_check_ci_and_pack_give_every_folder_name_the_same_verdict(tmp_path):
    where = _combined_tree(tmp_path / "tree")
    check = runner.invoke(app, ["check", str(tmp_path / "tree"), "--json"])
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "base")
    _git(repo, "branch", "base")
    _combined_tree(repo)
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "add")
    ci = runner.invoke(app, ["ci", str(repo), "--base-ref", "base", "--json"])
    # pack: a control character in a member name is refused outright (verify and score refuse such a tarball),
    # so its tree holds the other names
    packable = [n for n in GOOD + BAD_FOLDERS if n.isprintable()]
    pack_where = _combined_tree(tmp_path / "pack-tree", packable)
    runner.invoke(app, ["pack", str(tmp_path / "pack-tree"), "--out", str(tmp_path / "art"), "--json"])
    (summary,) = (tmp_path / "art").glob("*_summary.json")
    flagged = {
        "check": _flagged(json.loads(check.stdout)["findings"]),
        "ci": _flagged(json.loads(ci.stdout)["findings"]),
    }
    expected = {path for name, paths in where.items() if name_problem(name) for path in paths}
    assert expected and all(paths == expected for paths in flagged.values()), flagged
    pack_expected = {path for name, paths in pack_where.items() if name_problem(name) for path in paths}
    assert _flagged(json.loads(summary.read_text())["subtool"]["errors"]) == pack_expected
    refused = runner.invoke(app, ["pack", str(tmp_path / "tree"), "--out", str(tmp_path / "art2")])
    said = " ".join(refused.output.split())
    assert refused.exit_code != 0 and "[extract.bad_name]" in said and "Team\\tX" in said, said


@pytest.mark.parametrize("name", GOOD + BAD_FOLDERS)
@pytest.mark.parametrize("place", ["submitter", "system"])
def test_publish_gives_every_folder_name_the_same_verdict(tmp_path, name, place):
    tree = _tree(tmp_path / "tree", *((name, "sys1") if place == "submitter" else ("TeamX", name)))
    result = runner.invoke(app, ["publish", str(tree), "--fork", str(tmp_path / "no-fork.git"), "--dry-run"])
    assert _refused(result) == (name_problem(name) is not None)


# ---------------------------------------------------------------------------------------------- help texts
def _help(command: str, option: str) -> str:
    cmd = typer.main.get_command(app).commands[command]
    (param,) = [p for p in cmd.params if option in getattr(p, "opts", ())]
    return param.help or ""


@pytest.mark.parametrize(
    "command, option",
    [
        ("package", "--submitter"),
        ("package", "--system"),
        ("all", "--submitter"),
        ("all", "--system"),
        ("system", "--submitter"),
        ("pack", "--name"),
        ("all", "--name"),
    ],
)
def test_help_says_the_alphabet_the_code_enforces(command, option):
    assert NAME_ALPHABET in _help(command, option)
