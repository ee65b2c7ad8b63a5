"""Two things of the result layout no other package test looks at: the harness's mlperf.conf kept beside user.conf,
and a --compliance folder that holds nothing the checker reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from subtool.cli import app
from subtool.errors import SubtoolError
from subtool.package.results import _write_compliance

RESULT = "closed/TeamX/results/box1/bert-99/Offline"
MLPERF_CONF = "# the harness's own copy\nbert.Offline.target_qps = 1\n"


def _loose(run: Path, out: Path, test01: Path):
    return CliRunner().invoke(
        app,
        [
            "package",
            "--perf",
            str(run / "performance" / "run_1"),
            "--acc",
            str(run / "accuracy"),
            "--compliance",
            f"TEST01={test01}",
            "--model",
            "bert-99",
            "--division",
            "closed",
            "--submitter",
            "TeamX",
            "--system",
            "box1",
            "--out",
            str(out),
        ],
    )


def test_the_harnesss_mlperf_conf_is_kept_beside_its_user_conf(pkg_lg, pkg_copy, tmp_path):
    run = pkg_copy(pkg_lg["Offline"])
    (run / "performance" / "run_1" / "mlperf.conf").write_text(MLPERF_CONF)
    result = _loose(run, tmp_path / "tree", run / "TEST01")
    assert result.exit_code == 0, result.output
    kept = tmp_path / "tree" / RESULT / "mlperf.conf"
    assert kept.read_text() == MLPERF_CONF
    assert (kept.parent / "user.conf").is_file()


def test_a_compliance_folder_holding_nothing_the_checker_reads_is_refused(pkg_lg, pkg_copy, tmp_path):
    run = pkg_copy(pkg_lg["Offline"])
    empty = tmp_path / "TEST01"
    empty.mkdir()
    (empty / "notes.txt").write_text("ran TEST01 somewhere else\n")
    result = _loose(run, tmp_path / "tree", empty)
    said = " ".join(result.output.split())
    assert result.exit_code not in (0, 70) and "import.compliance_empty" in said, said
    assert not (tmp_path / "tree" / RESULT).exists()


def test_write_compliance_refuses_a_folder_without_a_verdict_or_a_run(tmp_path):
    src = tmp_path / "TEST06"
    (src / "performance").mkdir(parents=True)  # no run_1/ inside: nothing to copy
    with pytest.raises(SubtoolError) as err:
        _write_compliance("TEST06", src, tmp_path / "tree" / "TEST06", tmp_path / "full.json", kept=[], outside=[])
    assert err.value.rule == "import.compliance_empty" and Path(err.value.path) == src
    assert not (tmp_path / "tree").exists()
