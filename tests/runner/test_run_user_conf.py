"""`subtool run --user-conf` refuses a user.conf LoadGen would run without (empty, misspelt, non-finite) before
anything is loaded, naming the user's file (not the staging copy) and the line."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from subtool.cli import app


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "holds no setting at all"),
        ("*.Offline.nonsense_key = 5\n", "line 1: LoadGen has no setting 'nonsense_key'"),
        ("*.Offline.target_qps = 1e999\n", "line 1: target_qps = 1e999 is not a finite number"),
        ("*.Offline.target_qps = nan\n", "line 1: target_qps = nan is not a finite number"),
        (b"\x00\xff" * 1500, "is not UTF-8 text"),
    ],
)
def test_run_refuses_a_user_conf_loadgen_would_ignore_naming_the_users_file(tmp_path, text, says):
    conf = tmp_path / "mine.conf"
    conf.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["run", "--model", "bert-99", "--scenario", "Offline", "--user-conf", str(conf), "--out", str(out)]
    )
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert str(conf) in errors[0] and says in " ".join(result.stderr.split()) and "[run.user_conf]" in errors[0]
    assert "staging" not in result.stderr and not out.exists()


def test_a_data_set_path_that_is_there_but_no_file_says_so(tmp_path):
    # found by probing: /dev/zero or a FIFO was "dataset file not found"
    fifo = tmp_path / "data.json"
    os.mkfifo(fifo)
    model = tmp_path / "model"
    model.mkdir()
    for path, says in ((fifo, "not a regular file"), (tmp_path / "absent.json", "dataset file not found")):
        result = CliRunner().invoke(
            app,
            [
                "run",
                "--model",
                "bert-99",
                "--model-path",
                str(model),
                "--dataset-path",
                str(path),
                "--out",
                str(tmp_path / "o"),
            ],
        )
        assert result.exit_code == 2 and says in result.stderr, result.output
