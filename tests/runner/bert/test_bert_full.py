"""bert-99 the way teams run it: the reference checkpoint format, TEST01, find-perf, every scenario."""

from __future__ import annotations

import json
import shutil

import pytest
from support.detail_logs import write_detail_log
from typer.testing import CliRunner

from subtool.cli import app
from subtool.runner import compliance
from subtool.runner.harness import read_detail_log

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, ["run", *map(str, args)])


@pytest.fixture(scope="module")
def reference_format_checkpoint(tmp_path_factory, tiny_checkpoint):
    """The same weights as tiny_checkpoint, laid out like the MLPerf reference download."""
    import torch
    from transformers import BertForQuestionAnswering

    ref = tmp_path_factory.mktemp("ref") / "bert_tf_v1_1_large_fp32_384_v2"
    ref.mkdir()
    model = BertForQuestionAnswering.from_pretrained(str(tiny_checkpoint))
    torch.save(model.state_dict(), ref / "model.pytorch")
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    google = {
        k: cfg[k]
        for k in (
            "attention_probs_dropout_prob",
            "hidden_act",
            "hidden_dropout_prob",
            "hidden_size",
            "initializer_range",
            "intermediate_size",
            "max_position_embeddings",
            "num_attention_heads",
            "num_hidden_layers",
            "type_vocab_size",
            "vocab_size",
        )
    }
    (ref / "bert_config.json").write_text(json.dumps(google))
    shutil.copy(tiny_checkpoint / "vocab.txt", ref / "vocab.txt")
    return ref


def test_reference_checkpoint_gives_the_same_answers_as_the_hf_one(
    tmp_path, small_squad, reference_format_checkpoint, tiny_offline_run
):
    # the Hugging Face checkpoint's answers: the session's run of tiny_checkpoint (tests/runner/conftest.py)
    ref_run = ["--model-path", reference_format_checkpoint, "--dataset-path", small_squad, "--out", tmp_path / "ref"]
    res = _run(*ref_run, "--mode", "accuracy")
    assert res.exit_code == 0, res.output
    hf = (tiny_offline_run / "accuracy/accuracy.txt").read_text()
    ref = (tmp_path / "ref/bert-99/Offline/accuracy/accuracy.txt").read_text()
    assert hf == ref
    assert (tiny_offline_run / "accuracy/mlperf_log_accuracy.json").read_bytes() == (
        tmp_path / "ref/bert-99/Offline/accuracy/mlperf_log_accuracy.json"
    ).read_bytes()


def test_reference_state_dict_with_missing_weights_is_refused(tmp_path, small_squad, reference_format_checkpoint):
    import torch

    bad = tmp_path / "bad"
    shutil.copytree(reference_format_checkpoint, bad)
    state = torch.load(bad / "model.pytorch", weights_only=True)
    state.pop("qa_outputs.weight")
    torch.save(state, bad / "model.pytorch")
    res = _run("--model-path", bad, "--dataset-path", small_squad, "--out", tmp_path / "o", "--mode", "accuracy")
    assert res.exit_code == 2 and "model.weights" in res.output and "qa_outputs.weight" in res.output
    assert not (tmp_path / "o" / "bert-99" / "Offline").exists()


def small_conf(tmp_path):
    """A user.conf sized to the 45-sample test set: LoadGen otherwise issues at least 10,833 samples."""
    conf = tmp_path / "small.user.conf"
    conf.write_text(
        "bert.Offline.target_qps = 41\nbert.Offline.min_duration = 1000\n"
        "bert.Offline.performance_sample_count_override = 45\nbert.Offline.min_query_count = 45\n"
    )
    return conf


def test_test01_runs_and_verifies_against_the_submission_runs(tmp_path, tiny_checkpoint, small_squad):
    res = _run(
        "--model-path",
        tiny_checkpoint,
        "--dataset-path",
        small_squad,
        "--out",
        tmp_path,
        "--compliance",
        "TEST01",
        "--user-conf",
        small_conf(tmp_path),
        "--json",
    )
    assert res.exit_code == 0, res.output
    run_dir = tmp_path / "bert-99" / "Offline"
    t01 = run_dir / "TEST01"
    assert sorted(p.name for p in (t01 / "accuracy").iterdir()) == [
        "accuracy.txt",
        "baseline_accuracy.txt",
        "compliance_accuracy.txt",
        "mlperf_log_accuracy.json",
    ]
    assert sorted(p.name for p in (t01 / "performance/run_1").iterdir()) == [
        "mlperf_log_detail.txt",
        "mlperf_log_summary.txt",
    ]
    detail = (t01 / "performance/run_1/mlperf_log_detail.txt").read_text()
    assert "Found Audit Config file" in detail and "Multiple conf files" not in detail
    assert '"key": "effective_accuracy_log_rng_seed", "value": 720381539243781796' in detail
    verify_acc = (t01 / "verify_accuracy.txt").read_text()
    assert "compliance run entries" in verify_acc and ("TEST PASS" in verify_acc or "TEST FAIL" in verify_acc)
    assert "Reference score" in (t01 / "verify_performance.txt").read_text()
    record = json.loads((run_dir / "run.json").read_text())
    entry = record["compliance"]["TEST01"]
    assert entry["accuracy_pass"] == ("TEST PASS" in verify_acc)
    # When answers differ in their last bits (the 45 samples repeat in a 10,833-sample query, so they are
    # batched with different neighbours), the official fallback compares accuracy on the sampled features.
    assert abs(entry["baseline"]["f1"] - entry["compliance"]["f1"]) < 1.0


