"""user.conf edges: the last number on a line is the one LoadGen keeps, so it is the one held to the rules; a
user.conf reached through a symbolic link (the user's own file) is read."""

from __future__ import annotations

import pytest

from subtool.errors import SubtoolError
from subtool.mlperf.user_conf import check_user_conf


def _check(tmp_path, text: str):
    path = tmp_path / "user.conf"
    path.write_text(text)
    return check_user_conf(path, "bert-99", "Offline")


def test_the_last_value_on_a_line_is_the_one_checked(tmp_path):
    with pytest.raises(SubtoolError) as err:
        _check(tmp_path, "bert-99.Offline.target_qps = 100 -1\n")
    assert err.value.rule == "run.user_conf" and "line 1: target_qps = -1 is negative" in err.value.message
    (kept,) = _check(tmp_path, "bert-99.Offline.target_qps = -1 100\n")
    assert kept.value == "100"


def test_a_user_conf_behind_a_symbolic_link_is_read(tmp_path):
    real = tmp_path / "conf" / "user.conf"
    real.parent.mkdir()
    real.write_text("*.Offline.target_qps = 100\n")
    link = tmp_path / "user.conf"
    link.symlink_to(real)
    (kept,) = check_user_conf(link, "bert-99", "Offline")
    assert (kept.name, kept.value) == ("target_qps", "100")
