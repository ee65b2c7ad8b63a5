"""The user.conf keys subtool writes for a run, and what it reads back from LoadGen (runner/harness.py): no SUT."""

from __future__ import annotations

import pytest
from support.detail_logs import write_detail_log


@pytest.mark.parametrize("model", ["llama3_1-8b", "llama2-70b", "llama3_1-8b-interactive"])
@pytest.mark.parametrize("scenario", ["Server", "SingleStream"])
def test_equal_issue_is_turned_off_only_for_short_runs_of_the_llms(model, scenario):
    """mlperf.conf sets sample_concatenate_permutation for the LLMs, and the checker wants it in a valid run: only a
    short run (too few queries for it) may turn it off."""
    from subtool.runner.harness import user_conf_settings

    def settings(style: str) -> dict:
        return user_conf_settings(
            scenario, style, 100, target_qps=1.0, target_latency_ms=None, min_duration_ms=None, loadgen_model=model
        )

    assert settings("short")["sample_concatenate_permutation"] == 0
    assert "sample_concatenate_permutation" not in settings("valid")
    assert "sample_concatenate_permutation" not in user_conf_settings(
        scenario, "short", 100, target_qps=1.0, target_latency_ms=None, min_duration_ms=None, loadgen_model="bert"
    )


def _conf(scenario, style, n=10833, *, qps=None, latency=None, duration=None, model="bert-99") -> dict:
    from subtool.runner.harness import user_conf_settings

    return user_conf_settings(
        scenario, style, n, target_qps=qps, target_latency_ms=latency, min_duration_ms=duration, loadgen_model=model
    )


def test_a_short_offline_run_issues_the_whole_data_set_in_one_query_over_its_short_minimum():
    """LoadGen sizes the Offline query as target_qps × min_duration × 1.1: by default that covers every sample
    (closed division needs the whole data set), and only just; a target the user gave is taken as given."""
    settings = _conf("Offline", "short")
    assert set(settings) == {"target_qps", "min_duration"} and settings["min_duration"] == 1000
    assert 10833 <= settings["target_qps"] * 1.1 * 1.0 < 10833 + 0.01
    assert _conf("Offline", "short", duration=4000)["target_qps"] * 1.1 * 4.0 >= 10833
    assert _conf("Offline", "short", qps=5.0, duration=2000) == {"target_qps": 5.0, "min_duration": 2000}
    # a valid run keeps LoadGen's own minimum and sizing: nothing but what the user gave
    assert _conf("Offline", "valid") == {}
    assert _conf("Offline", "valid", qps=7.5) == {"target_qps": 7.5}


def test_a_short_server_run_asks_for_enough_queries_for_early_stopping_at_its_load():
    assert _conf("Server", "short") == {"min_query_count": 500, "min_duration": 10000}
    assert _conf("Server", "short", qps=10.0) == {"target_qps": 10.0, "min_query_count": 500, "min_duration": 10000}
    # more queries than the minimum when the load fills the duration with more
    assert _conf("Server", "short", qps=100.0, duration=20000)["min_query_count"] == 2000
    assert _conf("Server", "valid", qps=100.0) == {"target_qps": 100.0}


def test_interactive_is_loadgens_server_scenario_in_user_conf():
    interactive = _conf("Interactive", "short", qps=2.0, model="llama3_1-8b-interactive")
    assert interactive == _conf("Server", "short", qps=2.0, model="llama3_1-8b")
    assert interactive["sample_concatenate_permutation"] == 0 and interactive["min_query_count"] == 500


def test_the_stream_scenarios_keys():
    assert _conf("SingleStream", "short", latency=3.5) == {
        "target_latency": 3.5,
        "min_query_count": 64,
        "min_duration": 10000,
    }
    assert _conf("MultiStream", "short") == {"min_duration": 10000}  # LoadGen's early-stopping minimum is its own
    assert _conf("SingleStream", "valid") == {}
    # equal issue stays on for an LLM's Offline run: its one query holds the data set anyway
    assert "sample_concatenate_permutation" not in _conf("Offline", "short", model="llama3_1-8b")


def test_an_unknown_run_style_is_refused_not_run_as_a_valid_one():
    from subtool.errors import SubtoolError

    with pytest.raises(SubtoolError, match="unknown run style 'quick'") as err:
        _conf("Offline", "quick")
    assert err.value.rule == "run.style"


def test_user_conf_numbers_are_written_whole_or_exactly(tmp_path):
    """An integral float as an integer (LoadGen reads `2` and `2.0` alike, people read `2`), any other one in
    full: 9848.183 truncated to 9848 would issue fewer samples than the data set holds."""
    from subtool.runner.harness import write_user_conf

    settings = {"target_qps": 9848.183, "target_latency": 2.0, "min_query_count": 64, "tiny": 1e-05}
    path = write_user_conf(tmp_path / "user.conf", "bert-99", "Offline", settings, header="made here\nby a test")
    assert path.read_text().splitlines() == [
        "# made here",
        "# by a test",
        "bert-99.Offline.target_qps = 9848.183",
        "bert-99.Offline.target_latency = 2",
        "bert-99.Offline.min_query_count = 64",
        "bert-99.Offline.tiny = 1e-05",
    ]


def _detail_log(path, *entries) -> None:
    """(key, value, is_error) each."""
    entries = [{"key": k, "value": v, "metadata": {"is_error": err, "is_warning": False}} for k, v, err in entries]
    write_detail_log(path, entries)


