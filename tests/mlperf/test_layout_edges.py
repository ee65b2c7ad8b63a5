"""Layout edges: replacing a legacy-layout (v5.x) result removes its measurements and compliance folders too, a
walk that skips `.git` folders still reports a link or a file of that name, and a link into a sibling folder whose
name merely starts like the tree's is outside the tree."""

from __future__ import annotations

from pathlib import Path

from subtool.mlperf.layout import DIR, FILE, LINK, Layout, ResultKey, describe_link, walk

KEY = ResultKey("closed", "TeamX", "box1", "bert-99", "Offline")


def test_a_legacy_result_owns_its_measurements_and_compliance_folders():
    owned = set(Layout("v5.0").owned_dirs(KEY))
    sub = Path("closed/TeamX")
    assert owned == {
        sub / "results/box1/bert-99/Offline",
        sub / "measurements/box1/bert-99/Offline",
        sub / "compliance/box1/bert-99/Offline",
    }
    assert Layout("v6.1").owned_dirs(KEY) == [sub / "results/box1/bert-99/Offline"]


def test_skipping_git_folders_never_skips_a_link_or_file_named_git(tmp_path):
    top = tmp_path / "closed" / "TeamX"
    (top / "a" / ".git").mkdir(parents=True)
    (top / "a" / ".git" / "config").write_text("x")
    (top / "b").mkdir()
    (top / "b" / ".git").symlink_to(tmp_path)
    (top / "c").mkdir()
    (top / "c" / ".git").write_text("gitdir: /elsewhere\n")
    seen = {(e.rel, e.kind) for e in walk(tmp_path, "closed/TeamX", skip=frozenset({".git"}))}
    assert ("closed/TeamX/b/.git", LINK) in seen and ("closed/TeamX/c/.git", FILE) in seen
    assert ("closed/TeamX/a", DIR) in seen and not any(rel.startswith("closed/TeamX/a/.git") for rel, _ in seen)


def test_a_link_into_a_sibling_with_the_same_prefix_is_outside_the_tree(tmp_path):
    tree, sibling = tmp_path / "tree", tmp_path / "tree-old"
    tree.mkdir()
    sibling.mkdir()
    (sibling / "secret.txt").write_text("x")
    (tree / "file.txt").write_text("x")
    (tree / "out").symlink_to(sibling / "secret.txt")
    (tree / "in").symlink_to(tree / "file.txt")
    assert describe_link(tree / "out", tree).endswith("outside the tree")
    assert describe_link(tree / "in", tree).endswith("(inside the tree)")
