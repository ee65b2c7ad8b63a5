"""A set of outputs replaced together (subtool/output_set.py): every destination is checked before any is
replaced, and an error names the destination."""

from __future__ import annotations

import os

import pytest

from subtool.errors import SubtoolError
from subtool.output_set import check_replaceable, replace_all


def _set(tmp_path):
    new, out = tmp_path / "new", tmp_path / "out"
    new.mkdir()
    out.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (new / name).write_text(f"new {name}\n")
        (out / name).write_text(f"old {name}\n")
    return new, out


@pytest.mark.parametrize("kind", ["folder", "link", "fifo"])
def test_something_in_the_way_of_the_last_destination_replaces_none(tmp_path, kind):
    new, out = _set(tmp_path)
    last = out / "c.txt"
    last.unlink()
    {"folder": last.mkdir, "link": lambda: last.symlink_to(out / "a.txt"), "fifo": lambda: os.mkfifo(last)}[kind]()
    with pytest.raises(SubtoolError) as err:
        replace_all((new / n, out / n) for n in ("a.txt", "b.txt", "c.txt"))
    assert err.value.path == str(last) and err.value.rule == ("io.eisdir" if kind == "folder" else "io.not_a_file")
    assert "nothing was replaced" in err.value.message
    assert (out / "a.txt").read_text() == "old a.txt\n" and (out / "b.txt").read_text() == "old b.txt\n"
    assert sorted(p.name for p in new.iterdir()) == ["a.txt", "b.txt", "c.txt"]


def test_destinations_that_are_files_or_absent_are_replaced_in_order(tmp_path):
    new, out = _set(tmp_path)
    (out / "b.txt").unlink()
    check_replaceable([out / "a.txt", out / "b.txt", tmp_path / "nowhere" / "x"])
    replace_all((new / n, out / n) for n in ("a.txt", "b.txt", "c.txt"))
    assert [(out / n).read_text() for n in ("a.txt", "b.txt", "c.txt")] == ["new a.txt\n", "new b.txt\n", "new c.txt\n"]
    assert not list(new.iterdir())
