"""What the test-tree generators share: real LoadGen runs of an instant SUT, and the system/measurements JSON.

`run_loadgen(jobs)` runs each job in a fresh process, all at once: LoadGen counts FromConfig calls per process
("Multiple conf files are used" from the second one), so one process loads one user.conf and then makes that
job's runs one after another. Run as a script, this module is that process: `python loadgen_trees.py SPEC_JSON`.
"""

from __future__ import annotations

import array
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# What the instant SUT answers: 16 int32 "tokens" (token answers need whole int32 tokens), or 8 zero bytes.
TOKEN_ANSWER = array.array("i", range(1, 17)).tobytes()
ZERO_ANSWER = bytes(8)

# Every field the official checker requires in systems/<system>.json, in the order the trees write them.
_SYSTEM = {
    "division": "open",
    "submitter": "TeamX",
    "status": "available",
    "system_name": "TeamX test box",
    "number_of_nodes": "1",
    "host_processor_model_name": "Test CPU",
    "host_processors_per_node": "1",
    "host_processor_core_count": "2",
    "host_memory_capacity": "24 GB",
    "host_storage_capacity": "100 GB",
    "host_storage_type": "SSD",
    "accelerators_per_node": "0",
    "accelerator_model_name": "N/A",
    "accelerator_memory_capacity": "N/A",
    "framework": "PyTorch 2.4",
    "operating_system": "Ubuntu 22.04",
    "system_type": "edge",
    "other_software_stack": "Python 3.11",
    "host_processor_frequency": "3 GHz",
    "host_processor_caches": "32 MB",
    "host_memory_configuration": "2x12 GB",
    "host_processor_interconnect": "N/A",
    "host_networking": "Ethernet",
    "host_networking_topology": "N/A",
    "accelerator_frequency": "N/A",
    "accelerator_host_interconnect": "N/A",
    "accelerator_interconnect": "N/A",
    "accelerator_interconnect_topology": "N/A",
    "accelerator_memory_configuration": "N/A",
    "accelerator_on-chip_memories": "N/A",
    "cooling": "air",
    "hw_notes": "",
    "sw_notes": "",
    "host_network_card_count": "1",
    "system_type_detail": "workstation",
}
MEASUREMENTS = {
    "input_data_types": "int32",
    "retraining": "No",
    "starting_weights_filename": "model.pt",
    "weight_data_types": "fp32",
    "weight_transformations": "none",
}


def system_json(**overrides: str) -> dict:
    """A complete system description (a 2-CPU edge box in the open division) with `overrides` applied.

    Field names with a dash (accelerator_on-chip_memories) go through `**{...}`. An unknown field is a typo here,
    so it raises KeyError; tests that want extra or missing fields edit the returned dict.
    """
    unknown = set(overrides) - set(_SYSTEM)
    if unknown:
        raise KeyError(f"not system description fields: {sorted(unknown)}")
    return {**_SYSTEM, **overrides}


@dataclass(frozen=True)
class LoadGenJob:
    """One LoadGen process: load `user_conf` once, then make `runs` in order.

    runs: (mode, outdir, delay) with mode performance | accuracy; delay = seconds the SUT waits before answering
    each query (an Offline run answered after min_duration is VALID, one answered at once INVALID).
    settings / seeds: TestSettings attributes set after FromConfig (what user.conf cannot express; another
    round's seeds).
    """

    conf_model: str
    scenario: str
    user_conf: Path
    runs: tuple[tuple[str, Path, float], ...]
    total: int = 10833
    perf_count: int | None = None
    tokens: bool = False
    answer: bytes = TOKEN_ANSWER
    settings: dict = field(default_factory=dict)
    seeds: dict = field(default_factory=dict)

    def spec(self) -> str:
        return json.dumps(
            {
                "conf_model": self.conf_model,
                "scenario": self.scenario,
                "user_conf": str(self.user_conf),
                "runs": [[mode, str(outdir), delay] for mode, outdir, delay in self.runs],
                "total": self.total,
                "perf_count": self.perf_count or self.total,
                "tokens": self.tokens,
                "answer": self.answer.hex(),
                "settings": {**self.settings, **self.seeds},
            }
        )


def run_loadgen(jobs: list[LoadGenJob], *, timeout: float = 300) -> None:
    """Run every job in its own fresh process (concurrently); RuntimeError with LoadGen's stderr if one fails."""
    procs = [
        (
            job,
            subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), job.spec()],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for job in jobs
    ]
    failures = []
    for job, proc in procs:
        _out, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            failures.append(f"{job.conf_model} {job.scenario} → {job.runs[0][1]}: {err[-2000:]}")
    if failures:
        raise RuntimeError("LoadGen run failed: " + "\n".join(failures))


def _worker(spec: dict) -> None:
    import mlperf_loadgen as lg

    scenario = spec["scenario"]
    answer = array.array("B", bytes.fromhex(spec["answer"]))
    ptr, nbytes = answer.buffer_info()
    token = 4  # bytes of one int32 token
    state = {"delay": 0.0}

    def issue(samples):
        if state["delay"]:
            time.sleep(state["delay"])
        if spec["tokens"]:
            lg.FirstTokenComplete([lg.QuerySampleResponse(s.id, ptr, token, 1) for s in samples])
            lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, ptr, nbytes, nbytes // token) for s in samples])
        else:
            lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, ptr, nbytes) for s in samples])

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(spec["total"], spec["perf_count"], lambda s: None, lambda s: None)
    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, scenario)
    rc = settings.FromConfig(spec["user_conf"], spec["conf_model"], scenario)
    if rc != 0:
        raise SystemExit(f"FromConfig failed: {rc}")
    for key, value in spec["settings"].items():
        setattr(settings, key, value)
    for mode, outdir, delay in spec["runs"]:
        Path(outdir).mkdir(parents=True, exist_ok=True)
        state["delay"] = delay
        settings.mode = lg.TestMode.PerformanceOnly if mode == "performance" else lg.TestMode.AccuracyOnly
        if mode == "accuracy" and scenario == "Server":
            settings.server_target_qps = 1e6  # accuracy mode issues the whole data set; do it quickly
        log = lg.LogSettings()
        log.log_output.outdir = outdir
        log.log_output.copy_summary_to_stdout = False
        log.enable_trace = False
        # an audit.config in the working directory would turn the run into a compliance test
        lg.StartTestWithLogSettings(sut, qsl, settings, log, str(Path(outdir) / "no-audit.config"))
        time.sleep(0.01)
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))
