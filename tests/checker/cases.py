"""The conformance cases: valid trees and one mutation per rule, each with what the official checker says.

A case builds a tree (TreeBuilder on real LoadGen logs), names the round, and says which rule ids subtool
must report. The official verdicts live in tests/fixtures/checker/official_verdicts.json (recorded by
tests/fixtures/checker/record_official.py). `stricter` lists results where subtool fails on purpose while the
official checker passes (INVALID results, ignored LoadGen errors); `crash` says the official checker stops
with a traceback on this tree (subtool must report a finding instead).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cases_multistream as ms
from treegen import TreeBuilder, set_log_value

SUB = "TeamX"
BERT = "bert-99"
LLAMA2 = "llama2-70b-99.9"
LLAMA31 = "llama3.1-8b"


def rid(division: str, system: str, model: str, scenario: str, submitter: str = SUB) -> str:
    return f"{division}/{submitter}/results/{system}/{model}/{scenario}"


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[TreeBuilder], None]
    version: str = "v6.1"
    layout: str = "v6"
    expect_rules: tuple[str, ...] = ()  # rule ids subtool must report as errors
    waive: tuple[str, ...] = ()
    stricter: dict[str, str] = field(default_factory=dict)  # result id → rule that makes subtool fail
    crash: bool = False  # the official checker crashes on this tree
    crash_fails: tuple[str, ...] = ()  # crash cases: the results subtool fails (default: all)
    note: str = ""


# ------------------------------------------------------------------------------------------ base trees
def bert_closed(b: TreeBuilder, **system) -> None:
    b.system("closed", SUB, "box", system)
    for scenario in ("Offline", "SingleStream"):
        b.result("closed", SUB, "box", BERT, scenario)


def bert_open(b: TreeBuilder, **kw) -> None:
    b.system("open", SUB, "box")
    b.result("open", SUB, "box", BERT, "Offline", **kw)


def llm_closed(b: TreeBuilder, model: str) -> None:
    b.system("closed", SUB, "dc", {"system_type": "datacenter"})
    for scenario in ("Offline", "Server"):
        b.result("closed", SUB, "dc", model, scenario)


def llm_open(b: TreeBuilder, model: str) -> None:
    b.system("open", SUB, "dc", {"system_type": "datacenter"})
    b.result("open", SUB, "dc", model, "Offline")


def res(b: TreeBuilder, division: str, system: str, model: str, scenario: str) -> Path:
    return b.root / rid(division, system, model, scenario)


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is _DELETE:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data, indent=2) + "\n")


_DELETE = object()


def _closed_offline(b: TreeBuilder) -> Path:
    bert_closed(b)
    return res(b, "closed", "box", BERT, "Offline")


def _perf_detail(path: Path) -> Path:
    return path / "performance" / "run_1" / "mlperf_log_detail.txt"


# ------------------------------------------------------------------------------------------- mutations
def m_missing_perf_log(b):
    _perf_detail(_closed_offline(b)).unlink()


def m_missing_accuracy_txt(b):
    (_closed_offline(b) / "accuracy" / "accuracy.txt").unlink()


def m_missing_user_conf(b):
    (_closed_offline(b) / "user.conf").unlink()


def m_empty_readme(b):
    (_closed_offline(b) / "README.md").write_text("")


def m_missing_system_json(b):
    bert_closed(b)
    (b.root / "closed" / SUB / "systems" / "box.json").unlink()


def m_malformed_system_json(b):
    bert_closed(b)
    (b.root / "closed" / SUB / "systems" / "box.json").write_text('{"division": "closed", ')


def m_short_duration(b):
    b.system("closed", SUB, "box")
    for scenario in ("Offline", "SingleStream"):
        b.result("closed", SUB, "box", BERT, scenario, full_duration=False)


def m_invalid_result(b):
    b.system("open", SUB, "box")
    b.result("open", SUB, "box", BERT, "Offline", run_key="invalid/bert-99/Offline")


def m_low_accuracy_closed(b):
    p = _closed_offline(b) / "accuracy" / "accuracy.txt"
    p.write_text(p.read_text().replace('"f1": 90.874', '"f1": 88.1'))


def m_low_accuracy_open(b):
    bert_open(b)
    p = res(b, "open", "box", BERT, "Offline") / "accuracy" / "accuracy.txt"
    p.write_text(p.read_text().replace('"f1": 90.874', '"f1": 12.5'))


def m_empty_system_field(b):
    bert_closed(b, host_processor_model_name="")


def m_zero_system_field(b):
    bert_closed(b, accelerators_per_node=0)


def m_wrong_submitter(b):
    bert_closed(b, submitter="SomeoneElse")


def m_wrong_division(b):
    bert_closed(b, division="open")


def m_bad_status(b):
    bert_closed(b, status="released")


def m_missing_system_field(b):
    bert_closed(b)
    edit_json(b.root / "closed" / SUB / "systems" / "box.json", cooling=_DELETE)


def m_unknown_model_closed(b):
    b.system("closed", SUB, "box")
    b.result("closed", SUB, "box", BERT, "Offline", folder="mixtral-8x7b")


def m_unknown_model_open(b):
    b.system("open", SUB, "box")
    b.result("open", SUB, "box", BERT, "Offline", folder="my-tiny-model")


def m_open_model_mapping(b):
    b.system("open", SUB, "box")
    b.result("open", SUB, "box", BERT, "Offline", folder="my-tiny-model")
    (b.root / "open" / SUB / "model_mapping.json").write_text('{"my-tiny-model": "bert-99"}\n')


def m_malformed_model_mapping(b):
    b.system("open", SUB, "box")
    b.result("open", SUB, "box", BERT, "Offline", folder="my-tiny-model")
    (b.root / "open" / SUB / "model_mapping.json").write_text('{"my-tiny-model": ')


def m_not_truncated(b):
    acc = _closed_offline(b) / "accuracy"
    shutil.copyfile(b.runs["bert-99/Offline"].acc / "mlperf_log_accuracy.json", acc / "mlperf_log_accuracy.json")


def m_hash_missing_closed(b):
    p = _closed_offline(b) / "accuracy" / "accuracy.txt"
    p.write_text(p.read_text().split("\n\nhash=")[0] + "\n")


def m_hash_missing_open(b):
    bert_open(b)
    p = res(b, "open", "box", BERT, "Offline") / "accuracy" / "accuracy.txt"
    p.write_text(p.read_text().split("\n\nhash=")[0] + "\n")


def m_missing_test01(b):
    shutil.rmtree(_closed_offline(b) / "TEST01")


def m_test01_failed(b):
    p = _closed_offline(b) / "TEST01" / "verify_performance.txt"
    p.write_text(p.read_text().replace("TEST PASS", "TEST FAIL"))


def m_test01_extra_file(b):
    (_closed_offline(b) / "TEST01" / "performance" / "run_1" / "notes.txt").write_text("extra\n")


def _test01_accuracy_fallback(b, compliance_f1: float) -> None:
    """TEST01 whose accuracy verification did not print TEST PASS (a non-deterministic SUT), with the accuracy/
    folder its comparison keeps: the baseline's F1 90.0 and the compliance run's `compliance_f1`."""
    result = _closed_offline(b)
    base = result / "TEST01"
    verify = base / "verify_accuracy.txt"
    verify.write_text(verify.read_text().replace("TEST PASS", "TEST FAIL"))
    acc = base / "accuracy"
    acc.mkdir()
    run_acc = b.runs["bert-99/Offline"].acc
    shutil.copyfile(run_acc / "mlperf_log_accuracy.json", acc / "mlperf_log_accuracy.json")
    shutil.copyfile(result / "accuracy" / "accuracy.txt", acc / "accuracy.txt")
    (acc / "baseline_accuracy.txt").write_text('{"exact_match": 80.0, "f1": 90.0}\n')
    (acc / "compliance_accuracy.txt").write_text(f'{{"exact_match": 80.0, "f1": {compliance_f1}}}\n')


def m_test01_accuracy_fallback_close(b):
    _test01_accuracy_fallback(b, 89.5)  # 0.56 % apart: within bert-99's 1 %


def m_test01_accuracy_fallback_far(b):
    _test01_accuracy_fallback(b, 88.0)  # 2.3 % apart


def m_test06_failed(b):
    llm_closed(b, LLAMA31)
    p = res(b, "closed", "dc", LLAMA31, "Server") / "TEST06" / "verify_accuracy.txt"
    p.write_text(p.read_text().replace("EOS check pass: True", "EOS check pass: False"))


def m_missing_scenario(b):
    b.system("closed", SUB, "box")
    b.result("closed", SUB, "box", BERT, "Offline")


def m_llm_missing_server(b):
    b.system("closed", SUB, "dc", {"system_type": "datacenter"})
    b.result("closed", SUB, "dc", LLAMA31, "Offline")


def m_datacenter_bert(b):
    bert_closed(b, system_type="datacenter")


def m_bad_seed(b):
    bert_closed(b)  # v6.1 logs (LoadGen 6.0.17) checked with the v6.0 rules


def m_v6_tree_under_v50(b):
    bert_closed(b)


def m_sample_count(b):
    set_log_value(_perf_detail(_closed_offline(b)), "effective_performance_sample_count", 1024)


def m_small_offline_query_closed(b):
    # LoadGen 6.0.17 itself never issues fewer than 10833 bert samples per Offline query: edit the log.
    set_log_value(_perf_detail(_closed_offline(b)), "effective_samples_per_query", 5000)


def m_loadgen_error(b):
    bert_open(b)
    p = _perf_detail(res(b, "open", "box", BERT, "Offline"))
    error = {
        "key": "error_runtime",
        "value": "Multiple conf files are used. This is not valid for official submission.",
        "time_ms": 0.01,
        "namespace": "mlperf::logging",
        "event_type": "POINT_IN_TIME",
        "metadata": {
            "is_error": True,
            "is_warning": False,
            "file": "test_settings_internal.cc",
            "line_no": 1,
            "pid": 1,
            "tid": 1,
        },
    }
    with p.open("a") as fh:
        fh.write(":::MLLOG " + json.dumps(error) + "\n")


def m_binary_garbage(b):
    p = _perf_detail(_closed_offline(b))
    data = p.read_bytes()
    p.write_bytes(data[:5000] + b"\xff\xfe\x00\x81garbage\x00\xc3\x28\n" + data[5000:])


def m_cut_short(b):
    p = _perf_detail(_closed_offline(b))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def m_ttft(b):
    llm_closed(b, LLAMA2)
    set_log_value(
        _perf_detail(res(b, "closed", "dc", LLAMA2, "Server")),
        "result_first_token_99.00_percentile_latency_ns",
        2_500_000_000,
    )


def m_token_latencies_off(b):
    llm_closed(b, LLAMA31)
    set_log_value(_perf_detail(res(b, "closed", "dc", LLAMA31, "Offline")), "requested_use_token_latencies", False)


def m_gen_len_above(b):
    llm_closed(b, LLAMA31)
    for scenario in ("Offline", "Server"):
        p = res(b, "closed", "dc", LLAMA31, scenario) / "accuracy" / "accuracy.txt"
        p.write_text(p.read_text().replace("'gen_len': 8167644", "'gen_len': 9500000"))


def m_measurements_field(b):
    edit_json(_closed_offline(b) / "measurements.json", weight_data_types=_DELETE)


def m_missing_src(b):
    bert_closed(b)
    shutil.rmtree(b.root / "closed" / SUB / "src")


def m_dataset_size_open(b):
    bert_open(b)
    set_log_value(
        res(b, "open", "box", BERT, "Offline") / "accuracy" / "mlperf_log_detail.txt",
        "effective_accuracy_sample_count",
        500,
    )


def m_early_stopping(b):
    bert_closed(b)
    set_log_value(_perf_detail(res(b, "closed", "box", BERT, "SingleStream")), "early_stopping_met", False)


def m_server_latency(b):
    llm_closed(b, LLAMA31)
    set_log_value(
        _perf_detail(res(b, "closed", "dc", LLAMA31, "Server")), "effective_target_latency_ns", 30_000_000_000
    )


def m_inferred_from_offline(b):
    # An Offline run filed as SingleStream: SingleStream may not be inferred from Offline.
    b.system("open", SUB, "box")
    b.result("open", SUB, "box", BERT, "SingleStream", run_key="bert-99/Offline")


# hostile input (issue 19): what the official checker accepts, crashes on, or never reads
def m_nan_result(b):
    set_log_value(_perf_detail(_closed_offline(b)), "result_samples_per_second", float("nan"))


def m_infinity_system_field(b):
    bert_closed(b)
    path = b.root / "closed" / SUB / "systems" / "box.json"
    path.write_text(path.read_text().replace('"number_of_nodes": "1"', '"number_of_nodes": Infinity'))


def m_deep_system_json(b):
    bert_closed(b)
    (b.root / "closed" / SUB / "systems" / "box.json").write_text("[" * 100_000 + "]" * 100_000)


def m_summary_lies(b):
    summary = _closed_offline(b) / "performance" / "run_1" / "mlperf_log_summary.txt"
    lines = summary.read_text().splitlines(keepends=True)
    i = next(i for i, ln in enumerate(lines) if ln.startswith("Samples per second:"))
    lines[i] = "Samples per second: 9" + lines[i].split(":", 1)[1].strip()[1:] + "\n"  # one digit changed
    summary.write_text("".join(lines))


def m_link_loop_beside_result(b):
    bert_open(b)
    (b.root / "open" / SUB / "results" / "loop").symlink_to("loop")


def v50_legacy(b):
    b.system("closed", SUB, "box")
    for scenario in ("Offline", "SingleStream"):
        b.result("closed", SUB, "box", BERT, scenario, run_key=f"v5.0/bert-99/{scenario}")


# Cases whose official summary.csv is recorded verbatim (fixtures/checker/summary_<case>.csv): subtool must write
# the same bytes, with {TREE} standing for the tree's path. record_official.py records them, the conformance test
# compares them.
CSV_CASES = (
    "bert_closed_valid",
    "llama2_closed_valid",
    "llama31_open_valid",
    "bert_closed_v50_legacy_layout",
    "multistream_inferred_from_singlestream",
)

CASES: list[Case] = [
    # valid trees
    Case("bert_closed_valid", bert_closed),
    Case("bert_open_valid", bert_open),
    Case("llama2_closed_valid", lambda b: llm_closed(b, LLAMA2)),
    Case("llama2_open_valid", lambda b: llm_open(b, LLAMA2)),
    Case("llama31_closed_valid", lambda b: llm_closed(b, LLAMA31)),
    Case("llama31_open_valid", lambda b: llm_open(b, LLAMA31)),
    Case(
        "bert_closed_v50_legacy_layout",
        v50_legacy,
        version="v5.0",
        layout="v5",
        note="a v5-layout tree (measurements/, compliance/, code/) with v5.0 seeds, checked with v5.0 rules",
    ),
    Case("bert_open_open_mapping", m_open_model_mapping),
    # the embedded demo's shape: open division, short run; waiving min_duration is the only difference
    Case(
        "demo_open_short_run_waived",
        lambda b: bert_open(b, full_duration=False),
        expect_rules=(),
        waive=("perf.min_duration",),
        note="official fails only with 'Test duration less than 600s'; subtool passes with the rule waived",
    ),
    Case("short_run_open", lambda b: bert_open(b, full_duration=False), expect_rules=("perf.min_duration",)),
    # one mutation per rule
    Case(
        "missing_perf_log",
        m_missing_perf_log,
        expect_rules=("layout.missing_file",),
        crash=True,
        crash_fails=(rid("closed", "box", BERT, "Offline"),),
    ),
    Case("missing_accuracy_txt", m_missing_accuracy_txt, expect_rules=("layout.missing_file",)),
    Case("missing_user_conf", m_missing_user_conf, expect_rules=("layout.missing_file",)),
    Case("empty_readme", m_empty_readme, expect_rules=("layout.empty_file",)),
    Case("missing_system_json", m_missing_system_json, expect_rules=("layout.missing_file",), crash=True),
    Case("malformed_system_json", m_malformed_system_json, expect_rules=("system.unreadable",), crash=True),
    Case("short_duration_closed", m_short_duration, expect_rules=("perf.min_duration",)),
    Case(
        "invalid_result",
        m_invalid_result,
        expect_rules=("perf.result_invalid",),
        stricter={rid("open", "box", BERT, "Offline"): "perf.result_invalid"},
    ),
    Case("low_accuracy_closed", m_low_accuracy_closed, expect_rules=("acc.below_threshold",)),
    Case("low_accuracy_open", m_low_accuracy_open),
    Case("empty_system_field", m_empty_system_field, expect_rules=("system.field_empty",)),
    Case("zero_system_field", m_zero_system_field, expect_rules=("system.field_empty",)),
    Case("missing_system_field", m_missing_system_field, expect_rules=("system.field_missing",)),
    Case("wrong_submitter", m_wrong_submitter, expect_rules=("system.submitter_mismatch",)),
    Case("wrong_division", m_wrong_division, expect_rules=("system.division_mismatch",)),
    Case("bad_status", m_bad_status, expect_rules=("system.status_invalid",)),
    Case("unknown_model_closed", m_unknown_model_closed, expect_rules=("model.unknown",), crash=True),
    Case("unknown_model_open", m_unknown_model_open, expect_rules=("model.unknown",)),
    Case("malformed_model_mapping", m_malformed_model_mapping, expect_rules=("model.mapping_invalid",), crash=True),
    Case("not_truncated", m_not_truncated, expect_rules=("acc.not_truncated",)),
    Case("hash_missing_closed", m_hash_missing_closed, expect_rules=("acc.hash_missing",)),
    Case("hash_missing_open", m_hash_missing_open),
    Case("missing_test01", m_missing_test01, expect_rules=("compliance.missing",)),
    Case("test01_failed", m_test01_failed, expect_rules=("compliance.failed",)),
    Case("test01_extra_file", m_test01_extra_file, expect_rules=("compliance.file_list",)),
    Case("test01_accuracy_fallback_close", m_test01_accuracy_fallback_close),
    Case("test01_accuracy_fallback_far", m_test01_accuracy_fallback_far, expect_rules=("compliance.failed",)),
    Case("test06_failed", m_test06_failed, expect_rules=("compliance.failed",)),
    Case("missing_required_scenario", m_missing_scenario, expect_rules=("scenario.missing_required",)),
    Case("llm_missing_server_or_interactive", m_llm_missing_server, expect_rules=("scenario.missing_required",)),
    Case("datacenter_bert_closed", m_datacenter_bert, expect_rules=("scenario.not_for_system_type",), crash=True),
    Case("bad_seed_v60_rules", m_bad_seed, version="v6.0", expect_rules=("perf.seeds",)),
    Case(
        "v6_tree_under_v50", m_v6_tree_under_v50, version="v5.0", expect_rules=("layout.wrong_generation",), crash=True
    ),
    Case("sample_count", m_sample_count, expect_rules=("perf.sample_count",)),
    Case("small_offline_query_closed", m_small_offline_query_closed, expect_rules=("perf.offline_samples_per_query",)),
    Case(
        "loadgen_error_perf",
        m_loadgen_error,
        expect_rules=("perf.loadgen_error",),
        stricter={rid("open", "box", BERT, "Offline"): "perf.loadgen_error"},
    ),
    Case(
        "binary_garbage_perf_log",
        m_binary_garbage,
        expect_rules=("perf.log_corrupt",),
        crash=True,
        crash_fails=(rid("closed", "box", BERT, "Offline"),),
    ),
    Case(
        "perf_log_cut_short",
        m_cut_short,
        expect_rules=("perf.log_corrupt",),
        crash=True,
        crash_fails=(rid("closed", "box", BERT, "Offline"),),
    ),
    Case("ttft_over_limit", m_ttft, expect_rules=("perf.ttft_tpot",)),
    Case("token_latencies_off", m_token_latencies_off, expect_rules=("perf.token_latencies",)),
    Case("gen_len_above_limit", m_gen_len_above, expect_rules=("acc.above_upper_limit",)),
    Case("measurements_field_missing", m_measurements_field, expect_rules=("measurements.field_missing",)),
    Case("missing_src", m_missing_src, expect_rules=("layout.missing_dir",)),
    Case("dataset_size_open", m_dataset_size_open, expect_rules=("acc.dataset_size",)),
    Case("early_stopping_not_met", m_early_stopping, expect_rules=("perf.early_stopping",)),
    Case("server_latency_over_limit", m_server_latency, expect_rules=("perf.latency",)),
    Case("inferred_from_offline", m_inferred_from_offline, expect_rules=("perf.inferred_scenario",)),
    Case(
        "nan_result",
        m_nan_result,
        expect_rules=("value.not_finite",),
        stricter={rid("closed", "box", BERT, "Offline"): "value.not_finite"},
    ),
    Case("infinity_system_field", m_infinity_system_field, expect_rules=("value.not_finite",), crash=True),
    Case("deep_system_json", m_deep_system_json, expect_rules=("system.unreadable",), crash=True),
    Case(
        "summary_lies",
        m_summary_lies,
        expect_rules=("summary.mismatch",),
        stricter={rid("closed", "box", BERT, "Offline"): "summary.mismatch"},
    ),
    Case(
        "link_loop_beside_result",
        m_link_loop_beside_result,
        expect_rules=("tree.symlink",),
        stricter={rid("open", "box", BERT, "Offline"): "tree.symlink"},
    ),
    # resnet on an edge system: MultiStream, inference across scenarios, TEST04 (cases_multistream.py)
    Case("resnet_closed_valid", ms.resnet_closed),
    Case("multistream_early_stopping_not_met", ms.m_ms_early_stopping, expect_rules=("perf.early_stopping",)),
    Case("multistream_test04_early_stopping", ms.m_ms_test04_early_stopping, expect_rules=("perf.early_stopping",)),
    Case("multistream_inferred_from_singlestream", ms.m_ms_from_ss),
    Case("multistream_inferred_no_estimate", ms.m_ms_from_ss_no_estimate, expect_rules=("perf.early_stopping",)),
    Case("offline_inferred_from_multistream", ms.m_offline_from_ms),
    Case("offline_inferred_from_singlestream", ms.m_offline_from_ss),
    Case("multistream_inferred_from_offline", ms.m_ms_from_offline, expect_rules=("perf.inferred_scenario",)),
    Case("singlestream_inferred_from_multistream", ms.m_ss_from_ms, expect_rules=("perf.inferred_scenario",)),
    Case("resnet_missing_multistream", ms.m_missing_ms, expect_rules=("scenario.missing_required",)),
    Case("multistream_missing_test04", ms.m_ms_missing_test04, expect_rules=("compliance.missing",)),
]
CASES_BY_NAME = {c.name: c for c in CASES}


def build_case(case: Case, dest: Path, runs) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    case.build(TreeBuilder(dest, runs, layout=case.layout))
    return dest
