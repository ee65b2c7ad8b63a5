"""`subtool package` on another harness's logs computes a missing accuracy.txt with subtool's bert scoring."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from subtool.cli import app

runner = CliRunner()


def test_loose_logs_without_accuracy_txt_are_scored(tmp_path, bert_demo_all, subtool_cache):
    # The logs of the session's bert demo run (`subtool all`, tests/support/submission_fixtures.py), scored again
    # from its checkpoint and data set: the harness here is subtool's own run with its accuracy.txt taken away.
    from subtool.runner.bert.demo import demo_assets

    assets = demo_assets(subtool_cache)
    model_path, dataset_path = str(assets.model_path), str(assets.dataset_path)
    run_dir = bert_demo_all[0] / "runs" / "bert-99" / "Offline"
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

    scored = runner.invoke(app, [*common, "--model-path", model_path, "--dataset-path", dataset_path])
    assert scored.exit_code == 0, scored.output
    txt = (tmp_path / "tree/open/TeamX/results/box/bert-99/Offline/accuracy/accuracy.txt").read_text()
    assert txt.splitlines()[0] == expected.strip()
    assert any(line.startswith("hash=") for line in txt.splitlines())
    assert json.loads(txt.splitlines()[0]).keys() == {"exact_match", "f1"}
