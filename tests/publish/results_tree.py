"""A real, checkable submitter directory for the `subtool ci` tests: bert-99 Offline logs from LoadGen.

LoadGen runs an instant SUT for a short run in a child process (LoadGen keeps per-process state); the logs
are laid out by hand as `<division>/<submitter>/…`, so these tests do not depend on `subtool package`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

LOADGEN_RUN = r"""
import array, sys, time
from pathlib import Path
import mlperf_loadgen as lg
out, mode = Path(sys.argv[1]), sys.argv[2]
out.mkdir(parents=True, exist_ok=True)
conf = out / "user.conf"
conf.write_text("bert.Offline.min_duration = 50\nbert.Offline.target_qps = 100000\n")
settings = lg.TestSettings()
settings.FromConfig(str(conf), "bert", "Offline")
settings.scenario = lg.TestScenario.Offline
settings.mode = lg.TestMode.PerformanceOnly if mode == "performance" else lg.TestMode.AccuracyOnly
payload = array.array("B", [0] * 8)
addr, size = payload.buffer_info()
def issue(queries):
    if mode == "performance":
        time.sleep(0.07)   # past min_duration, so that LoadGen calls the result VALID
    lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, addr, size) for q in queries])
sut = lg.ConstructSUT(issue, lambda: None)
qsl = lg.ConstructQSL(10833, 10833, lambda s: None, lambda s: None)
log = lg.LogSettings()
log.log_output.outdir = str(out)
log.log_output.copy_summary_to_stdout = False
log.enable_trace = False
lg.StartTestWithLogSettings(sut, qsl, settings, log)
lg.DestroyQSL(qsl)
lg.DestroySUT(sut)
"""

SYSTEM = {
    "division": "open", "submitter": "TeamX", "status": "available", "system_name": "TeamX test box",
    "number_of_nodes": "1", "host_processor_model_name": "Test CPU", "host_processors_per_node": "1",
    "host_processor_core_count": "2", "host_memory_capacity": "24 GB", "host_storage_capacity": "100 GB",
    "host_storage_type": "SSD", "accelerators_per_node": "0", "accelerator_model_name": "N/A",
    "accelerator_memory_capacity": "N/A", "framework": "PyTorch", "operating_system": "Debian 12",
    "system_type": "edge", "other_software_stack": "Python 3.11", "host_processor_frequency": "3 GHz",
    "host_processor_caches": "32 MB", "host_memory_configuration": "2x12 GB", "host_processor_interconnect": "N/A",
    "host_networking": "Ethernet", "host_networking_topology": "N/A", "accelerator_frequency": "N/A",
    "accelerator_host_interconnect": "N/A", "accelerator_interconnect": "N/A",
    "accelerator_interconnect_topology": "N/A", "accelerator_memory_configuration": "N/A",
    "accelerator_on-chip_memories": "N/A", "cooling": "air", "hw_notes": "", "sw_notes": "",
    "host_network_card_count": "1", "system_type_detail": "workstation",
}
MEASUREMENTS = {"input_data_types": "int32", "retraining": "No", "starting_weights_filename": "bert.pt",
                "weight_data_types": "fp32", "weight_transformations": "none"}


def loadgen_logs(root: Path) -> Path:
    procs = [subprocess.Popen([sys.executable, "-c", LOADGEN_RUN, str(root / mode), mode],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for mode in ("performance", "accuracy")]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"LoadGen run failed: {err.decode()[-2000:]}")
    return root


def lay_out_submitter(repo: Path, logs: Path, division: str, submitter: str, system: str = "box") -> Path:
    """`<division>/<submitter>/` with one bert-99 Offline result from `logs` (a short run)."""
    sub = repo / division / submitter
    for folder in ("documentation", "src"):
        (sub / folder).mkdir(parents=True, exist_ok=True)
        (sub / folder / "README.md").write_text(f"# {submitter} {folder}\n")
    (sub / "systems").mkdir(exist_ok=True)
    (sub / "systems" / f"{system}.json").write_text(
        json.dumps({**SYSTEM, "division": division, "submitter": submitter}, indent=2) + "\n")
    res = sub / "results" / system / "bert-99" / "Offline"
    (res / "performance" / "run_1").mkdir(parents=True, exist_ok=True)
    (res / "accuracy").mkdir(exist_ok=True)
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
        shutil.copyfile(logs / "performance" / name, res / "performance" / "run_1" / name)
        shutil.copyfile(logs / "accuracy" / name, res / "accuracy" / name)
    full = (logs / "accuracy" / "mlperf_log_accuracy.json").read_bytes()
    short = full[:4096] + b"\n\n...\n\n" + full[-4096:] if len(full) > 8192 else full
    (res / "accuracy" / "mlperf_log_accuracy.json").write_bytes(short)
    digest = hashlib.sha256(full).hexdigest()
    (res / "accuracy" / "accuracy.txt").write_text(f'{{"exact_match": 0.5, "f1": 1.5}}\n\nhash={digest}\n')
    (res / "measurements.json").write_text(json.dumps(MEASUREMENTS, indent=2) + "\n")
    shutil.copyfile(logs / "performance" / "user.conf", res / "user.conf")
    (res / "README.md").write_text("# bert-99 Offline\n")
    return sub
