"""run.json has one writer and one reader (subtool/mlperf/run_record.py): the record round-trips, and no bytes a
run.json can hold make a reader raise anything but one SubtoolError that names the file, in every stage that
reads it (package, pack, the pipeline) or a quiet skip where it only looks (the round choice)."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subtool.errors import SubtoolError
from subtool.mlperf.run_record import (
    MAX_BYTES,
    NOT_VERIFIED,
    RUN_SCHEMA,
    date_u,
    load_run_record,
    parse_date_u,
    read_run_record,
    run_assets,
    schema_problems,
    write_run_record,
)

RECORD = {
    "schema": RUN_SCHEMA,
    "subtool_version": "0.1.0",
    "model": "gptj-99.9",
    "scenario": "Offline",
    "run_style": "short",
    "demo": True,
    "division_hint": "open",
    "backend": "torch-cpu",
    "precision": "fp32",
    "batch_size": None,
    "sut": {"per_worker": [{"node": "n1", "samples": 3}]},
    "model_path": None,
    "dataset_path": None,
    "dataset_sha256": "ab" * 32,
    "samples": 24,
    "data": "24 articles",
    "versions": {"subtool": "0.1.0", "loadgen": "6.0.17"},
    "settings": {"target_qps": 1000},
    "tstamps": ["Thu Nov 26 01:52:06 UTC 2026", "Thu Nov 26 01:55:10 UTC 2026"],
    "command": ["subtool", "run", "--model", "gptj-99.9"],
    "env": {"OMP_NUM_THREADS": "2"},
    "modes": {
        "performance": {"dir": "performance/run_1", "result": 12.5, "result_validity": "VALID"},
        "accuracy": {"dir": "accuracy", "metrics": {"rouge1": 1.5}},
    },
    "compliance": {"TEST06": {"dir": "TEST06", "passed": True}},
    "measurements": {"weight_data_types": "fp32"},
    "seeds": None,
    "sizing": None,
    "waives": ["600 s minimum duration (perf.min_duration)"],
    "assets": [],
}


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "run.json"
    path.write_bytes(data)
    return path


def test_the_record_round_trips_and_non_finite_numbers_are_written_as_null(tmp_path):
    record = json.loads(json.dumps(RECORD))
    record["modes"]["performance"]["result"] = math.nan
    record["sut"]["per_worker"][0]["samples"] = math.inf
    assert write_run_record(tmp_path, record) == []
    path = tmp_path / "run.json"
    back = read_run_record(path, rule="test.rule")
    assert back["modes"]["performance"]["result"] is None and back["sut"]["per_worker"][0]["samples"] is None
    assert {k: v for k, v in back.items() if k not in ("modes", "sut")} == {
        k: v for k, v in RECORD.items() if k not in ("modes", "sut")
    }


def test_a_record_the_schema_refuses_is_kept_with_its_logs_and_every_reader_names_the_field(tmp_path):
    problems = write_run_record(tmp_path, {**RECORD, "modes": {"performance": {"dir": "../../elsewhere"}}})
    assert len(problems) == 1 and problems[0].startswith("modes.performance.dir: ")
    with pytest.raises(SubtoolError) as err:
        read_run_record(tmp_path / "run.json", rule="test.rule")
    assert "modes.performance.dir" in err.value.message


BAD = {
    "empty": b"",
    "blank": b"  \n",
    "cut short": json.dumps(RECORD).encode()[:200],
    "garbage": b"\x00\xff\xfe garbage",
    "not UTF-8": b'{"model": "\xff"}',
    "NaN": b'{"model": "bert-99", "scenario": "Offline", "samples": NaN}',
    "Infinity": b'{"model": "bert-99", "scenario": "Offline", "x": -Infinity}',
    "huge number": b'{"model": "bert-99", "scenario": "Offline", "x": 1e999}',
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "a list": b"[1, 2]",
    "no model": b'{"scenario": "Offline"}',
    "empty model": b'{"model": "", "scenario": "Offline"}',
    "modes a string": b'{"model": "bert-99", "scenario": "Offline", "modes": "performance"}',
    "dir above the run": b'{"model": "bert-99", "scenario": "Offline", "modes": {"accuracy": {"dir": "../x"}}}',
    "absolute dir": b'{"model": "bert-99", "scenario": "Offline", "compliance": {"TEST01": {"dir": "/etc"}}}',
    "command not strings": b'{"model": "bert-99", "scenario": "Offline", "command": ["a", 1]}',
}


@pytest.mark.parametrize("data", list(BAD.values()), ids=list(BAD))
def test_bad_bytes_give_one_error_naming_the_file(tmp_path, data):
    path = _file(tmp_path, data)
    with pytest.raises(SubtoolError) as err:
        read_run_record(path, rule="test.rule")
    assert err.value.rule == "test.rule" and err.value.path == str(path)
    line = err.value.one_line()
    assert "run.json" in line and "\n" not in line and len(line) < 600


def test_missing_large_linked_and_folder_records(tmp_path):
    with pytest.raises(SubtoolError) as err:
        read_run_record(tmp_path / "run.json", rule="test.rule", missing_rule="test.missing")
    assert err.value.rule == "test.missing" and "is missing" in err.value.message
    big = _file(tmp_path, b'{"model": "bert-99", "scenario": "Offline", "pad": "' + b"x" * MAX_BYTES + b'"}')
    record, problem = load_run_record(big)
    assert record is None and "larger than" in problem
    link = tmp_path / "link" / "run.json"
    link.parent.mkdir()
    (tmp_path / "real.json").write_text(json.dumps(RECORD))
    link.symlink_to(tmp_path / "real.json")
    assert load_run_record(link)[0] is None  # a run directory holds plain files
    (tmp_path / "folder" / "run.json").mkdir(parents=True)
    assert load_run_record(tmp_path / "folder" / "run.json")[0] is None


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_any_bytes_read_as_a_valid_record_or_one_error(tmp_path, data):
    path = _file(tmp_path, data)
    try:
        record = read_run_record(path, rule="test.rule")
    except SubtoolError as err:
        assert err.path == str(path) and err.rule == "test.rule"
    else:
        assert isinstance(record, dict) and schema_problems(record) == []


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from(sorted(RECORD)), _JSON, max_size=4))
def test_a_lying_record_is_refused_by_the_schema_or_safe_to_read(tmp_path, changes):
    """Whatever values the fields hold: the reader refuses them, or every reader's use of them is well-typed."""
    path = _file(tmp_path, json.dumps({**RECORD, **changes}).encode())
    try:
        record = read_run_record(path, rule="test.rule")
    except SubtoolError as err:
        assert err.path == str(path) and "run.json" in err.one_line()
        return
    for entry in (*record.get("modes", {}).values(), *(v for v in record.get("compliance", {}).values() if v)):
        assert isinstance(entry, dict)
        assert not Path(str(entry.get("dir", "x"))).is_absolute() and ".." not in Path(str(entry.get("dir", "x"))).parts
    assert all(isinstance(a, str) for a in record.get("command", []))
    assert all(isinstance(t, str) for t in record.get("tstamps", []))
    _assert_well_typed_assets(run_assets(record))


