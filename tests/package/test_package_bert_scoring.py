"""`subtool package` on another harness's logs computes a missing accuracy.txt with subtool's bert scoring."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from subtool.cli import app

runner = CliRunner()


def test_loose_logs_without_accuracy_txt_are_scored(tmp_path, tiny_checkpoint, small_squad):
    res = runner.invoke(
        app,
        [
            "run",
            "--model-path",
            str(tiny_checkpoint),
            "--dataset-path",
            str(small_squad),
            "--out",
            str(tmp_path / "runs"),
        ],
    )
    assert res.exit_code == 0, res.output
    run_dir = tmp_path / "runs" / "bert-99" / "Offline"
    expected = (run_dir / "accuracy" / "accuracy.txt").read_text()
    perf, acc = tmp_path / "harness" / "perf", tmp_path / "harness" / "acc"
    shutil.copytree(run_dir / "performance" / "run_1", perf)
    shutil.copytree(run_dir / "accuracy", acc)
    (acc / "accuracy.txt").unlink()  # a harness that never scored its accuracy run
    common = [
        "package",
        "--perf",
        str(perf),
        "--acc",
        str(acc),
        "--model",
        "bert-99",
        "--scenario",
        "Offline",
        "--division",
        "open",
        "--submitter",
        "TeamX",
        "--system",
        "box",
        "--out",
        str(tmp_path / "tree"),
    ]

    without = runner.invoke(app, common)
    assert without.exit_code == 2 and "accuracy.txt" in without.output and "import.accuracy_missing" in without.output
    assert not (tmp_path / "tree" / "open").exists()

    scored = runner.invoke(app, [*common, "--model-path", str(tiny_checkpoint), "--dataset-path", str(small_squad)])
    assert scored.exit_code == 0, scored.output
    txt = (tmp_path / "tree/open/TeamX/results/box/bert-99/Offline/accuracy/accuracy.txt").read_text()
    assert txt.splitlines()[0] == expected.strip()
    assert any(line.startswith("hash=") for line in txt.splitlines())
    assert json.loads(txt.splitlines()[0]).keys() == {"exact_match", "f1"}
