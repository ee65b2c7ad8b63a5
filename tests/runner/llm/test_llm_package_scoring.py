"""`subtool package` scores an LLM harness's accuracy log that came without accuracy.txt, with the checkpoint's
tokenizer and the data set: the same line as subtool's own run; a log holding an id past the model's vocabulary
is refused with one line naming the log, and nothing is written."""

from __future__ import annotations

import json
import shutil

import numpy as np
from typer.testing import CliRunner

from subtool.cli import app

runner = CliRunner()


def _harness_logs(tmp_path, run_dir):
    perf, acc = tmp_path / "harness" / "perf", tmp_path / "harness" / "acc"
    shutil.copytree(run_dir / "performance" / "run_1", perf)
    shutil.copytree(run_dir / "accuracy", acc)
    (acc / "accuracy.txt").unlink()  # a harness that never scored its accuracy run
    return perf, acc


def _package(perf, acc, out, assets):
    args = ["package", "--perf", perf, "--acc", acc, "--model", "llama3.1-8b", "--scenario", "Offline"]
    args += ["--division", "open", "--submitter", "TeamX", "--system", "box", "--out", out]
    args += ["--model-path", assets.model_path, "--dataset-path", assets.dataset_path]
    return runner.invoke(app, [str(a) for a in args])


def test_an_llm_harness_log_is_scored_as_subtool_scores_its_own(tmp_path, llama3_small, llama3_offline_run):
    perf, acc = _harness_logs(tmp_path, llama3_offline_run)
    res = _package(perf, acc, tmp_path / "tree", llama3_small)
    assert res.exit_code == 0, res.output
    txt = (tmp_path / "tree/open/TeamX/results/box/llama3.1-8b/Offline/accuracy/accuracy.txt").read_text()
    expected = (llama3_offline_run / "accuracy" / "accuracy.txt").read_text()
    assert txt.splitlines()[0] == expected.splitlines()[0]


def test_an_id_past_the_models_vocabulary_is_refused_before_anything_is_written(
    tmp_path, llama3_small, llama3_offline_run
):
    vocab = json.loads((llama3_small.model_path / "config.json").read_text())["vocab_size"]
    perf, acc = _harness_logs(tmp_path, llama3_offline_run)
    log = acc / "mlperf_log_accuracy.json"
    entries = json.loads(log.read_text())
    ids = np.frombuffer(bytes.fromhex(entries[0]["data"]), dtype=np.int32).copy()
    ids[3] = vocab  # below 2**32 and decodable as nothing by the tokenizer: it used to be scored silently
    entries[0]["data"] = ids.tobytes().hex().upper()
    log.write_text(json.dumps(entries))
    res = _package(perf, acc, tmp_path / "tree", llama3_small)
    assert res.exit_code == 2, res.output
    assert "acc.log_parse" in res.output and str(log) in res.output.replace("\n", "")
    assert f"token id {vocab} is past the model's {vocab}-token vocabulary" in res.output.replace("\n", " ")
    assert not (tmp_path / "tree").exists() or not any((tmp_path / "tree").rglob("*.txt"))