def test_the_detail_log_says_an_invalid_config_once_whether_or_not_loadgen_flagged_it_an_error(tmp_path):
    from subtool.runner.harness import read_detail_log

    log = tmp_path / "mlperf_log_detail.txt"
    _detail_log(log, ("result_validity", "VALID", False), ("error_invalid_config", "Multiple conf files.", True))
    assert read_detail_log(log)["__errors__"] == ["Multiple conf files."]
    _detail_log(log, ("result_validity", "VALID", False), ("error_invalid_config", "Bad setting.", False))
    values = read_detail_log(log)
    assert values["__errors__"] == ["Bad setting."] and values["result_validity"] == "VALID"
    _detail_log(log, ("result_validity", "INVALID", False))
    assert read_detail_log(log)["__errors__"] == []


def test_loadgen_logs_that_are_not_there_or_unreadable_are_one_error_naming_them(tmp_path):
    from subtool.errors import SubtoolError
    from subtool.runner.harness import accuracy_entries, read_detail_log

    with pytest.raises(SubtoolError, match="LoadGen wrote no detail log") as err:
        read_detail_log(tmp_path / "mlperf_log_detail.txt")
    assert err.value.path == str(tmp_path / "mlperf_log_detail.txt") and err.value.rule == "run.loadgen"
    acc = tmp_path / "mlperf_log_accuracy.json"
    for text in ("", "[{", "not json at all", '{"qsl_idx": 0}'):
        acc.write_text(text)
        with pytest.raises(SubtoolError, match="accuracy log") as err:
            accuracy_entries(acc)
        assert err.value.path == str(acc) and err.value.rule == "acc.log_parse", text
    acc.write_text('[{"seq_id": 0, "qsl_idx": 3, "data": "0A0B"}]')
    assert accuracy_entries(acc) == [(3, bytes.fromhex("0A0B"))]


def test_a_rounds_seeds_replace_loadgens_and_say_whether_they_differ():
    """LoadGen reads its RNG seeds from no user.conf: a run for another round sets them on the loaded settings."""
    lg = pytest.importorskip("mlperf_loadgen")
    from subtool.runner.harness import settings_seeds, use_round_seeds

    settings = lg.TestSettings()
    builtin = settings_seeds(settings)
    assert use_round_seeds(settings, None) is False and settings_seeds(settings) == builtin
    assert use_round_seeds(settings, dict(builtin)) is False and settings_seeds(settings) == builtin
    other = {key: value + 1 for key, value in builtin.items()}
    assert use_round_seeds(settings, other) is True and settings_seeds(settings) == other


def test_run_loadgen_runs_the_mode_and_audit_config_it_is_given_and_reads_back_loadgens_answer(tmp_path):
    """Real LoadGen and an instant SUT: user.conf LoadGen cannot read is one error naming it; a performance run is
    LoadGen's PerformanceOnly with its validity and its result (SingleStream's is an integer of ns in the log), an
    accuracy run AccuracyOnly with neither; an audit config given is the one LoadGen applies; the empty trace
    file LoadGen leaves is not kept."""
    lg = pytest.importorskip("mlperf_loadgen")
    import instant_sut

    from subtool.errors import SubtoolError
    from subtool.runner.harness import (
        accuracy_entries,
        load_test_settings,
        read_detail_log,
        run_loadgen,
        write_user_conf,
    )

    bad = tmp_path / "bad.conf"
    bad.write_text("this is not a setting\n")
    with pytest.raises(SubtoolError, match="LoadGen rejected user.conf") as err:
        load_test_settings(bad, "bert-99", "SingleStream")
    assert err.value.path == str(bad) and err.value.rule == "run.user_conf"
    settings = {"target_latency": 0.01, "min_query_count": 64, "min_duration": 200}
    conf = write_user_conf(tmp_path / "user.conf", "bert-99", "SingleStream", settings)
    loaded = load_test_settings(conf, "bert-99", "SingleStream")
    assert loaded.min_query_count == 64 and loaded.min_duration_ms == 200

    sut = instant_sut.InstantSUT(4)
    qsl = lg.ConstructQSL(16, 16, lambda samples: None, lambda samples: None)
    try:
        audit = tmp_path / "audit.config"
        audit.write_text("*.*.min_query_count = 777\n")
        perf = run_loadgen(
            sut.handle,
            qsl,
            loaded,
            scenario="SingleStream",
            mode="performance",
            outdir=tmp_path / "perf",
            audit_config=audit,
        )
        values = read_detail_log(tmp_path / "perf/mlperf_log_detail.txt")
        assert values["effective_test_mode"] == "PerformanceOnly" and values["effective_min_query_count"] == 777
        assert perf.validity == values["result_validity"] and perf.validity in ("VALID", "INVALID")
        assert isinstance(values["early_stopping_latency_ss"], int)
        assert perf.result == float(values["early_stopping_latency_ss"]) and perf.result > 0
        assert not (tmp_path / "perf/mlperf_log_trace.json").exists()
        acc = run_loadgen(sut.handle, qsl, loaded, scenario="SingleStream", mode="accuracy", outdir=tmp_path / "acc")
        values = read_detail_log(tmp_path / "acc/mlperf_log_detail.txt")
        assert values["effective_test_mode"] == "AccuracyOnly" and values["effective_min_query_count"] == 64
        assert acc.validity is None and acc.mode == "accuracy"
        assert sorted(qsl_idx for qsl_idx, _ in accuracy_entries(tmp_path / "acc/mlperf_log_accuracy.json")) == list(
            range(16)
        )
    finally:
        lg.DestroyQSL(qsl)
        sut.stop()
