"""The :::MLLOG reader on real LoadGen logs and on damaged copies of them: values, errors, problems, no raise."""

from __future__ import annotations

import json

import pytest

from subtool.mlperf.logs import read_json_object, read_loadgen_log, read_text_lines


@pytest.fixture()
def perf_log(loadgen_runs, tmp_path):
    src = loadgen_runs["bert-99/Offline"].perf / "mlperf_log_detail.txt"
    dest = tmp_path / "mlperf_log_detail.txt"
    dest.write_bytes(src.read_bytes())
    return dest


def test_reads_the_keys_rules_need_from_a_real_log(perf_log):
    log = read_loadgen_log(perf_log)
    assert log.readable and not log.errors
    assert log["effective_scenario"] == "Offline"
    assert log["result_validity"] == "VALID"
    assert log["effective_qsl_rng_seed"] == 2085463073848966840  # LoadGen 6.0.17 → the v6.1 seeds
    assert log["effective_schedule_rng_seed"] == 16159082839903944936
    assert log["effective_performance_sample_count"] == 10833
    assert isinstance(log["result_samples_per_second"], (int, float)) and log["result_samples_per_second"] > 0
    assert log["no_such_key"] is None and not log.has("no_such_key")


def test_agrees_with_a_plain_json_reading_of_every_line(perf_log):
    plain = {}
    for line in perf_log.read_text().splitlines():
        entry = json.loads(line[len(":::MLLOG ") :])
        plain.setdefault(entry["key"], entry["value"])
    log = read_loadgen_log(perf_log)
    decoded = log.decode_all()
    assert decoded and all(decoded[k] == plain[k] for k in decoded)


def test_error_entries_are_collected(perf_log):
    entry = {
        "key": "error_invalid_config",
        "value": "Multiple conf files are used.",
        "time_ms": 1.0,
        "namespace": "mlperf::logging",
        "event_type": "POINT_IN_TIME",
        "metadata": {"is_error": True, "is_warning": False, "file": "x", "line_no": 1, "pid": 1, "tid": 1},
    }
    with perf_log.open("a") as fh:
        fh.write(":::MLLOG " + json.dumps(entry) + "\n")
    log = read_loadgen_log(perf_log)
    assert log.errors == ["Multiple conf files are used."]


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda b: b"", "is empty"),
        (lambda b: b"hello world\n" + b, "not a LoadGen detail log"),
        (lambda b: b[: len(b) // 2], "cut short"),
        (lambda b: b[:300] + b"\xff\xfe\x81garbage\xc3\x28" + b[300:], "not UTF-8"),
        (lambda b: bytes(range(256)) * 40, "not a LoadGen detail log"),
    ],
)
def test_damage_becomes_a_problem_never_an_exception(perf_log, damage, words):
    perf_log.write_bytes(damage(perf_log.read_bytes()))
    log = read_loadgen_log(perf_log)
    assert not log.readable
    assert any(words in p for p in log.problems), log.problems


def test_missing_and_directory_paths(tmp_path):
    assert "cannot be read" in read_loadgen_log(tmp_path / "nope.txt").problems[0]
    assert "cannot be read" in read_loadgen_log(tmp_path).problems[0]


def test_json_and_text_helpers(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("[1, 2]")
    assert read_json_object(p)[1].startswith("must hold a JSON object")
    p.write_text("{bad")
    assert "not valid JSON" in read_json_object(p)[1]
    p.write_bytes(b"\xff\xfe")
    assert read_json_object(p)[1] == "is not UTF-8 text"
    assert read_json_object(tmp_path / "none.json") == (None, "is missing")
    p.write_bytes(b"\x00\xff binary")
    assert read_text_lines(p)[0] is None
