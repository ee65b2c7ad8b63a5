"""What an interrupted run keeps and what the next run reuses, at the edges: a kept run of other settings or of
another schema is never reused, only the modes asked for are, a reused performance run brings its sized
user.conf and settings, and a run that stops again keeps what it had reused (runner/interrupted.py)."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
from kept_runs import detail_log, write_mode

from subtool.runner import interrupted
from subtool.runner.interrupted import KEPT_NAME, PROGRESS_NAME, Kept
from subtool.runner.session import SessionSpec

SIZED = {"target_qps": 123.0, "min_duration": 1000}
SIZING = {"probe": None, "tries": [{"validity": "VALID"}]}


@pytest.fixture
def setup(tmp_path):
    """(session, stage, kept folder, data set, checkpoint): a stage with subtool's user.conf, inputs apart."""
    model, data, stage = tmp_path / "model", tmp_path / "dev.json", tmp_path / "stage"
    for folder in (model, stage):
        folder.mkdir()
    (model / "model.safetensors").write_bytes(b"w" * 10)
    data.write_text("{}")
    (stage / "user.conf").write_text("*.Offline.target_qps = 10\n")
    spec = SessionSpec(
        "bert-99", "Offline", ["performance", "accuracy"], str(model), str(data), "u", str(stage), "c", "r"
    )
    where = interrupted.kept_dir(tmp_path / "runs" / "bert-99" / "Offline")
    where.parent.mkdir(parents=True)
    return spec, stage, where, data, model


def test_the_fingerprint_changes_with_the_options_the_user_conf_the_data_and_the_checkpoint_files(setup):
    spec, stage, _where, data, model = setup

    def mark(**changes):
        return interrupted.fingerprint(dataclasses.replace(spec, **changes), stage, data, model)

    base = mark()
    assert mark(stage="elsewhere", modes=["accuracy"], quiet=True) == base  # where it writes, what it runs now
    assert mark(cache_dir="/scratch/cache") == base  # what is cached there is keyed by what it was made from
    assert mark(batch_size=7) != base
    (stage / "user.conf").write_text("*.Offline.target_qps = 11\n")
    assert mark() != base
    (stage / "user.conf").write_text("*.Offline.target_qps = 10\n")
    assert mark() == base
    os.utime(model / "model.safetensors", ns=(1, 1))  # weights swapped in place: same path, another file
    assert mark() != base


def _finish(stage, modes, started="t0", settings=None, sizing=None):
    """The stage as a session leaves it when it stops after `modes`: their folders and its progress note."""
    for mode in modes:
        write_mode(stage, mode)
    entry = {"result": 1.0, "result_field": "result_samples_per_second"}
    progress = {"started": started, "modes": {m: {"dir": m, **entry} for m in modes}}
    if settings is not None:
        progress.update(settings=settings, sizing=sizing)
    (stage / PROGRESS_NAME).write_text(json.dumps(progress))


def _kept_performance(spec, stage, where, data, model):
    """An interrupted run that finished its (sized) performance run: kept in `where`; its fingerprint."""
    mark = interrupted.fingerprint(spec, stage, data, model)
    (stage / "user.conf").write_text("*.Offline.target_qps = 123\n")  # as the short run sized it
    _finish(stage, ["performance"], settings=SIZED, sizing=SIZING)
    assert interrupted.keep(stage, where, mark, Kept()) == ["performance"]
    return mark


def test_a_kept_run_of_other_settings_is_not_reused(setup, tmp_path):
    spec, stage, where, data, model = setup
    _kept_performance(spec, stage, where, data, model)
    fresh = tmp_path / "stage2"
    fresh.mkdir()
    said = []
    kept = interrupted.reuse(where, "another fingerprint", fresh, ["performance", "accuracy"], said.append)
    assert kept.modes == {} and kept.settings is None
    assert not (fresh / "performance").exists()
    assert any("other settings: not reused" in line for line in said)


def test_a_kept_record_of_another_schema_is_not_reused(setup, tmp_path):
    spec, stage, where, data, model = setup
    mark = _kept_performance(spec, stage, where, data, model)
    record = json.loads((where / KEPT_NAME).read_text())
    (where / KEPT_NAME).write_text(json.dumps({**record, "schema": "subtool.interrupted/0"}))
    fresh = tmp_path / "stage2"
    fresh.mkdir()
    assert interrupted.reuse(where, mark, fresh, ["performance"], lambda *a: None).modes == {}
    assert not (fresh / "performance").exists()


