"""The LoadGen reader's edges that a wrong verdict hides behind: a value LoadGen could not have written (a number
past any float, an unquoted word, a raw control character), an error entry cut in half, a test mode and a LoadGen
version as the rules read them, a link or a FIFO where a log should be, a summary that is too large, headless, cut
short or repeats a label, and an accuracy log whose entries are not whole numbers ≥ 0."""

from __future__ import annotations

import json
import math
import os

import pytest

from subtool.mlperf.json_strict import Unreadable
from subtool.mlperf.logs import (
    MARKER,
    SUMMARY_LIMIT_BYTES,
    NonFinite,
    NotALog,
    TooLarge,
    describe_os_error,
    latency_percentiles,
    read_accuracy_log,
    read_bounded,
    read_file,
    read_loadgen_log,
    read_summary,
    read_text_lines,
)


def _entry(key: str, value_json: str, *, error: bool = False) -> bytes:
    """One detail-log line with `value_json` written as is (so that it may be what json.dumps never writes)."""
    meta = json.dumps({"is_error": error, "is_warning": False, "file": "x.cc", "line_no": 1, "pid": 1, "tid": 1})
    return (
        MARKER
        + f'{{"key": "{key}", "value": {value_json}, "time_ms": 1.5, "namespace": "mlperf::logging", '
        f'"event_type": "POINT_IN_TIME", "metadata": {meta}}}'.encode()
    )


def _detail(tmp_path, *lines: bytes):
    path = tmp_path / "mlperf_log_detail.txt"
    path.write_bytes(b"\n".join((_entry("loadgen_version", '"6.0.17 @ 1a2b3c"'), *lines)) + b"\n")
    return path


# ------------------------------------------------------------------------------------------------ detail log
@pytest.mark.parametrize(
    "value",
    ["1e999", "-1e999", "1" + "0" * 400, "9" * 309, "-" + "9" * 309, "2e308"],
    ids=["1e999", "-1e999", "400-digits", "309-nines", "-309-nines", "2e308"],
)
def test_a_number_past_any_float_is_not_finite_not_a_value(tmp_path, value):
    log = read_loadgen_log(_detail(tmp_path, _entry("result_samples_per_second", value)))
    assert log["result_samples_per_second"] is None
    assert log.non_finite == ["result_samples_per_second"] and log.readable


@pytest.mark.parametrize("value", ["VALID", '"VAL\x01ID"', "'VALID'", "1.", "+1", "0x10"])
def test_a_value_that_is_not_json_is_a_problem_not_a_missing_key(tmp_path, value):
    log = read_loadgen_log(_detail(tmp_path, _entry("result_validity", value)))
    assert log["result_validity"] is None and log.has("result_validity")
    assert log.problems == ["the result_validity entry is not valid JSON"] and not log.non_finite


def test_an_entry_that_names_its_value_twice_is_a_problem(tmp_path):
    """json.loads keeps the last of two "value"s, the first was once read: the checker and the official one saw
    different numbers (a one-second run passed as ten minutes). LoadGen writes each name once."""
    line = _entry("effective_min_duration_ms", "600000").replace(b', "namespace"', b', "value": 1000, "namespace"')
    log = read_loadgen_log(_detail(tmp_path, line))
    assert log.problems == [
        "line 2 (effective_min_duration_ms) repeats the name 'value' in one entry (LoadGen writes each once)"
    ]
    assert not log.readable


@pytest.mark.parametrize("prefix", [b"note ", b" ", b"\t"])
def test_a_line_that_does_not_start_with_the_marker_is_no_entry(tmp_path, prefix):
    """As for the official reader: only a line that starts with ':::MLLOG' is an entry."""
    log = read_loadgen_log(
        _detail(
            tmp_path,
            prefix + _entry("effective_min_duration_ms", "600000"),  # first, where the first occurrence wins
            _entry("effective_min_duration_ms", "1000"),
        )
    )
    assert log["effective_min_duration_ms"] == 1000


