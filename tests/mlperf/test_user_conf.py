"""user.conf read as LoadGen reads it: the lines LoadGen refuses, and the ones it takes without a word and ignores,
are refused by name; a file that sets nothing for the run is refused; the reader never raises on bad bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subtool.errors import SubtoolError
from subtool.mlperf.user_conf import check_user_conf, parse_user_conf


def _check(tmp_path, text: str | bytes, model: str = "bert-99", scenario: str = "Offline"):
    path = tmp_path / "user.conf"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return check_user_conf(path, model, scenario)


def test_settings_for_the_run_are_kept_with_wildcards_and_dotted_model_names(tmp_path):
    text = (
        "# a comment\n\n*.Offline.target_qps = 100\nbert-99.*.min_duration = 0x10\n"
        "bert-99.Server.target_qps = 5\nllama3.1-8b.Offline.min_query_count = 010\n"
    )
    kept = _check(tmp_path, text)
    assert [(s.line, s.name, s.value) for s in kept] == [(3, "target_qps", "100"), (4, "min_duration", "0x10")]
    (llama,) = _check(tmp_path, text, "llama3.1-8b")[1:]
    assert (llama.model, llama.scenario, llama.name) == ("llama3.1-8b", "Offline", "min_query_count")


@pytest.mark.parametrize(
    "line, says",
    [
        ("*.Offline.target_qps=100", "needs spaces around '='"),
        ("*.Offline.target_qps", "a key with no value"),
        ("*.Offline.target_qps = 100 # fast", "value '#' is not a number: LoadGen refuses the file"),
        ("*.Offline.target_qps : 100", "expected 'key = value'"),
        ("#target_qps is 5", "expected 'key = value'"),
        ("*.Offline.target_qsp = 100", "no setting 'target_qsp'; did you mean target_qps?"),
        ("*.Ofline.target_qps = 100", "'Ofline' is no LoadGen scenario"),
        ("Offline.target_qps = 100", "is not model.scenario.setting"),
        ("*.Offline.target_qps = nan", "is not a finite number"),
        ("*.Offline.target_qps = 1e999", "is not a finite number"),
        ("*.Offline.target_qps = -inf", "is not a finite number"),
        ("*.Offline.min_duration = -5", "is negative"),
        ("*.Offline.target_qps = fast", "value 'fast' is not a number"),
        # past what a run can use: 1e15 queries/s crashed LoadGen (std::bad_alloc), 1e18 ms never ends
        ("*.Offline.target_qps = 1e15", "target_qps = 1e15 is past what a run can use (at most 1e+07)"),
        ("*.Offline.min_duration = 1e18", "is past what a run can use"),
        ("*.Server.ttft_latency = 1e20", "is past what a run can use"),
        ("*.Offline.min_query_count = 1e12", "is past what a run can use"),
        # below: 0 ran the machine out of memory (std::bad_alloc), a Server paced at 1e-9 queries/s never ends
        ("*.Server.target_qps = 0", "target_qps = 0 is below what a run can use (at least 0.01)"),
        ("*.Server.target_qps = 0.000000001", "is below what a run can use"),
        ("*.SingleStream.target_latency = 0", "target_latency = 0 is below what a run can use"),
        # LoadGen splits at C's spaces only: with no-break spaces the line was one key, ignored (target_qps 1)
        ("*.Offline.target_qps\u00a0=\u00a0100", "holds U+00A0, a space LoadGen reads as part of a word"),
        ("*.Offline.target_qps = 100\u2028*.Offline.min_duration = 5", "U+2028"),
        ("*.Offline.target_qps = 100\x0c*.Offline.min_duration = 5", "is not a number: LoadGen refuses"),
    ],
)
def test_a_line_loadgen_refuses_or_ignores_is_named(tmp_path, line, says):  # min_duration 1000 ms first
    with pytest.raises(SubtoolError) as err:
        _check(tmp_path, f"*.Offline.min_duration = 1000\n{line}\n")
    assert err.value.rule == "run.user_conf" and err.value.message.startswith("line 2: ") and says in err.value.message


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "no setting at all"),
        ("# only a comment\n\n", "no setting at all"),
        ("bert-99.Server.target_qps = 5\nresnet50.Offline.target_qps = 9\n", "2 settings, none for bert-99.Offline"),
        (b"\xff\xfe garbage", "not UTF-8"),
        ("*.Offline.target_qps = 1\n" * 70_000, "larger than 1 MiB"),
    ],
)
def test_a_file_that_sets_nothing_for_the_run_is_refused(tmp_path, text, says):
    with pytest.raises(SubtoolError) as err:
        _check(tmp_path, text)
    assert says in err.value.message and str(err.value.path).endswith("user.conf")


def test_a_file_that_is_not_regular_is_refused_unread(tmp_path):
    with pytest.raises(SubtoolError) as err:
        check_user_conf("/dev/zero", "bert-99", "Offline")
    assert "not a regular file" in err.value.message


@given(st.text(max_size=300))
def test_the_parser_never_raises(text):
    settings, problems = parse_user_conf(text)
    assert all(p.line >= 1 for p in problems) and all(s.name for s in settings)


def test_a_schedule_over_the_limit_counts_the_ten_minutes_mlperf_conf_gives():
    """Without min_duration, LoadGen's own 10 minutes: 1e7 queries/s lays out 6e9 (allowed), 1.1e7 is refused."""
    from subtool.mlperf.user_conf import MOST_SCHEDULED, _schedule_problem

    settings, _ = parse_user_conf("*.Server.target_qps = 1e7\n")
    assert _schedule_problem(settings) is None and 1e7 * 600 == MOST_SCHEDULED
    settings, _ = parse_user_conf("*.Server.min_duration = 600001\n*.Server.target_qps = 1e7\n")
    assert "over 600.001 s asks LoadGen to schedule 6e+09" in _schedule_problem(settings).message