def test_an_oversized_kept_record_is_not_read(setup, tmp_path):
    spec, stage, where, data, model = setup
    mark = _kept_performance(spec, stage, where, data, model)
    record = (where / KEPT_NAME).read_text()
    (where / KEPT_NAME).write_text(" " * (17 << 20) + record)
    fresh = tmp_path / "stage2"
    fresh.mkdir()
    assert interrupted.reuse(where, mark, fresh, ["performance"], lambda *a: None).modes == {}


def test_only_the_modes_asked_for_are_reused_and_settings_only_with_the_performance_run(setup, tmp_path):
    spec, stage, where, data, model = setup
    mark = interrupted.fingerprint(spec, stage, data, model)
    _finish(stage, ["performance", "accuracy"], settings=SIZED, sizing=SIZING)
    assert interrupted.keep(stage, where, mark, Kept()) == ["performance", "accuracy"]

    only_perf = tmp_path / "perf"
    only_perf.mkdir()
    kept = interrupted.reuse(where, mark, only_perf, ["performance"], lambda *a: None)
    assert list(kept.modes) == ["performance"] and kept.settings == SIZED
    assert (only_perf / "performance").is_dir() and not (only_perf / "accuracy").exists()

    only_acc = tmp_path / "acc"
    only_acc.mkdir()
    kept = interrupted.reuse(where, mark, only_acc, ["accuracy"], lambda *a: None)
    assert list(kept.modes) == ["accuracy"] and not (only_acc / "performance").exists()
    assert kept.settings is None  # the performance run that was sized is not this run's


def test_a_reused_performance_run_brings_the_user_conf_it_was_sized_with(setup, tmp_path):
    spec, stage, where, data, model = setup
    mark = _kept_performance(spec, stage, where, data, model)
    fresh = tmp_path / "stage2"
    fresh.mkdir()
    (fresh / "user.conf").write_text("*.Offline.target_qps = 10\n")  # subtool's, before sizing
    kept = interrupted.reuse(where, mark, fresh, ["performance", "accuracy"], lambda *a: None)
    assert list(kept.modes) == ["performance"] and kept.started == "t0"
    assert (fresh / "user.conf").read_text() == "*.Offline.target_qps = 123\n"
    assert (fresh / "performance" / "run_1" / "mlperf_log_detail.txt").read_text() == detail_log("performance")


def test_a_run_that_stops_again_keeps_the_run_it_reused_with_its_settings_and_start(setup, tmp_path):
    """Reused performance, then a crash before the accuracy run finished: the performance run, its sized settings
    and the first session's start stay kept, for the next try."""
    spec, stage, where, data, model = setup
    mark = _kept_performance(spec, stage, where, data, model)
    second = tmp_path / "stage2"
    second.mkdir()
    (second / "user.conf").write_text("*.Offline.target_qps = 10\n")
    kept = interrupted.reuse(where, mark, second, ["performance", "accuracy"], lambda *a: None)
    (second / PROGRESS_NAME).write_text(json.dumps({"started": "t1", "modes": {}}))  # nothing new finished
    assert interrupted.keep(second, where, mark, kept) == ["performance"]
    record = json.loads((where / KEPT_NAME).read_text())
    assert list(record["modes"]) == ["performance"] and record["fingerprint"] == mark
    assert record["started"] == "t0" and record["settings"] == SIZED and record["sizing"] == SIZING
    assert (where / "performance" / "run_1" / "mlperf_log_detail.txt").read_text() == detail_log("performance")

    # and once the accuracy run finished too (a crash after it): both kept, the settings still the first run's
    third = tmp_path / "stage3"
    third.mkdir()
    (third / "user.conf").write_text("*.Offline.target_qps = 10\n")
    kept = interrupted.reuse(where, mark, third, ["performance", "accuracy"], lambda *a: None)
    _finish(third, ["accuracy"], started="t2")
    assert sorted(interrupted.keep(third, where, mark, kept)) == ["accuracy", "performance"]
    record = json.loads((where / KEPT_NAME).read_text())
    assert record["started"] == "t0" and record["settings"] == SIZED and record["sizing"] == SIZING