def _assert_well_typed_assets(entries: list) -> None:
    for e in entries:
        assert e["kind"] in ("model", "dataset") and isinstance(e["path"], str) and e["path"]
        assert e.get("sha256") is None or (len(e["sha256"]) == 64 and set(e["sha256"]) <= set("0123456789abcdef"))
        assert e.get("size") is None or (isinstance(e["size"], int) and e["size"] >= 0)
        for key in ("name", "origin", "document", "revision", "note"):
            assert e.get(key) is None or isinstance(e[key], str)


FETCHED = {
    "kind": "dataset",
    "name": "dev-v1.1.json",
    "path": "/cache/assets/bert-99/dataset/dev-v1.1.json",
    "sha256": "3e" * 32,
    "size": 4854279,
    "origin": "official",
    "document": "https://example.org/doc",
    "revision": None,
}


def test_assets_are_optional_and_checked_when_there(tmp_path):
    old = {k: v for k, v in RECORD.items() if k != "assets"}
    assert schema_problems(old) == []  # a record of an older version still reads
    given = {"kind": "model", "path": "ckpt/", "origin": "given", "sha256": None, "note": NOT_VERIFIED}
    assert schema_problems({**RECORD, "assets": [FETCHED, given]}) == []
    for bad, where in (
        ({**FETCHED, "sha256": "3E" * 32}, "assets.0.sha256"),
        ({**FETCHED, "kind": "weights"}, "assets.0.kind"),
        ({**FETCHED, "size": -1}, "assets.0.size"),
        ({k: v for k, v in FETCHED.items() if k != "path"}, "assets.0"),
    ):
        with pytest.raises(SubtoolError, match=where):
            read_run_record(_file(tmp_path, json.dumps({**RECORD, "assets": [bad]}).encode()), rule="test.rule")


def test_run_assets_keeps_the_entries_the_schema_accepts_and_derives_old_records_paths():
    assert run_assets({**RECORD, "assets": [FETCHED, {**FETCHED, "sha256": "x"}, "junk", None]}) == [FETCHED]
    assert run_assets({**RECORD, "assets": "junk"}) == [] and run_assets("junk") == []
    old = {k: v for k, v in RECORD.items() if k != "assets"}
    assert run_assets(old) == []  # a demo: nothing to name
    old.update(demo=False, model_path="/m/bert-large", dataset_path="/d/dev-v1.1.json")
    model, data = run_assets(old)
    assert model == {
        "kind": "model",
        "name": "bert-large",
        "path": "/m/bert-large",
        "origin": "given",
        "note": NOT_VERIFIED,
    }
    assert data["sha256"] == RECORD["dataset_sha256"] and data["name"] == "dev-v1.1.json"


@given(value=_JSON)
def test_run_assets_never_raises_and_returns_well_typed_entries(value):
    for record in ({**RECORD, "assets": value}, {**RECORD, "assets": [value]}, value):
        _assert_well_typed_assets(run_assets(record))


def test_date_u_is_the_c_locale_date_line_and_parses_back():
    moment = datetime(2026, 11, 6, 1, 2, 3, tzinfo=timezone.utc)
    assert date_u(moment) == "Fri Nov  6 01:02:03 UTC 2026"
    assert date_u(moment.timestamp()) == "Fri Nov  6 01:02:03 UTC 2026"
    assert parse_date_u(date_u(moment)) == moment
    assert parse_date_u("yesterday") is None


# ----------------------------------------------------------------------------------- every reader uses it
@pytest.mark.parametrize("data", [BAD["cut short"], BAD["NaN"], BAD["modes a string"], BAD["dir above the run"]])
def test_every_stage_that_reads_run_json_gives_one_clear_error(tmp_path, data):
    from subtool.mlperf.round_choice import choose_round_for_runs
    from subtool.pack.inputs import read_run_dir
    from subtool.package.importers import import_run_dir
    from subtool.pipeline import _read_run_record

    path = _file(tmp_path, data)
    for read, rule in (
        (import_run_dir, "import.bad_run_json"),
        (read_run_dir, "pack.run_dir"),
        (_read_run_record, "pipeline.no_run"),
    ):
        with pytest.raises(SubtoolError) as err:
            read(tmp_path)
        assert (err.value.rule, err.value.path) == (rule, str(path)), read
    assert choose_round_for_runs([tmp_path], [], None).version  # the round choice only looks: the default