def test_an_entry_after_a_lone_carriage_return_is_an_entry_as_for_the_official_reader(tmp_path):
    """Python's text mode (the official reader's) ends a line at a lone \\r too."""
    line = b"x\r" + _entry("effective_min_duration_ms", "1000")
    log = read_loadgen_log(_detail(tmp_path, line))
    assert log["effective_min_duration_ms"] == 1000


def test_a_kept_entry_with_garbage_after_its_time_is_a_problem(tmp_path):
    line = _entry("result_validity", '"VALID"')[:-1] + b", }"  # no longer one JSON object
    log = read_loadgen_log(_detail(tmp_path, line))
    assert log.problems == ["line 2 (result_validity) is not valid JSON"] and log["result_validity"] == "VALID"


def test_an_integer_with_a_leading_zero_is_not_json(tmp_path):
    """JSON, and so the official checker's json.loads, refuses 0123: the reader's fast path for digits must too."""
    log = read_loadgen_log(_detail(tmp_path, _entry("result_samples_per_second", "0123")))
    assert log["result_samples_per_second"] is None and not log.readable


def test_an_error_entry_cut_in_half_is_a_problem_not_silence(tmp_path):
    broken = _entry("error_runtime", '"SUT returned bad data"', error=True)[:-30]  # its metadata lost its end
    log = read_loadgen_log(_detail(tmp_path, broken, _entry("result_validity", '"VALID"')))
    assert not log.errors
    assert len(log.problems) == 1 and log.problems[0].startswith("line 2 ") and "not valid JSON" in log.problems[0]


def test_only_an_entry_whose_metadata_says_error_is_an_error(tmp_path):
    # the marker text inside the value of an entry that is not an error: no LoadGen error
    lookalike = _entry("sut_name", '{"is_error": true}', error=False)
    real = _entry("error_invalid_config", '"Multiple conf files are used."', error=True)
    assert read_loadgen_log(_detail(tmp_path, lookalike), keys=None).errors == []
    assert read_loadgen_log(_detail(tmp_path, lookalike, real)).errors == ["Multiple conf files are used."]


@pytest.mark.parametrize(
    "raw, mode",
    [
        ("PerformanceOnly", "performance"),
        ("AccuracyOnly", "accuracy"),
        ("SubmissionRun", "submission"),
        ("FindPeakPerformance", "find_peak"),
        ("SomethingNew", "SomethingNew"),
    ],
)
def test_each_loadgen_test_mode_has_its_own_name(tmp_path, raw, mode):
    log = read_loadgen_log(_detail(tmp_path, _entry("effective_test_mode", json.dumps(raw))))
    assert log.mode == mode


def test_the_loadgen_version_is_its_first_word_and_a_scenario_must_be_text(tmp_path):
    log = read_loadgen_log(_detail(tmp_path, _entry("effective_scenario", "3")))
    assert log.loadgen_version == "6.0.17"
    assert log["effective_scenario"] == 3 and log.scenario is None
    assert log.mode is None  # no effective_test_mode line at all


def test_a_symbolic_link_is_refused_unless_the_caller_follows_it(tmp_path):
    real = _detail(tmp_path, _entry("result_validity", '"VALID"'))
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    refused = read_loadgen_log(link)
    assert refused["result_validity"] is None and "symbolic link" in refused.problems[0]
    assert read_loadgen_log(link, follow_links=True)["result_validity"] == "VALID"


def test_a_fifo_is_refused_unread(tmp_path):
    fifo = tmp_path / "mlperf_log_detail.txt"
    os.mkfifo(fifo)
    problem = read_loadgen_log(fifo).problems[0]
    assert problem == "cannot be read (not a regular file)"
    with pytest.raises(OSError):
        read_file(fifo)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_a_file_longer_than_its_stated_size_is_read_whole():
    # /proc files say they are 0 bytes long: the reader must not stop at that size
    data = read_file("/proc/self/status")
    assert data.startswith(b"Name:") and b"\nPid:" in data


