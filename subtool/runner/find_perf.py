"""`subtool run --find-perf`: measure the SUT with short probe runs and write the user.conf for the full run.

Teams do this by hand today: guess target_qps, run, read the summary, edit user.conf, run again. The probes are
ordinary LoadGen performance runs (in a scratch directory) that grow until they last long enough to be a fair
measurement; the Server target is then checked with real Server runs and lowered until LoadGen calls it VALID.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.fsutil import atomic_write_text
from subtool.runner.api import RunOptions, decide, run_decided

PROBE_MIN_SECONDS = 3.0
OFFLINE_PROBE_SAMPLES = (64, 512, 4096)
SERVER_START_FRACTION = 0.8  # of the Offline throughput
SERVER_STEP_DOWN = 0.8
SERVER_TRIES = 4


def _probe(opts: RunOptions, scratch: Path, conf_lines: list[str], console) -> dict:
    conf = scratch / "probe.user.conf"
    conf.write_text("\n".join(conf_lines) + "\n")
    probe_opts = dataclasses.replace(
        opts, mode="performance", out=scratch / "runs", user_conf=conf, run_style="short", compliance=[]
    )
    record = run_decided(probe_opts, lambda *a, **k: None)
    perf = record["modes"]["performance"]
    seconds = float(perf.get("seconds") or 0.0)
    if console is not None:
        console.print(
            f"  probe: {perf['result_field']} = {perf['result']} ({perf['result_validity']}, {seconds:.1f} s)"
        )
    return {"result": perf["result"], "validity": perf["result_validity"], "seconds": seconds}


def find_performance(opts: RunOptions, console=None) -> dict:
    """Probe runs (round, backend and precision decided once, for all of them), then the user.conf."""
    from subtool.runner.workload import get_workload

    say = console.print if console is not None else (lambda *a, **k: None)
    opts = decide(opts, say)
    spec = get_workload(opts.model).spec
    say(f"find-perf: probing {spec.name} {opts.scenario} …")
    probes: list[dict] = []
    scratch = Path(tempfile.mkdtemp(prefix="subtool-find-perf-"))
    try:
        if opts.scenario in ("Offline", "Server"):
            throughput = _offline_throughput(opts, spec, scratch, probes, console)
            if opts.scenario == "Offline":
                found = {"target_qps": round(throughput, 2)}
            else:
                found = {"target_qps": round(_server_qps(opts, spec, throughput, scratch, probes, console), 2)}
        else:
            found = {"target_latency": _latency_ms(opts, spec, scratch, probes, console)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _write_conf(opts, spec, found, probes, say)


def _offline_throughput(opts: RunOptions, spec, scratch: Path, probes: list, console) -> float:
    """Offline probes of growing size until one lasts PROBE_MIN_SECONDS (or holds the whole data set)."""
    lg, throughput = spec.loadgen_model, None
    for n in OFFLINE_PROBE_SAMPLES:
        n = min(n, spec.sample_count)
        p = _probe(
            dataclasses.replace(opts, scenario="Offline"),
            scratch,
            [
                f"{lg}.Offline.target_qps = {n / 1.1:.3f}",
                f"{lg}.Offline.min_duration = 1",
                # LoadGen's built-in conf sets a floor of one full data set per Offline query
                f"{lg}.Offline.min_query_count = {n}",
            ],
            console,
        )
        probes.append({"scenario": "Offline", "samples": n, **p})
        throughput = p["result"]
        if p["seconds"] >= PROBE_MIN_SECONDS or n >= spec.sample_count:
            break
    if not throughput:
        raise SubtoolError("the probe runs measured no throughput", rule="run.find_perf")
    return throughput


def _server_qps(opts: RunOptions, spec, throughput: float, scratch: Path, probes: list, console) -> float:
    """Server runs from SERVER_START_FRACTION of the Offline throughput down, until LoadGen calls one VALID."""
    lg, qps = spec.loadgen_model, throughput * SERVER_START_FRACTION
    for _ in range(SERVER_TRIES):
        p = _probe(
            dataclasses.replace(opts, scenario="Server"),
            scratch,
            [
                f"{lg}.Server.target_qps = {qps:.3f}",
                f"{lg}.Server.min_duration = 5000",
                f"{lg}.Server.min_query_count = {max(100, int(qps * 5))}",
            ],
            console,
        )
        probes.append({"scenario": "Server", "target_qps": qps, **p})
        if p["validity"] == "VALID":
            return qps
        qps *= SERVER_STEP_DOWN
    raise SubtoolError(
        f"no VALID Server run down to {qps:.1f} queries/s",
        rule="run.find_perf",
        hint="the SUT cannot meet the latency bound; try a smaller --batch-size",
    )


def _latency_ms(opts: RunOptions, spec, scratch: Path, probes: list, console) -> float:
    """One stream-scenario probe: its latency, in ms."""
    lg, scenario = spec.loadgen_model, opts.scenario
    p = _probe(
        opts,
        scratch,
        [
            f"{lg}.{scenario}.target_latency = 1",
            f"{lg}.{scenario}.min_duration = 2000",
            f"{lg}.{scenario}.min_query_count = 64",
        ],
        console,
    )
    probes.append({"scenario": scenario, **p})
    return round(float(p["result"]) / 1e6, 3)  # ns → ms


def _write_conf(opts: RunOptions, spec, found: dict, probes: list, say) -> dict:
    scenario, lg = opts.scenario, spec.loadgen_model
    conf_path = Path(opts.out) / spec.name / f"{scenario}.user.conf"
    lines = [f"# found by subtool run --find-perf ({len(probes)} probe runs)"]
    lines += [f"{lg}.{scenario}.{key} = {value}" for key, value in found.items()]
    atomic_write_text(conf_path, "\n".join(lines) + "\n")
    say(f"find-perf: {', '.join(f'{k} = {v}' for k, v in found.items())} → {conf_path}")
    say(f"  next: subtool run --model {spec.name} --scenario {scenario} --user-conf {conf_path} --run-style valid")
    return {"model": spec.name, "scenario": scenario, "found": found, "user_conf": str(conf_path), "probes": probes}