def test_compliance_needs_the_submission_runs(tmp_path, tiny_checkpoint, small_squad):
    res = _run(
        "--model-path",
        tiny_checkpoint,
        "--dataset-path",
        small_squad,
        "--out",
        tmp_path,
        "--mode",
        "performance",
        "--compliance",
        "TEST01",
        "--user-conf",
        small_conf(tmp_path),
    )
    assert res.exit_code == 2 and "run.compliance_needs_runs" in res.output
    res = _run(
        "--model-path", tiny_checkpoint, "--dataset-path", small_squad, "--out", tmp_path, "--compliance", "TEST06"
    )
    assert res.exit_code == 2 and "run.compliance" in res.output


def _entries(path, items):
    path.write_text(json.dumps([{"seq_id": i, "qsl_idx": q, "data": d} for i, (q, d) in enumerate(items)]))
    return path


def test_verify_accuracy_fails_on_a_changed_or_unknown_answer(tmp_path):
    ref = _entries(tmp_path / "ref.json", [(0, "00ff"), (1, "0101"), (2, "abcd")])
    same = _entries(tmp_path / "same.json", [(2, "abcd"), (0, "00ff")])
    changed = _entries(tmp_path / "changed.json", [(2, "abce")])
    unknown = _entries(tmp_path / "unknown.json", [(7, "abcd")])
    assert compliance.verify_accuracy(ref, same).passed
    assert not compliance.verify_accuracy(ref, changed).passed
    assert not compliance.verify_accuracy(ref, unknown).passed
    assert "TEST FAIL" in compliance.verify_accuracy(ref, changed).text


def _detail(path, scenario, score, validity="VALID"):
    field = {"Offline": "result_samples_per_second", "SingleStream": "early_stopping_latency_ss"}[scenario]
    lines = [
        {"key": "effective_scenario", "value": scenario},
        {"key": field, "value": score},
        {"key": "result_validity", "value": validity},
    ]
    return write_detail_log(path, lines)


@pytest.mark.parametrize(
    "scenario,ref,test,ok",
    [
        ("Offline", 1000.0, 950.0, True),
        ("Offline", 1000.0, 880.0, False),
        ("Offline", 1000.0, 1099.0, True),
        ("SingleStream", 100000.0, 119000.0, True),  # fast SingleStream: 20 % tolerance
        ("SingleStream", 300000.0, 340000.0, False),
    ],
)
def test_verify_performance_tolerance(tmp_path, scenario, ref, test, ok):
    r = _detail(tmp_path / "r.txt", scenario, ref)
    t = _detail(tmp_path / "t.txt", scenario, test)
    assert compliance.verify_performance(r, t).passed is ok


def test_verify_performance_fails_an_invalid_run(tmp_path):
    r = _detail(tmp_path / "r.txt", "Offline", 1000.0)
    t = _detail(tmp_path / "t.txt", "Offline", 1000.0, validity="INVALID")
    assert not compliance.verify_performance(r, t).passed


# On the instant SUT (no model time: the fastest hardware there is). Offline runs every probe size there is (none
# lasts PROBE_MIN_SECONDS) in seconds, where the tiny model took 24 s in CI. SingleStream failed there once: its
# probe expected 1 ms a query and LoadGen ran out of queries; the session now sizes it to the SUT.
@pytest.mark.parametrize(
    "scenario,key,instant", [("Offline", "target_qps", True), ("SingleStream", "target_latency", True)]
)
def test_find_perf_writes_the_user_conf_for_the_full_run(
    tmp_path, tiny_checkpoint, small_squad, request, scenario, key, instant
):
    backend = ["--backend", request.getfixturevalue("instant_backend")] if instant else []
    res = _run(
        "--model-path",
        tiny_checkpoint,
        "--dataset-path",
        small_squad,
        "--out",
        tmp_path,
        *backend,
        "--scenario",
        scenario,
        "--find-perf",
        "--json",
    )
    assert res.exit_code == 0, res.output
    conf = (tmp_path / "bert-99" / f"{scenario}.user.conf").read_text()
    line = [ln for ln in conf.splitlines() if ln.startswith(f"bert.{scenario}.{key} = ")]
    assert line and float(line[0].split("=")[1]) > 0
    if scenario == "SingleStream":  # ms, as user.conf reads it: an instant SUT answers in well under 1 ms, not 10⁵
        assert float(line[0].split("=")[1]) < 1.0
    assert not (tmp_path / "bert-99" / scenario).exists()  # probes leave no run directory behind


