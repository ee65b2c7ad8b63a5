"""`subtool run --find-perf`: measure the SUT with short probe runs and write the user.conf for the full run.

Teams do this by hand today: guess target_qps, run, read the summary, edit user.conf, run again. The probes are
ordinary LoadGen performance runs (in a scratch directory), one line each on the console:

- Offline: runs that grow until one lasts long enough to be a fair measurement; its throughput is the target.
- Server / Interactive: a search for the highest load that is VALID — LoadGen's own verdict (its early-stopping
  estimate over the latency bound or, for the LLMs, over the TTFT/TPOT limits) and, for the LLMs, the p99 TTFT
  and TPOT below the round's limits (the checker's rule). It starts below the Offline throughput, steps down
  until a load holds, then bisects between the highest VALID and the lowest INVALID load, MAX_LOAD_PROBES runs
  at most.
- SingleStream / MultiStream: one short run sized to the SUT by the session (runner/sizing.py), however fast it
  is; its early-stopping latency is the target.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.fsutil import atomic_write_text
from subtool.mlperf.round import LLM_TOKEN_LIMITS, loadgen_names
from subtool.mlperf.user_conf import LEAST
from subtool.runner.api import RunOptions, decide, run_decided
from subtool.runner.harness import EQUAL_ISSUE_MODELS, SHORT_MIN_QUERIES

PROBE_MIN_SECONDS = 3.0
OFFLINE_PROBE_SAMPLES = (64, 512, 4096)
LOAD_START_FRACTION = 0.8  # of the Offline throughput: the first Server / Interactive load
LOAD_STEP_DOWN = 0.6  # below an INVALID load, while none was VALID
MAX_LOAD_PROBES = 6  # Server / Interactive runs at most
LOAD_PRECISION = 0.05  # stop bisecting once the INVALID load is within 5 % of the VALID one
LOAD_PROBE_MS = 5000  # each load probe's minimum duration, unless --min-duration-ms says otherwise
STREAM_PROBE_MS = 2000


@dataclasses.dataclass
class Probe:
    """What one probe run measured: the result (in run.json's units), LoadGen's verdict, the checker's token
    limits verdict (None: not an LLM load run), the rate it answered (samples/s), and the p99 token latencies."""

    result: float | None
    validity: str
    seconds: float
    samples_per_second: float | None = None
    ttft_p99: float | None = None
    tpot_p99: float | None = None
    within_limits: bool | None = None

    @property
    def valid(self) -> bool:
        return self.validity == "VALID" and self.within_limits is not False


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
        if opts.scenario == "Offline":
            found = {"target_qps": _qps(_offline_throughput(opts, spec, scratch, probes, say))}
        elif opts.scenario in ("Server", "Interactive"):
            throughput = _offline_throughput(opts, spec, scratch, probes, say)
            found = {"target_qps": _qps(_highest_valid_load(opts, spec, throughput, scratch, probes, say))}
        else:
            found = {"target_latency": _stream_latency_ms(opts, scratch, probes, say)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _write_conf(opts, spec, found, probes, say)


def _probe(opts: RunOptions, scratch: Path, conf: dict | None) -> Probe:
    """One performance run in the scratch folder: with `conf` as its user.conf (LoadGen's names: {key: value}),
    or, with None, with a short run's own settings, which the session sizes to the SUT."""
    user_conf = None
    if conf is not None:
        user_conf = scratch / "probe.user.conf"
        user_conf.write_text("".join(f"{key} = {value}\n" for key, value in conf.items()))
    probe_opts = dataclasses.replace(
        opts,
        mode="performance",
        out=scratch / "runs",
        user_conf=user_conf,
        run_style="short",
        compliance=[],
        quiet=True,
    )
    record = run_decided(probe_opts, lambda *a, **k: None)
    perf = record["modes"]["performance"]
    limits = LLM_TOKEN_LIMITS.get(opts.model, {}).get(opts.scenario)
    probe = Probe(
        result=perf.get("result"),
        validity=str(perf.get("result_validity")),
        seconds=float(perf.get("seconds") or 0.0),
        samples_per_second=perf.get("samples_per_second", perf.get("result")),
        ttft_p99=(perf.get("ttft_ms") or {}).get("p99"),
        tpot_p99=(perf.get("tpot_ms") or {}).get("p99"),
    )
    if limits is not None and opts.scenario in ("Server", "Interactive"):
        ttft_ok = probe.ttft_p99 is not None and probe.ttft_p99 * 1e6 < limits[0]
        tpot_ok = probe.tpot_p99 is not None and probe.tpot_p99 * 1e6 < limits[1]
        probe.within_limits = ttft_ok and tpot_ok
    return probe


def _keys(opts: RunOptions, spec, scenario: str, settings: dict) -> dict:
    """user.conf keys for `scenario` under the LoadGen names of the run (Interactive: the -interactive model)."""
    model, lg_scenario = loadgen_names(spec.loadgen_model, scenario)
    return {f"{model}.{lg_scenario}.{key}": value for key, value in settings.items()}


def _offline_throughput(opts: RunOptions, spec, scratch: Path, probes: list, say) -> float:
    """Offline probes of growing size until one lasts PROBE_MIN_SECONDS (or holds the whole data set): the
    samples/s the SUT answers (tokens/s is the LLMs' result, not their load)."""
    throughput = None
    offline = dataclasses.replace(opts, scenario="Offline")
    for n in OFFLINE_PROBE_SAMPLES:
        n = min(n, spec.sample_count)
        # LoadGen's built-in conf sets a floor of one full data set per Offline query
        settings = {"target_qps": f"{n / 1.1:.6g}", "min_duration": 1, "min_query_count": n}
        p = _probe(offline, scratch, _keys(opts, spec, "Offline", settings))
        throughput = p.samples_per_second
        probes.append({"scenario": "Offline", "samples": n, **dataclasses.asdict(p)})
        say(f"  probe {len(probes)}: Offline {n} samples → {throughput or 0:.3f} samples/s ({p.seconds:.1f} s)")
        if p.seconds >= PROBE_MIN_SECONDS or n >= spec.sample_count:
            break
    if not throughput:
        raise SubtoolError("the probe runs measured no throughput", rule="run.find_perf")
    if throughput < LEAST["target_qps"]:
        raise SubtoolError(
            f"the SUT answered {throughput:.3g} samples/s, below the {LEAST['target_qps']:g} queries/s a run can be "
            "paced at: a Server run at that load would not end",
            rule="run.find_perf",
            hint="make the SUT faster (a larger --batch-size, more --threads, a GPU backend) before sizing a run",
        )
    return float(throughput)


def _qps(value: float) -> float:
    """A load as user.conf takes it and a probe ran it: 6 significant digits, never below LEAST (round(…, 3) wrote
    0.0 for a slow SUT, which the next run refuses and which ran a machine out of memory)."""
    return max(float(f"{value:.6g}"), LEAST["target_qps"])


def _load_settings(opts: RunOptions, spec, qps: float) -> dict:
    duration = opts.min_duration_ms or LOAD_PROBE_MS
    settings: dict = {
        "target_qps": f"{qps:.6g}",
        "min_duration": duration,
        # enough queries for LoadGen's early-stopping estimate, and for the duration at this load
        "min_query_count": max(SHORT_MIN_QUERIES["Server"], int(qps * duration / 1000)),
    }
    if spec.loadgen_model in EQUAL_ISSUE_MODELS:
        settings["sample_concatenate_permutation"] = 0  # else every probe issues whole copies of the data set
    return settings


def _highest_valid_load(opts: RunOptions, spec, throughput: float, scratch: Path, probes: list, say) -> float:
    """The highest VALID Server / Interactive load (queries/s), MAX_LOAD_PROBES runs at most."""

    def probe_at(qps: float) -> Probe:
        p = _probe(opts, scratch, _keys(opts, spec, opts.scenario, _load_settings(opts, spec, qps)))
        probes.append({"scenario": opts.scenario, "target_qps": _qps(qps), **dataclasses.asdict(p)})
        say(_load_line(len(probes), opts.scenario, qps, p))
        return p

    best, tried = search_load(probe_at, throughput, floor=LEAST["target_qps"])
    if best is None:
        raise SubtoolError(
            f"no VALID {opts.scenario} load down to {min(tried, default=LEAST['target_qps']):.3g} queries/s in "
            f"{len(tried)} probes",
            rule="run.find_perf",
            hint="the SUT cannot meet the latency limits at these loads; try a smaller --batch-size",
        )
    return best


def search_load(
    probe_at, ceiling: float, max_probes: int | None = None, floor: float = 0.0
) -> tuple[float | None, list[float]]:
    """The highest load `probe_at(qps).valid` holds for, searched below `ceiling` (the Offline rate): start at
    LOAD_START_FRACTION of it, step down until one holds (or up while all hold), then bisect between the highest
    VALID and the lowest INVALID load until they are within LOAD_PRECISION. At most `max_probes` probes
    (MAX_LOAD_PROBES), none below `floor` (a load no run can be paced at: a probe there would not end); returns
    (that load or None, the loads tried)."""
    valid, invalid, tried = 0.0, None, []
    qps: float | None = ceiling * LOAD_START_FRACTION
    for _ in range(max_probes or MAX_LOAD_PROBES):
        if qps < floor:
            break
        tried.append(qps)
        if probe_at(qps).valid:
            valid = max(valid, qps)
        else:
            invalid = qps if invalid is None else min(invalid, qps)
        if invalid is None:  # every load held so far: up, to the Offline rate at most
            qps = min(qps * 1.2, ceiling) if qps < ceiling else None
        elif not valid:
            qps = qps * LOAD_STEP_DOWN
        elif invalid / valid - 1 > LOAD_PRECISION:
            qps = (valid + invalid) / 2
        else:
            qps = None
        if qps is None:
            break
    return (valid or None), tried


def _load_line(n: int, scenario: str, qps: float, p: Probe) -> str:
    verdict = "VALID" if p.valid else "INVALID"
    if p.validity != "VALID":
        verdict += " (LoadGen)"
    elif p.within_limits is False:
        verdict += " (TTFT/TPOT p99 over the limits)"
    tokens = ""
    if p.ttft_p99 is not None or p.tpot_p99 is not None:
        tokens = f", TTFT p99 {_ms(p.ttft_p99)}, TPOT p99 {_ms(p.tpot_p99)}"
    return f"  probe {n}: {scenario} {qps:.3f} queries/s → {verdict}{tokens} ({p.seconds:.1f} s)"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g} ms"


def _stream_latency_ms(opts: RunOptions, scratch: Path, probes: list, say) -> float:
    """One SingleStream / MultiStream short run, sized to the SUT by the session (an instant SUT would run out of
    queries under any fixed expected latency): its early-stopping latency, ms."""
    run_opts = dataclasses.replace(
        opts, target_latency_ms=None, min_duration_ms=opts.min_duration_ms or STREAM_PROBE_MS
    )
    p = _probe(run_opts, scratch, None)
    probes.append({"scenario": opts.scenario, **dataclasses.asdict(p)})
    say(f"  probe {len(probes)}: {opts.scenario} → {_ms(p.result)} ({p.validity}, {p.seconds:.1f} s)")
    if not p.result:
        raise SubtoolError("the probe run measured no latency", rule="run.find_perf")
    return round(float(p.result), 6)  # run.json keeps the latency scenarios' results in ms


def _write_conf(opts: RunOptions, spec, found: dict, probes: list, say) -> dict:
    scenario = opts.scenario
    conf_path = Path(opts.out) / spec.name / f"{scenario}.user.conf"
    lines = [f"# found by subtool run --find-perf ({len(probes)} probe runs)"]
    lines += [f"{key} = {value}" for key, value in _keys(opts, spec, scenario, found).items()]
    atomic_write_text(conf_path, "\n".join(lines) + "\n")
    say(f"find-perf: {', '.join(f'{k} = {v}' for k, v in found.items())} → {conf_path}")
    say(f"  next: subtool run --model {spec.name} --scenario {scenario} --user-conf {conf_path} --run-style valid")
    return {"model": spec.name, "scenario": scenario, "found": found, "user_conf": str(conf_path), "probes": probes}
