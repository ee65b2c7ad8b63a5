"""What `subtool score INPUTS` finds: tarballs (.tar.gz and .tgz) and trees up to four folders deep, each input
once however often it is named, never through a link, never the output folder or a hidden one; and the files
handed in beside a tarball, never read through a link."""

from __future__ import annotations

import os

import pytest

from subtool.errors import SubtoolError
from subtool.scoring.inputs import discover


def _tarball(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x1f\x8b")
    return path


def _tree(path):
    (path / "open").mkdir(parents=True)
    return path


def test_tarballs_of_both_suffixes_and_trees_are_found_up_to_four_folders_deep(tmp_path):
    _tarball(tmp_path / "in" / "a.tar.gz")
    _tarball(tmp_path / "in" / "b.tgz")
    _tarball(tmp_path / "in" / "x" / "y" / "z" / "deep.tar.gz")  # three folders below INPUT
    _tree(tmp_path / "in" / "x" / "y" / "z" / "tree")  # a tree found as the fourth folder down
    _tarball(tmp_path / "in" / "1" / "2" / "3" / "4" / "too-deep.tar.gz")
    jobs = discover([tmp_path / "in"])
    assert [(j.kind, j.display) for j in jobs] == [
        ("tarball", "in/a.tar.gz"),
        ("tarball", "in/b.tgz"),
        ("tarball", "in/x/y/z/deep.tar.gz"),
        ("tree", "in/x/y/z/tree"),
    ]
    assert [j.name for j in jobs] == ["a", "b", "deep", "tree"]


def test_an_input_named_twice_is_scored_once(tmp_path):
    one = _tarball(tmp_path / "in" / "team.tar.gz")
    jobs = discover([one, tmp_path / "in", one])
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
    jobs = discover([inp], out_dir=inp / "out")
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
    (job,) = discover([tar])
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
    (job,) = discover([tree])
    assert job.kind == "tree"
    assert {k: os.path.basename(v) for k, v in job.companions.items()} == {
        "summary_json": "team_summary.json",
        "md": "team.md",
    }


def test_a_markdown_file_without_its_summary_is_not_the_md_companion(tmp_path):
    tree = _tree(tmp_path / "tree")
    (tree / "notes.md").write_text("# notes")
    (job,) = discover([tree])
    assert "md" not in job.companions


def test_score_refuses_an_out_that_is_a_file(tmp_path):
    from subtool.scoring.api import ScoreOptions, score

    tar = _tarball(tmp_path / "team.tar.gz")
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(SubtoolError) as err:
        score(ScoreOptions(inputs=[tar], out=tmp_path / "out", jobs=1))
    assert err.value.rule == "score.out"