def test_multistream_runs(tmp_path, tiny_checkpoint, small_squad):
    res = _run(
        "--model-path",
        tiny_checkpoint,
        "--dataset-path",
        small_squad,
        "--out",
        tmp_path,
        "--scenario",
        "MultiStream",
        "--mode",
        "performance",
        "--target-latency-ms",
        "0.5",
        "--min-duration-ms",
        "1500",
    )
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "bert-99/MultiStream/run.json").read_text())
    perf = record["modes"]["performance"]
    values = read_detail_log(tmp_path / "bert-99/MultiStream/performance/run_1/mlperf_log_detail.txt")
    assert perf["result_validity"] == "VALID" == values["result_validity"] and values["early_stopping_met"] is True
    assert perf["result"] > 0 and perf["result"] == pytest.approx(float(values["early_stopping_latency_ms"]) / 1e6)


def _verify_numbers(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.rpartition(" = ")
        if sep and value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def _score(text: str, name: str) -> float:
    return float(next(ln for ln in text.splitlines() if ln.startswith(name + " = ")).split(" = ")[1])


def _test01_run(tmp_path, tiny_checkpoint, small_squad, backend, *extra):
    res = _run(
        "--model-path",
        tiny_checkpoint,
        "--dataset-path",
        small_squad,
        "--out",
        tmp_path,
        "--backend",
        backend,
        "--compliance",
        "TEST01",
        *extra,
    )
    assert res.exit_code == 0, res.output
    run_dir = tmp_path / "bert-99" / "Offline"
    return run_dir, json.loads((run_dir / "run.json").read_text())


def test_test01_passes_with_the_verification_numbers(instant_test01_run):
    """A SUT whose answers do not depend on the mode: every response TEST01 sampled equals the accuracy run's,
    and the verification counts them against the accuracy run's own log (45 answers), not against itself."""
    run_dir = instant_test01_run  # `run --backend instant --compliance TEST01` (tests/runner/conftest.py)
    record = json.loads((run_dir / "run.json").read_text())
    sampled = json.loads((run_dir / "TEST01/accuracy/mlperf_log_accuracy.json").read_text())
    verify = (run_dir / "TEST01/verify_accuracy.txt").read_text()
    numbers = _verify_numbers(verify)
    assert len(sampled) > 45 and numbers == {
        "accuracy run entries": 45,
        "accuracy run duplicate qsl_idx": 0,
        "compliance run entries": len(sampled),
        "compliance run qsl_idx matched": len(sampled),
        "compliance run data mismatch": 0,
        "compliance run qsl_idx missing from the accuracy run": 0,
    }
    assert verify.rstrip().endswith("TEST PASS")
    perf = (run_dir / "TEST01/verify_performance.txt").read_text()
    entry = record["compliance"]["TEST01"]
    assert entry["accuracy_pass"] is True
    # the reference is the submission's performance run, the test score the audited run's (an instant SUT's
    # rate follows the machine's load, so whether they agree within 10 % is not for this test to say)
    ref, test = _score(perf, "Reference score"), _score(perf, "Test score")
    assert ref == record["modes"]["performance"]["result"] and test == entry["result"]
    # the verifier's rule: both runs VALID and the scores within 10 % (an audited run can be INVALID under load
    # even when its score is close: seen at 5.5 % on a loaded CI machine)
    audited = (run_dir / "TEST01/performance/run_1/mlperf_log_detail.txt").read_text()
    valid = '"key": "result_validity", "value": "VALID"' in audited
    assert entry["performance_pass"] is (valid and abs(test / ref - 1) <= 0.10)
    # an instant SUT's audited run may end outside the tolerance or INVALID (it is not re-sized); either is a FAIL
    assert perf.rstrip().endswith("TEST PASS") if entry["performance_pass"] else "TEST FAIL" in perf


def test_test01_fails_when_the_accuracy_run_answered_differently(
    tmp_path, tiny_checkpoint, small_squad, instant_backend, instant_test01_run
):
    """The accuracy run's answers differ from what the SUT answers in performance mode (the cheat TEST01
    exists to catch): the verification FAILs, counting every sampled response as a mismatch."""
    run_dir = tmp_path / "bert-99" / "Offline"
    shutil.copytree(instant_test01_run, run_dir)  # the finished run of test_test01_passes_with_the_verification_numbers
    acc_log = run_dir / "accuracy/mlperf_log_accuracy.json"
    entries = json.loads(acc_log.read_text())
    for e in entries:  # other logits than the SUT gives now: 0x3f800000 (1.0) for the first float
        e["data"] = "0000803f" + e["data"][8:]
    acc_log.write_text(json.dumps(entries))
    run_dir, record = _test01_run(tmp_path, tiny_checkpoint, small_squad, instant_backend, "--mode", "performance")
    sampled = json.loads((run_dir / "TEST01/accuracy/mlperf_log_accuracy.json").read_text())
    verify = (run_dir / "TEST01/verify_accuracy.txt").read_text()
    numbers = _verify_numbers(verify)
    assert numbers["compliance run data mismatch"] == len(sampled) > 0
    assert numbers["compliance run qsl_idx matched"] == 0 and verify.rstrip().endswith("TEST FAIL")
    assert record["compliance"]["TEST01"]["accuracy_pass"] is False
