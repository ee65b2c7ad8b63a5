"""run.json edges: a record that is JSON but not an object is refused by the reader that never raises (so that no
caller meets a list where it expects a dict), and a demo run names no asset even when it records paths."""

from __future__ import annotations

from subtool.mlperf.round_choice import choose_round_for_runs
from subtool.mlperf.run_record import load_run_record, run_assets


def test_a_record_that_is_not_an_object_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for text, kind in (('["gptj-99"]', "list"), ('"gptj-99"', "str"), ("3", "int")):
        (run_dir / "run.json").write_text(text)
        assert load_run_record(run_dir / "run.json") == (None, f"must hold a JSON object, found {kind}")
        assert choose_round_for_runs([run_dir], [], None).version == "v6.1"  # read as no record, not a crash


def test_an_empty_record_says_so(tmp_path):
    for text in ("", " \n"):
        (tmp_path / "run.json").write_text(text)
        assert load_run_record(tmp_path / "run.json") == (None, "is empty")


def test_a_demo_run_names_no_asset():
    record = {"demo": True, "model_path": "/m/bert-large", "dataset_path": "/d/dev-v1.1.json"}
    assert run_assets(record) == []
    assert [a["kind"] for a in run_assets({**record, "demo": False})] == ["model", "dataset"]