def test_text_lines_past_the_limit_are_a_problem_not_a_cut(tmp_path):
    # cut at the limit, the verdict line past it was silently missing; now the file is refused, unread
    path = tmp_path / "accuracy.txt"
    path.write_text("0123456789\n" * 3)
    lines, problem = read_text_lines(path, limit_bytes=15)
    assert lines is None and isinstance(problem, Unreadable) and "larger than" in problem
    path.write_text("0123456789\n")
    assert read_text_lines(path, limit_bytes=15) == (["0123456789\n"], None)


def test_read_bounded_takes_a_file_of_exactly_its_bound_and_refuses_one_byte_more(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 2048)
    assert read_bounded(path, 2048) == b"x" * 2048
    path.write_bytes(b"x" * 2049)
    with pytest.raises(TooLarge) as err:
        read_bounded(path, 2048)
    assert describe_os_error(err.value) == "is larger than 2 kB" and isinstance(
        describe_os_error(err.value), Unreadable
    )


# --------------------------------------------------------------------------------------------------- summary
HEAD = "=" * 48 + "\nMLPerf Results Summary\n" + "=" * 48 + "\n"
END = "No errors encountered during test.\n"


def _summary(tmp_path, text: str):
    path = tmp_path / "mlperf_log_summary.txt"
    path.write_text(text)
    return read_summary(path)


