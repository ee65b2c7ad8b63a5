"""bench/bert_gpu.py --proxy on a CPU, end to end: a tiny proxy trained for real, then subtool's precisions, the
reference-style SUT and transformers' bf16 model each through real LoadGen runs, with their F1 ratios to fp32."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("mlperf_loadgen")

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("proxy")
    train = [sys.executable, str(BENCH / "bert_proxy" / "train.py"), "--shape", "tiny", "--out", str(out)]
    subprocess.run([*train, "--device", "cpu", "--steps", "200", "--minutes", "3"], check=True, capture_output=True)
    return out


def bench(proxy: Path, work: Path, *args: str) -> dict:
    out = work / "proxy.json"
    cmd = [sys.executable, str(BENCH / "bert_gpu.py"), "--proxy", str(proxy), "--device", "cpu", "--work", str(work)]
    cmd += ["--proxy-qps", "200", "--reference-samples", "20", "--out", str(out), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_each_sut_reports_its_speed_and_f1_ratio_with_the_peers_last_and_a_failure_alone(proxy, tmp_path):
    report = bench(proxy, tmp_path, "--precisions", "int3,fp8,bf16")
    failed, *runs = report["runs"]
    assert failed["name"] == "torch-cuda-int3" and "not supported" in failed["failed"]  # and the others go on
    names = [r["name"] for r in runs]
    assert names == ["torch-cuda-fp8", "torch-cuda-bf16", "reference-fp32-bs1-pad384", "transformers-bf16"]
    fp32 = report["fp32"]["f1"]
    for run in runs:
        # (a CPU finishes the 3-second runs' samples early, so LoadGen may call them INVALID here: not asserted)
        assert run["offline"]["result"] == run["offline_samples_per_s"] > 0, run["name"]
        assert run["f1_ratio"] == pytest.approx(run["f1"] / fp32, abs=1e-5)
        assert run["meets_criterion"] == (run["f1_ratio"] >= 0.99)
    by = {r["name"]: r for r in runs}
    # the reference's F1 is fp32 arithmetic (transformers, not subtool's packed model): within rounding of fp32's
    assert by["reference-fp32-bs1-pad384"]["f1"] == pytest.approx(fp32, abs=2.0)
    assert (
        by["reference-fp32-bs1-pad384"]["batch_size"] == 1 and "accuracy_run_s" not in by["reference-fp32-bs1-pad384"]
    )
    # the reference runs about --reference-samples (batch 1 is slow), the others 3 s at --proxy-qps (x 1.1)
    assert by["transformers-bf16"]["offline"]["generated_samples_per_query"] == 660
    reference = by["reference-fp32-bs1-pad384"]["offline"]
    assert reference["generated_samples_per_query"] <= 100  # LoadGen made 100 of the 20 asked
    assert by["transformers-bf16"]["accuracy_run_s"] > 0  # its F1 comes from its own LoadGen accuracy run
    assert by["torch-cuda-fp8"]["fp8_plan"]["fp8_layers"] or by["torch-cuda-fp8"]["fp8_plan"]["bf16_layers"]
    assert report["auto"]["chosen"] in {"fp32", "fp16", "bf16", "fp8"} and report["auto"]["why"]


@pytest.mark.parametrize("damage", ["nothing", "no record", "garbage record", "list record"])
def test_a_proxy_dir_without_a_usable_record_is_one_line(proxy, tmp_path, damage):
    import shutil

    broken = tmp_path / "proxy"
    if damage != "nothing":
        shutil.copytree(proxy, broken)
        record = broken / "train.json"
        {
            "no record": lambda: record.unlink(),
            "garbage record": lambda: record.write_bytes(b"\xff{"),
            "list record": lambda: record.write_text("[1]"),
        }[damage]()
    cmd = [sys.executable, str(BENCH / "bert_gpu.py"), "--proxy", str(broken), "--device", "cpu"]
    proc = subprocess.run(
        [*cmd, "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o.json")], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert str(broken) in line and ("lacks" in line or "not train.py's JSON record" in line), line
    assert not (tmp_path / "o.json").exists()
