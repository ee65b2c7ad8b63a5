"""The system description's weight_data_types says what the SUT's weights ran in where the SUT knows better than
the precision's name (bert's fp8 SUT after its per-layer fallback), through `subtool run`'s own path: real LoadGen,
the benchmark's child process, run.json and the measurements it carries."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from subtool.cli import app


def _run(tmp_path, checkpoint, squad, backend):
    args = ["run", "--model-path", str(checkpoint), "--dataset-path", str(squad), "--out", str(tmp_path / "runs")]
    res = CliRunner().invoke(app, [*args, "--backend", backend, "--scenario", "Offline", "--mode", "performance"])
    assert res.exit_code == 0, res.output
    return json.loads((tmp_path / "runs" / "bert-99" / "Offline" / "run.json").read_text())


def test_the_sut_names_its_weights_types_and_the_measurements_carry_them(
    tmp_path, tiny_checkpoint, small_squad, instant_backend
):
    record = _run(tmp_path, tiny_checkpoint, small_squad, "instant-mixed-weights")
    assert record["measurements"]["weight_data_types"] == "fp8, bf16"


def test_a_sut_that_names_none_gets_the_precision(tmp_path, tiny_checkpoint, small_squad, instant_backend):
    record = _run(tmp_path, tiny_checkpoint, small_squad, "instant")
    assert record["measurements"]["weight_data_types"] == record["precision"]
