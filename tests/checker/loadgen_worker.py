"""Run real LoadGen for one benchmark/scenario with an instant SUT (test-tree generation only).

One process per benchmark/scenario: LoadGen logs "Multiple conf files are used" from the second FromConfig
call in a process. Usage: python loadgen_worker.py SPEC.json, where SPEC has
  conf_model  the model name LoadGen's mlperf.conf knows (bert, llama2-70b, llama3_1-8b)
  scenario    Offline | SingleStream | Server
  user_conf   path of the user.conf to load
  total       QSL total sample count; perf_count: QSL performance sample count
  tokens      true → answer with FirstTokenComplete + token counts (LLMs)
  runs        [[mode, outdir], …] with mode performance | accuracy
  settings    optional {TestSettings attribute: value}, set after FromConfig
  seeds       optional {qsl_rng_seed: …, …}: set after FromConfig (to produce another round's logs)
"""

from __future__ import annotations

import array
import json
import sys
import time
from pathlib import Path


def main(spec_path: str) -> None:
    import mlperf_loadgen as lg

    spec = json.loads(Path(spec_path).read_text())
    scenario = spec["scenario"]
    tokens = spec.get("tokens", False)
    payload = array.array("i", list(range(1, 17)))   # 16 int32 "tokens" per answer
    ptr, _ = payload.buffer_info()
    nbytes = payload.itemsize * len(payload)
    delay = spec.get("offline_delay_s", 0.0)

    def answer(samples):
        if tokens:
            lg.FirstTokenComplete([lg.QuerySampleResponse(s.id, ptr, payload.itemsize, 1) for s in samples])
            lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, ptr, nbytes, len(payload)) for s in samples])
        else:
            lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, ptr, nbytes) for s in samples])

    def issue(samples):
        if scenario == "Offline" and delay:
            # Offline issues one query; answering after min_duration makes LoadGen's run VALID.
            time.sleep(delay)
        answer(samples)

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(spec["total"], spec["perf_count"], lambda s: None, lambda s: None)
    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, scenario)
    rc = settings.FromConfig(spec["user_conf"], spec["conf_model"], scenario)
    if rc != 0:
        raise SystemExit(f"FromConfig failed: {rc}")
    # Settings user.conf cannot express (sub-millisecond latencies), and another round's seeds.
    for key, value in {**spec.get("settings", {}), **spec.get("seeds", {})}.items():
        setattr(settings, key, value)
    for mode, outdir in spec["runs"]:
        Path(outdir).mkdir(parents=True, exist_ok=True)
        settings.mode = lg.TestMode.PerformanceOnly if mode == "performance" else lg.TestMode.AccuracyOnly
        if mode == "accuracy" and scenario == "Server":
            settings.server_target_qps = 1e6  # accuracy mode issues the whole data set; do it quickly
        log = lg.LogSettings()
        log.log_output.outdir = outdir
        log.log_output.copy_summary_to_stdout = False
        log.enable_trace = False
        lg.StartTestWithLogSettings(sut, qsl, settings, log, str(Path(outdir) / "no-audit.config"))
        time.sleep(0.01)
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)


if __name__ == "__main__":
    main(sys.argv[1])