def test_a_summary_over_the_size_limit_is_refused(tmp_path):
    padding = "Note : " + "x" * 100 + "\n"
    text = HEAD + "Samples per second : 10\n" + padding * (SUMMARY_LIMIT_BYTES // len(padding) + 10) + END
    summary = _summary(tmp_path, text)
    assert summary.problem and "is larger than" in summary.problem


def test_a_summary_without_loadgen_heading_is_refused(tmp_path):
    summary = _summary(tmp_path, "Samples per second : 10\n" + END)
    assert summary.problem == "is not a LoadGen summary (no 'MLPerf Results Summary' heading)"
    assert _summary(tmp_path, "\n  \n").problem == "is empty"


def test_a_summary_cut_short_is_refused(tmp_path):
    summary = _summary(tmp_path, HEAD + "Scenario : Offline\nSamples per second : 10\n")
    assert summary.problem and "cut short" in summary.problem
    assert _summary(tmp_path, HEAD + "Samples per second : 10\n" + END).problem is None


def test_a_repeated_summary_label_keeps_its_first_value(tmp_path):
    text = HEAD + "Samples per second : 10\nSamples per second : 99\n  * Result is : VALID\n" + END
    summary = _summary(tmp_path, text)
    assert summary.number("Samples per second") == (10.0, None)
    assert summary.values["Samples per second"] == "10" and summary.values["Result is"] == "VALID"
    again = _summary(tmp_path, text)
    assert again.values["Samples per second"] == "10" and again.value("Samples per second") == "10"


@pytest.mark.parametrize("text", ["1e999", "-1e400"])
def test_a_summary_number_past_any_float_is_not_finite(tmp_path, text):
    summary = _summary(tmp_path, HEAD + f"Samples per second : {text}\n" + END)
    value, problem = summary.number("Samples per second")
    assert value is None and isinstance(problem, NonFinite)


@pytest.mark.parametrize("text, non_finite", [("NaN", True), ("-inf", True), ("fast", False), ("", False)])
def test_a_summary_word_is_not_a_number_and_nan_is_not_finite(tmp_path, text, non_finite):
    summary = _summary(tmp_path, HEAD + f"Samples per second : {text}\n" + END)
    value, problem = summary.number("Samples per second")
    assert value is None and problem and isinstance(problem, NonFinite) == non_finite


# ---------------------------------------------------------------------------------------------- accuracy log
@pytest.mark.parametrize("idx", ["-1", "true", "1.0", '"3"', "null"])
def test_an_accuracy_entry_whose_index_is_not_a_whole_number_spoils_the_log(tmp_path, idx):
    path = tmp_path / "mlperf_log_accuracy.json"
    path.write_text(f'[{{"seq_id": 0, "qsl_idx": 0, "data": "00"}}, {{"seq_id": 1, "qsl_idx": {idx}, "data": "01"}}]')
    log = read_accuracy_log(path)
    assert log.entries == [] and log.problem == "entry 2 has no qsl_idx (a whole number) and data (hex text)"


@pytest.mark.parametrize("text, words", [("", "is empty"), ("{}", "must hold a JSON list"), ("[NaN]", "finite")])
def test_an_empty_or_foreign_accuracy_log_is_a_problem(tmp_path, text, words):
    path = tmp_path / "mlperf_log_accuracy.json"
    path.write_text(text)
    log = read_accuracy_log(path)
    assert log.entries == [] and words in log.problem
    assert isinstance(log.problem, (NotALog, NonFinite))


# ---------------------------------------------------------------------------------------------- percentiles
def test_latency_percentiles_are_milliseconds_of_finite_non_negative_numbers():
    values = {
        "result_50.00_percentile_latency_ns": 2_500_000,
        "result_99.90_percentile_latency_ns": 7_000_000,
        "result_90.00_percentile_latency_ns": -5,  # a lying log: left out
        "result_99.00_percentile_latency_ns": True,  # not a number: left out
        "result_first_token_99.00_percentile_latency_ns": math.inf,
    }
    assert latency_percentiles(values) == {"latency_ms": {"p50": 2.5, "p99.9": 7.0}}


def test_a_detail_log_over_the_limit_is_a_problem_and_is_not_read_whole(tmp_path, monkeypatch):
    """Read whole, a lying 4 GiB detail log ran check out of memory; over the limit it is a problem."""
    from subtool.mlperf import logs

    path = _detail(tmp_path, _entry("result_validity", '"VALID"'))
    monkeypatch.setattr(logs, "DETAIL_LIMIT_BYTES", path.stat().st_size - 1)
    log = read_loadgen_log(path)
    assert not log.readable and log.problems[0] == f"is larger than {path.stat().st_size - 1} bytes" and not log.raw
    monkeypatch.setattr(logs, "DETAIL_LIMIT_BYTES", path.stat().st_size)
    assert read_loadgen_log(path)["result_validity"] == "VALID"


# ----------------------------------------------------------------------- every line as the official reader takes it
def test_a_damaged_line_anywhere_is_a_problem_not_only_the_last(tmp_path):
    """The official reader stops on any ':::MLLOG' line that is not a JSON object with a key; only the last line
    and the kept keys' lines were looked at, so a damaged line 2 of a key no rule reads passed."""
    for damaged in (b':::MLLOG {"key": "foo", "value": 1', b":::MLLOG {bad}", b':::MLLOG {"value": 1}', b":::MLLOG"):
        log = read_loadgen_log(_detail(tmp_path, damaged, _entry("result_validity", '"VALID"')))
        assert [p for p in log.problems if p.startswith("line 2 ")], (damaged, log.problems)


def test_an_entry_without_metadata_is_a_problem_and_any_true_is_error_an_error(tmp_path):
    bare = b':::MLLOG {"key": "generic_message", "value": "x", "time_ms": 1.5}'
    log = read_loadgen_log(_detail(tmp_path, bare, _entry("result_validity", '"VALID"')))
    assert log.problems == ["line 2 (generic_message) has no metadata.is_error, which LoadGen always writes"]
    one = _entry("error_runtime", '"bad"').replace(b'"is_error": false', b'"is_error": 1')
    assert read_loadgen_log(_detail(tmp_path, one)).errors == ["bad"]


def test_a_last_line_that_is_not_loadgens_is_passed_over_as_the_official_reader_does(tmp_path):
    # it was called "cut short"; a last line cut inside the marker still is
    log = read_loadgen_log(_detail(tmp_path, _entry("result_validity", '"VALID"'), b"hello world"))
    assert log.problems == [] and log["result_validity"] == "VALID"
    log = read_loadgen_log(_detail(tmp_path, _entry("result_validity", '"VALID"'), b":::MLL"))
    assert log.problems and "cut short" in log.problems[0]


def test_lines_end_at_cr_and_crlf_as_in_text_mode(tmp_path):
    path = _detail(tmp_path, _entry("result_validity", '"VALID"'))
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    log = read_loadgen_log(path)
    assert log.problems == [] and log["result_validity"] == "VALID"