def test_a_mode_noted_finished_without_its_folder_is_not_kept(setup):
    spec, stage, where, data, model = setup
    mark = interrupted.fingerprint(spec, stage, data, model)
    _finish(stage, ["performance"])
    progress = json.loads((stage / PROGRESS_NAME).read_text())
    progress["modes"]["accuracy"] = {"dir": "accuracy"}  # noted, but its folder never written
    (stage / PROGRESS_NAME).write_text(json.dumps(progress))
    assert interrupted.keep(stage, where, mark, Kept()) == ["performance"]
    assert list(json.loads((where / KEPT_NAME).read_text())["modes"]) == ["performance"]


def test_keeping_again_replaces_the_earlier_kept_runs(setup, tmp_path):
    spec, stage, where, data, model = setup
    _kept_performance(spec, stage, where, data, model)
    other = tmp_path / "stage2"
    other.mkdir()
    (other / "user.conf").write_text("*.Offline.target_qps = 10\n")
    _finish(other, ["accuracy"])
    assert interrupted.keep(other, where, "another", Kept()) == ["accuracy"]
    assert not (where / "performance").exists() and (where / "accuracy").is_dir()
    assert json.loads((where / KEPT_NAME).read_text())["fingerprint"] == "another"


def test_the_merged_outcome_is_one_session_from_the_first_start_with_the_reused_settings():
    kept = Kept({"performance": {"result": 1.0}}, started="t0", settings=SIZED, sizing=SIZING)
    outcome = {"modes": {"accuracy": {"f1": 90.0}}, "tstamps": ["t5", "t6"], "settings": {"target_qps": 10.0}}
    out = interrupted.merged(outcome, kept)
    assert out["modes"] == {"performance": {"result": 1.0}, "accuracy": {"f1": 90.0}}
    assert out["tstamps"] == ["t0", "t6"]
    assert out["settings"] == SIZED and out["sizing"] == SIZING
    # an accuracy run reused, the performance run new: this session's settings stand
    acc = Kept({"accuracy": {"f1": 90.0}}, started="t0")
    out = interrupted.merged({"modes": {"performance": {"result": 2.0}}, "settings": {"x": 1}}, acc)
    assert out["settings"] == {"x": 1} and set(out["modes"]) == {"performance", "accuracy"}


def test_the_fingerprint_changes_with_the_data_set_and_subtools_version(setup, monkeypatch):
    import os

    spec, stage, where, data, model = setup
    base = interrupted.fingerprint(spec, stage, data, model)
    for option, value in (("precision", "bf16"), ("backend", "torch-cuda"), ("threads", 3)):
        assert interrupted.fingerprint(dataclasses.replace(spec, **{option: value}), stage, data, model) != base
    os.utime(data, ns=(1, 1))  # the data set replaced in place
    changed = interrupted.fingerprint(spec, stage, data, model)
    assert changed != base
    monkeypatch.setattr(interrupted, "__version__", "0.0.0-other")
    assert interrupted.fingerprint(spec, stage, data, model) != changed


def _as_performance(where) -> None:
    """An accuracy log where the kept performance run's is."""
    logs = where / "performance" / "run_1" / "mlperf_log_detail.txt"
    logs.write_text(detail_log("accuracy"))


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (
            lambda where: (where / "performance" / "run_1" / "mlperf_log_detail.txt").unlink(),
            "detail log that is missing",
        ),
        (lambda where: write_mode(where, "performance", result=999999.0), "says its result is 1.0, its log 999999.0"),
        (_as_performance, "holds a accuracy log"),
    ],
    ids=["log-gone", "result-edited", "another-mode"],
)
def test_a_kept_run_damaged_since_is_not_reused_and_said(setup, tmp_path, damage, said):
    """A kept folder whose log was deleted made every rerun fail the same way; one whose result was edited was
    reported as the run's."""
    spec, stage, where, data, model = setup
    mark = _kept_performance(spec, stage, where, data, model)
    damage(where)
    fresh = tmp_path / "stage2"
    fresh.mkdir()
    heard: list[str] = []
    kept = interrupted.reuse(where, mark, fresh, ["performance", "accuracy"], heard.append)
    assert kept.modes == {} and not (fresh / "performance").exists()
    assert any("kept performance run" in line and said in line and "runs again" in line for line in heard), heard
