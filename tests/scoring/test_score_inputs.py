"""What `subtool score INPUTS` finds: tarballs (.tar.gz and .tgz, whatever the case) and trees at any depth, each
input once however often it is named, never through a link, never the output folder or a hidden one; the files
handed in beside a tarball, never read through a link; and what it passed over, with why, never dropped without a
word."""

from __future__ import annotations

import os

import pytest

from subtool.errors import SubtoolError
from subtool.scoring.inputs import Skipped, discover


def _tarball(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x1f\x8b")
    return path


def _tree(path):
    (path / "open").mkdir(parents=True)
    return path


def test_tarballs_of_both_suffixes_in_any_case_and_trees_are_found_at_any_depth(tmp_path):
    # four folders deep used to be the end: a fifth-level hand-in and a .TAR.GZ vanished from every output
    _tarball(tmp_path / "in" / "a.tar.gz")
    _tarball(tmp_path / "in" / "b.tgz")
    _tarball(tmp_path / "in" / "c.TAR.GZ")
    _tarball(tmp_path / "in" / "x" / "y" / "z" / "deep.tar.gz")
    _tree(tmp_path / "in" / "x" / "y" / "z" / "tree")
    _tarball(tmp_path / "in" / "1" / "2" / "3" / "4" / "5" / "6" / "deeper.tar.gz")
    jobs, skipped = discover([tmp_path / "in"])
    assert [(j.kind, j.display) for j in jobs] == [
        ("tarball", "in/1/2/3/4/5/6/deeper.tar.gz"),
        ("tarball", "in/a.tar.gz"),
        ("tarball", "in/b.tgz"),
        ("tarball", "in/c.TAR.GZ"),
        ("tarball", "in/x/y/z/deep.tar.gz"),
        ("tree", "in/x/y/z/tree"),
    ]
    assert [j.name for j in jobs] == ["deeper", "a", "b", "c", "deep", "tree"] and skipped == []


def test_a_tarball_with_its_extraction_beside_it_is_scored_and_the_tree_listed_as_skipped(tmp_path):
    """The division folder beside it made the folder a tree: the tarball (a garbage one, with no companions) was
    never looked at, and the extraction was ranked in its place without a word."""
    _tarball(tmp_path / "in" / "Beta" / "handin.tar.gz")
    _tree(tmp_path / "in" / "Beta")
    _tarball(tmp_path / "in" / "Beta" / "open" / "Beta" / "documentation" / "old.tar.gz")  # inside the tree
    jobs, skipped = discover([tmp_path / "in"])
    assert [(j.kind, j.display) for j in jobs] == [("tarball", "in/Beta/handin.tar.gz")]
    assert skipped == [Skipped("in/Beta", "division folders beside a tarball: the tarball is scored, not this tree")]
    jobs, skipped = discover([tmp_path / "in" / "Beta"])  # named itself
    assert [j.display for j in jobs] == ["Beta/handin.tar.gz"] and [s.path for s in skipped] == ["Beta"]


def test_archives_of_other_kinds_are_listed_as_skipped(tmp_path):
    _tarball(tmp_path / "in" / "Alpha" / "a.tar.gz")
    _tarball(tmp_path / "in" / "Beta" / "b.zip")
    _tarball(tmp_path / "in" / "Gamma" / "c.tar.xz")
    jobs, skipped = discover([tmp_path / "in"])
    assert [j.display for j in jobs] == ["in/Alpha/a.tar.gz"]
    assert [s.path for s in skipped] == ["in/Beta/b.zip", "in/Gamma/c.tar.xz"]
    assert all("only .tar.gz and .tgz" in s.why for s in skipped)


def test_a_folder_of_more_folders_than_hand_ins_ever_fill_is_refused(tmp_path, monkeypatch):
    from subtool.scoring import inputs

    monkeypatch.setattr(inputs, "MAX_SCAN_FOLDERS", 5)
    for i in range(6):
        (tmp_path / "in" / f"d{i}").mkdir(parents=True)
    _tarball(tmp_path / "in" / "a.tgz")
    with pytest.raises(SubtoolError, match="more than 5 folders"):
        discover([tmp_path / "in"])


def test_an_input_named_twice_is_scored_once(tmp_path):
    one = _tarball(tmp_path / "in" / "team.tar.gz")
    jobs, _ = discover([one, tmp_path / "in", one])
    assert len(jobs) == 1  # twice would flag the team's own copy as a duplicate hand-in


def test_links_hidden_folders_and_the_output_folder_are_not_scanned(tmp_path):
    inp = tmp_path / "in"
    _tarball(inp / "good.tar.gz")
    elsewhere = _tarball(tmp_path / "elsewhere" / "secret.tar.gz")
    _tree(tmp_path / "elsewhere" / "tree")
    os.symlink(elsewhere, inp / "link.tar.gz")
    os.symlink(tmp_path / "elsewhere", inp / "linked-folder")
    os.symlink(tmp_path / "elsewhere" / "tree", inp / "linked-tree")
    _tarball(inp / ".hidden" / "old.tar.gz")
    _tarball(inp / "out" / "leftover.tar.gz")
    jobs, _ = discover([inp], out_dir=inp / "out")
    assert [j.display for j in jobs] == ["in/good.tar.gz"]


def test_a_tree_whose_division_folder_is_a_link_is_not_a_tree(tmp_path):
    (tmp_path / "real" / "open").mkdir(parents=True)
    (tmp_path / "in" / "fake").mkdir(parents=True)
    os.symlink(tmp_path / "real" / "open", tmp_path / "in" / "fake" / "open")
    with pytest.raises(SubtoolError, match="no .tar.gz"):
        discover([tmp_path / "in"])


def test_companions_beside_a_tarball_are_found_but_never_through_a_link(tmp_path):
    tar = _tarball(tmp_path / "in" / "team.tar.gz")
    (tmp_path / "in" / "team_summary.json").write_text("{}")
    (tmp_path / "in" / "team.run").write_text("run")
    (tmp_path / "secret").write_text("x")
    os.symlink(tmp_path / "secret", tmp_path / "in" / "team.tstamps")
    (job,), _ = discover([tar])
    assert sorted(job.companions) == ["run", "summary_json"]
    assert job.linked == ("team.tstamps",)


def test_companions_inside_a_tree_count_only_when_there_is_one_of_each_and_not_a_link(tmp_path):
    tree = _tree(tmp_path / "tree")
    (tree / "team_summary.json").write_text("{}")
    (tree / "team.md").write_text("# notes")
    (tree / "README.md").write_text("# readme")
    (tree / "a.run").write_text("run")
    (tree / "b.run").write_text("run")  # two: which one is the team's?
    (tmp_path / "secret").write_text("x")
    os.symlink(tmp_path / "secret", tree / "team.tstamps")
    (job,), _ = discover([tree])
    assert job.kind == "tree"
    assert {k: os.path.basename(v) for k, v in job.companions.items()} == {
        "summary_json": "team_summary.json",
        "md": "team.md",
    }


def test_a_markdown_file_without_its_summary_is_not_the_md_companion(tmp_path):
    tree = _tree(tmp_path / "tree")
    (tree / "notes.md").write_text("# notes")
    (job,), _ = discover([tree])
    assert "md" not in job.companions


def test_score_refuses_an_out_that_is_a_file(tmp_path):
    from subtool.scoring.api import ScoreOptions, score

    tar = _tarball(tmp_path / "team.tar.gz")
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(SubtoolError) as err:
        score(ScoreOptions(inputs=[tar], out=tmp_path / "out", jobs=1))
    assert err.value.rule == "score.out"


def test_the_cli_says_what_it_skipped_and_scores_the_tarball_not_the_tree_beside_it(sc_copy, tmp_path):
    import json
    import tarfile

    from typer.testing import CliRunner

    from subtool.cli import app

    handins = sc_copy(["Alpha", "Beta"])
    with tarfile.open(handins / "Beta" / "mlperf_submission_short.tar.gz") as tar:
        tar.extractall(handins / "Beta", filter="data")
    (handins / "Beta" / "mlperf_submission_short.tar.gz").write_bytes(b"garbage")  # the hand-in is broken
    (handins / "Gamma").mkdir()
    (handins / "Gamma" / "handin.zip").write_bytes(b"PK")
    result = CliRunner().invoke(app, ["score", str(handins), "--out", str(tmp_path / "out"), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "skipped handins/Beta: division folders beside a tarball" in result.output
    assert "skipped handins/Gamma/handin.zip: an archive of another kind" in result.output
    doc = json.loads((tmp_path / "out" / "leaderboard.json").read_text())
    beta = next(e for e in doc["entries"] if e["input"].startswith("handins/Beta"))
    assert beta["input"] == "handins/Beta/mlperf_submission_short.tar.gz" and beta["error"] is not None
    assert doc["counts"]["skipped"] == 2 and len(doc["skipped"]) == 2
