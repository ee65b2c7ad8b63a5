"""Which files of a compliance test's folder land in the tree and in which form (subtool/package/results.py), the
accuracy-log truncation limits (truncate.py) and the user.conf rebuilt from a log (api.py).

Added by a mutation probe of subtool/package: each test fails on a mutant of the
file lists, the truncation rules or the rebuilt settings that the other package tests let through (their
compliance runs are TEST01 only, their logs well above or below every limit).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from subtool.package.results import _copy_small_accuracy_log, _write_compliance
from subtool.package.truncate import ELLIPSIS, MAX_ACCURACY_LOG_SIZE, VIEWABLE_SIZE


def _accuracy_log(path: Path, entries: int) -> bytes:
    data = json.dumps([{"seq_id": i, "qsl_idx": i, "data": "00" * 40} for i in range(entries)]).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def _loadgen_logs(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
        (folder / name).write_text(f"{name}\n")


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _write(test: str, src: Path, tmp_path: Path) -> tuple[Path, list[Path]]:
    dst = tmp_path / "tree" / test
    kept: list[Path] = []
    _write_compliance(test, src, dst, tmp_path / "full" / test / "mlperf_log_accuracy.json", kept=kept, outside=[])
    return dst, kept


def test_test06_hands_in_its_verdicts_and_answers_but_no_performance_logs(tmp_path):
    src = tmp_path / "TEST06"
    for name in ("verify_accuracy.txt", "verify_output_len.txt"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text("TEST PASS\n")
    _loadgen_logs(src / "performance" / "run_1")
    _accuracy_log(src / "accuracy" / "mlperf_log_accuracy.json", 3)
    dst, _ = _write("TEST06", src, tmp_path)
    assert _files(dst) == {"verify_accuracy.txt", "verify_output_len.txt", "accuracy/mlperf_log_accuracy.json"}


def test_test01_keeps_all_three_accuracy_files_and_truncates_its_log(tmp_path):
    src = tmp_path / "TEST01"
    (src / "verify_accuracy.txt").parent.mkdir(parents=True)
    (src / "verify_accuracy.txt").write_text("TEST PASS\n")
    _loadgen_logs(src / "performance" / "run_1")
    data = _accuracy_log(src / "accuracy" / "mlperf_log_accuracy.json", 400)
    assert len(data) > MAX_ACCURACY_LOG_SIZE
    for name in ("baseline_accuracy.txt", "compliance_accuracy.txt"):
        (src / "accuracy" / name).write_text('{"exact_match": 0.5, "f1": 1.5}\n')
    dst, kept = _write("TEST01", src, tmp_path)
    assert _files(dst) == {
        "verify_accuracy.txt",
        "performance/run_1/mlperf_log_summary.txt",
        "performance/run_1/mlperf_log_detail.txt",
        "accuracy/baseline_accuracy.txt",
        "accuracy/compliance_accuracy.txt",
        "accuracy/accuracy.txt",
        "accuracy/mlperf_log_accuracy.json",
    }
    assert (dst / "accuracy/mlperf_log_accuracy.json").read_bytes() == data[:VIEWABLE_SIZE] + ELLIPSIS + data[
        -VIEWABLE_SIZE:
    ]
    assert (dst / "accuracy/accuracy.txt").read_text() == f"\nhash={hashlib.sha256(data).hexdigest()}\n"
    assert [p.read_bytes() for p in kept] == [data]


def test_test07_and_test09_logs_are_truncated_with_only_the_hash(tmp_path):
    for test in ("TEST07", "TEST09"):
        src = tmp_path / test
        (src / "verify_accuracy.txt").parent.mkdir(parents=True)
        (src / "verify_accuracy.txt").write_text("TEST PASS\n")
        data = _accuracy_log(src / "accuracy" / "mlperf_log_accuracy.json", 400)
        dst, kept = _write(test, src, tmp_path)
        log = (dst / "accuracy/mlperf_log_accuracy.json").read_bytes()
        assert len(log) <= MAX_ACCURACY_LOG_SIZE and log == data[:VIEWABLE_SIZE] + ELLIPSIS + data[-VIEWABLE_SIZE:]
        assert (dst / "accuracy/accuracy.txt").read_text() == f"hash={hashlib.sha256(data).hexdigest()}\n"
        assert [p.read_bytes() for p in kept] == [data]


def test_a_performance_runs_large_accuracy_log_stays_behind(tmp_path):
    small, large = tmp_path / "small", tmp_path / "large"
    _accuracy_log(small / "mlperf_log_accuracy.json", 2)
    _accuracy_log(large / "mlperf_log_accuracy.json", 400)
    for src in (small, large):
        _copy_small_accuracy_log(src, tmp_path / "out" / src.name)
    assert (tmp_path / "out" / "small" / "mlperf_log_accuracy.json").is_file()
    assert not (tmp_path / "out" / "large" / "mlperf_log_accuracy.json").exists()


def test_a_log_of_exactly_the_viewable_size_is_truncated_as_the_official_tool_does(tmp_path):
    # the official truncate_accuracy_log.py leaves a log alone only below 4096 bytes
    from subtool.package.truncate import truncate_accuracy_log

    src = tmp_path / "mlperf_log_accuracy.json"
    entry = {"seq_id": 0, "qsl_idx": 0, "data": ""}
    entry["data"] = "0" * (VIEWABLE_SIZE - len(json.dumps([entry]).encode()))
    data = json.dumps([entry]).encode()
    assert len(data) == VIEWABLE_SIZE
    src.write_bytes(data)
    out = truncate_accuracy_log(src, tmp_path / "out.json", full_copy=None, need_entries=True)
    assert out.truncated and (tmp_path / "out.json").read_bytes() == data + ELLIPSIS + data


def test_an_accuracy_txt_with_a_hash_beside_a_log_over_the_limit_is_not_already_truncated(tmp_path):
    from subtool.package.truncate import is_already_truncated

    log = tmp_path / "mlperf_log_accuracy.json"
    text = "f1=90.5\n\nhash=" + "a" * 64 + "\n"
    log.write_bytes(b" " * (MAX_ACCURACY_LOG_SIZE - 1))
    assert is_already_truncated(text, log)
    log.write_bytes(b" " * MAX_ACCURACY_LOG_SIZE)
    assert not is_already_truncated(text, log)  # the checker's limit: it would say the log is not truncated


def test_an_empty_accuracy_log_or_one_cut_inside_its_last_entry_is_refused(tmp_path):
    import pytest

    from subtool.errors import SubtoolError
    from subtool.package.truncate import truncate_accuracy_log

    empty, cut = tmp_path / "empty.json", tmp_path / "cut.json"
    empty.write_bytes(b"[]\n")  # what a performance run writes
    data = _accuracy_log(tmp_path / "whole.json", 400)
    cut.write_bytes(data[:-30] + b"]")  # the last entry lost its end, the list still closes
    for log, rule in ((empty, "import.accuracy_log_empty"), (cut, "import.accuracy_log_unparsable")):
        with pytest.raises(SubtoolError) as err:
            truncate_accuracy_log(log, tmp_path / "out.json", full_copy=None, need_entries=True)
        assert err.value.rule == rule
    truncate_accuracy_log(empty, tmp_path / "out.json", full_copy=None, need_entries=False)  # TEST logs may be empty


def test_the_user_conf_rebuilt_from_the_log_carries_each_setting_in_its_unit():
    from types import SimpleNamespace

    from subtool.package.api import _user_conf_text

    def rebuilt(scenario, **settings):
        log = SimpleNamespace(settings=lambda: settings)
        imp = SimpleNamespace(user_conf=None, perf_log=log, bench=SimpleNamespace(conf_name="bert"), scenario=scenario)
        return [ln for ln in _user_conf_text(imp).splitlines() if not ln.startswith("#")]

    assert rebuilt("Server", target_qps=120.5, min_duration_ms=600000, min_query_count=270336) == [
        "bert.Server.target_qps = 120.5",
        "bert.Server.min_duration = 600000",
        "bert.Server.min_query_count = 270336",
    ]
    assert rebuilt("SingleStream", target_latency_ns=2_500_000) == ["bert.SingleStream.target_latency = 2.5"]  # ms
