"""How long a short run lasts: sized from a quick measurement of the SUT, grown until LoadGen calls it VALID.

A short run keeps every official setting except the 600 s minimum duration (and, for the LLMs' latency
scenarios, equal-issue mode, which makes every run issue the whole data set). Its own minimum duration must
still be met, and the latency scenarios need enough queries for LoadGen's early-stopping estimate, whatever
the hardware: an instant SUT answers a data set's worth of samples in milliseconds, a CPU LLM one query in
seconds. So the session

1. measures the SUT before the run where the scenario's size depends on its speed (`probe`: Server needs its
   throughput, SingleStream/MultiStream its latency; Offline's query is the whole data set anyway), and
2. after each performance run that LoadGen calls INVALID for a reason a bigger run fixes (duration too short,
   too few queries for early stopping, a Server load above what the SUT answers in time), re-sizes the
   settings from what that run measured (`regrow`) and runs again, at most MAX_TRIES times.

The probes are LoadGen runs of their own, in a scratch folder, with fresh settings (no second conf file, which
LoadGen would flag); the settings a run finally used are written back into its user.conf.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from subtool.runner import loadgen_watch
from subtool.runner.harness import OFFLINE_MARGIN

MAX_TRIES = 6
GROW_MARGIN = 1.5  # size for this much more than the measurement says is just enough
PROBE_SECONDS = 0.5  # a probe grows until it lasts this long …
PROBE_MAX_SAMPLES = 1 << 20  # … or holds this many samples
PROBE_FIRST_SAMPLES = 8
SERVER_MAX_QPS = 1000.0  # a short Server run's load: half the measured throughput, at most this
SERVER_LOAD_FRACTION = 0.5
SERVER_STEP_DOWN = 0.5
SERVER_MAX_SECONDS = 90.0  # no Server try is planned to last longer

# LoadGen's TestSettings attribute for each user.conf key subtool writes (target_* depend on the scenario)
_TARGET_ATTR = {
    "Offline": ("offline_expected_qps", 1.0),
    "Server": ("server_target_qps", 1.0),
    "SingleStream": ("single_stream_expected_latency_ns", 1e6),
    "MultiStream": ("multi_stream_expected_latency_ns", 1e6),
}
RAN_OUT = "Ran out of generated queries"  # LoadGen's error when a latency scenario expected a slower SUT
_EARLY_TOTAL = re.compile(r"at least (\d+) queries")
_EARLY_MORE = re.compile(r"at least (\d+) more queries")


@dataclass
class Try:
    """One performance run of a short run: its settings, what LoadGen said, and how long it took."""

    settings: dict
    validity: str | None
    reason: str
    seconds: float

    def to_dict(self) -> dict:
        return {
            "settings": dict(self.settings),
            "validity": self.validity,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
        }


def apply(settings_obj, scenario: str, settings: dict) -> None:
    """Set a loaded TestSettings to the user.conf keys in `settings` (LoadGen's names, no model prefix)."""
    attr, scale = _TARGET_ATTR[scenario]
    for key, value in settings.items():
        if key in ("target_qps", "target_latency"):
            setattr(settings_obj, attr, int(value * scale) if scale != 1.0 else float(value))
        elif key == "min_duration":
            settings_obj.min_duration_ms = int(value)
        elif key == "min_query_count":
            settings_obj.min_query_count = int(value)
        elif key == "sample_concatenate_permutation":
            settings_obj.sample_concatenate_permutation = bool(int(value))


def why_invalid(values: dict) -> str:
    """What a bigger or lighter run would fix, from a detail log's values: "duration", "early_stopping",
    "latency", "queries", or "" (VALID, or INVALID for a reason re-sizing does not fix)."""
    if values.get("result_validity") == "VALID":
        return ""
    if values.get("result_min_duration_met") is False:
        return "duration"
    if values.get("result_min_queries_met") is False:
        return "queries"
    if values.get("result_perf_constraints_met") is False:
        return "latency"
    if values.get("early_stopping_met") is False:
        return "early_stopping"
    return ""


def regrow(scenario: str, settings: dict, values: dict, seconds: float, reason: str) -> dict | None:
    """The next try's settings after an INVALID run, or None when re-sizing cannot help."""
    new = dict(settings)
    duration_s = max(int(settings.get("min_duration") or 0), 1) / 1000.0
    queries = int(values.get("result_query_count") or values.get("generated_query_count") or 0)
    if reason == "duration":
        if scenario == "Offline":
            rate = float(values.get("result_samples_per_second") or 0.0)
            old = float(settings.get("target_qps") or values.get("effective_target_qps") or 1.0)
            needed = rate * GROW_MARGIN / OFFLINE_MARGIN
            new["target_qps"] = _round_up(max(needed, 2.0 * old))
        elif scenario in ("SingleStream", "MultiStream"):
            kind = "single" if scenario == "SingleStream" else "multi"
            requested = values.get(f"requested_{kind}_stream_expected_latency_ns") or 10_000_000
            old_ms = float(settings.get("target_latency") or float(requested) / 1e6)
            shrink = max(duration_s / max(seconds, 1e-6) * GROW_MARGIN, 2.0)
            new_ms = old_ms / shrink
            # SingleStream logs the query rate it kept up, LoadGen's overhead included: the latency to expect
            qps = float(values.get("result_qps_with_loadgen_overhead") or 0.0)
            if qps > 0:
                new_ms = min(1000.0 / (qps * GROW_MARGIN), old_ms / 2.0)
            new["target_latency"] = max(round(new_ms, 6), 1e-6)
        else:
            new["min_query_count"] = max(2 * queries, int(settings.get("min_query_count") or 0) * 2, 64)
    elif reason in ("queries", "early_stopping"):
        text = str(values.get("early_stopping_result") or "")
        need = queries
        more = _EARLY_MORE.search(text)
        total = _EARLY_TOTAL.search(text)
        if more:
            need = queries + int(more.group(1))
        elif total:
            need = int(total.group(1))
        old = int(settings.get("min_query_count") or values.get("effective_min_query_count") or 0)
        new["min_query_count"] = max(int(need * 1.2) + 1, old + 1)
    elif reason == "latency" and scenario == "Server":
        qps = float(settings.get("target_qps") or values.get("effective_target_qps") or 1.0)
        completed = float(values.get("result_completed_samples_per_sec") or qps)
        new["target_qps"] = round(min(qps * SERVER_STEP_DOWN, completed * SERVER_STEP_DOWN), 3)
        # a lighter load makes the run longer (min_query_count / target_qps): past a minute and a half, stop
        # and let the run stand as INVALID (a SUT this slow, or this jittery, needs find-perf and a valid run)
        if int(new.get("min_query_count") or 0) / max(new["target_qps"], 1e-9) > SERVER_MAX_SECONDS:
            return None
    else:
        return None
    return new if new != settings else None


def _round_up(x: float) -> float:
    return float(int(x * 1000) + 1) / 1000


def initial(scenario: str, settings: dict, probe: dict | None) -> dict:
    """A short run's first settings: the probe's measurement filled in where the user gave no target."""
    new = dict(settings)
    if probe is None:
        return new
    if scenario == "Server" and "target_qps" not in settings:
        qps = min(probe["throughput"] * SERVER_LOAD_FRACTION, SERVER_MAX_QPS)
        new["target_qps"] = max(round(qps, 3), 0.001)
    elif scenario in ("SingleStream", "MultiStream") and "target_latency" not in settings:
        new["target_latency"] = max(round(probe["latency_s"] * 1000.0, 6), 1e-6)
    return new


def needs_probe(scenario: str, settings: dict) -> bool:
    if scenario == "Server":
        return "target_qps" not in settings
    if scenario in ("SingleStream", "MultiStream"):
        return "target_latency" not in settings
    return False


def probe(sut_handle, qsl_handle, scenario: str, sample_count: int, scratch: Path | None = None) -> dict:
    """Measure the SUT with small LoadGen runs that grow until one lasts PROBE_SECONDS: its throughput (an
    Offline query of n samples) for Server, its latency (n single-sample queries, or 8-sample ones for
    MultiStream) for the stream scenarios. Logs go to a scratch folder that is removed."""
    import mlperf_loadgen as lg

    from subtool.runner.harness import read_detail_log

    own = scratch is None
    scratch = Path(tempfile.mkdtemp(prefix="subtool-probe-")) if own else scratch
    try:
        n, result = PROBE_FIRST_SAMPLES, {}
        while True:
            settings = lg.TestSettings()
            settings.mode = lg.TestMode.PerformanceOnly
            settings.min_duration_ms = 0
            settings.performance_sample_count_override = max(1, min(sample_count, n))
            if scenario == "Server":
                settings.scenario = lg.TestScenario.Offline
                settings.min_duration_ms = 1000  # one query of expected_qps * 1 s * 1.1 = n samples
                settings.offline_expected_qps = n / OFFLINE_MARGIN
                settings.min_query_count = 1
            else:
                settings.scenario = getattr(lg.TestScenario, scenario)
                settings.min_query_count = n
                settings.max_query_count = n
                if scenario == "MultiStream":
                    settings.multi_stream_expected_latency_ns = 10**12
                else:
                    settings.single_stream_expected_latency_ns = 10**12
            outdir = scratch / f"probe-{n}"
            outdir.mkdir(parents=True, exist_ok=True)
            log = lg.LogSettings()
            log.log_output.outdir = str(outdir)
            log.log_output.copy_summary_to_stdout = False
            log.enable_trace = False
            t0 = time.perf_counter()
            loadgen_watch.start_test(lg, sut_handle, qsl_handle, settings, log, str(outdir / "no-audit.config"))
            seconds = time.perf_counter() - t0
            values = read_detail_log(outdir / "mlperf_log_detail.txt")
            result = _probe_result(scenario, values, n, seconds)
            if seconds >= PROBE_SECONDS or n >= PROBE_MAX_SAMPLES:
                return result
            n = min(PROBE_MAX_SAMPLES, n * max(2, min(64, int(PROBE_SECONDS / max(seconds, 1e-4)) + 1)))
    finally:
        if own:
            shutil.rmtree(scratch, ignore_errors=True)


def _probe_result(scenario: str, values: dict, n: int, seconds: float) -> dict:
    if scenario == "Server":
        rate = float(values.get("result_samples_per_second") or 0.0) or n / max(seconds, 1e-6)
        return {"scenario": "Offline", "samples": n, "seconds": round(seconds, 3), "throughput": rate}
    # the median, not the mean: the first queries' warm-up would make the run expect a slower SUT than it is
    p50 = values.get("result_50.00_percentile_per_query_latency_ns") or values.get("result_50.00_percentile_latency_ns")
    latency = float(p50) / 1e9 if isinstance(p50, (int, float)) and p50 > 0 else seconds / max(n, 1)
    return {"scenario": scenario, "queries": n, "seconds": round(seconds, 3), "latency_s": latency}


@dataclass
class ShortRun:
    """A short run's performance mode: run, and while LoadGen calls it INVALID for a reason a bigger (or, for
    Server, lighter) run fixes, re-size and run again; the settings that ran end up in user.conf."""

    sut: object
    qsl: object
    scenario: str
    loadgen_model: str
    user_conf: Path
    header: str
    settings: dict
    probe: dict | None
    say: object
    tries: list = field(default_factory=list)
    # why the SUT failed (runner/workload.SutFailure), None while it works: a failed SUT answers empty at once,
    # which reads as a fast SUT, and a run sized from that rate is no try worth making
    failure: Callable[[], str | None] = lambda: None

    def write_conf(self) -> None:
        from subtool.runner.harness import write_user_conf

        write_user_conf(self.user_conf, self.loadgen_model, self.scenario, self.settings, header=self.header)

    def run(self, settings_obj, outdir: Path):
        from subtool.runner.harness import read_detail_log, run_loadgen

        self.tries = []
        while True:
            t0 = time.perf_counter()
            lg_run = run_loadgen(
                self.sut, self.qsl, settings_obj, scenario=self.scenario, mode="performance", outdir=outdir
            )
            seconds = time.perf_counter() - t0
            values = read_detail_log(outdir / "mlperf_log_detail.txt")
            reason = why_invalid(values)
            # LoadGen logs an error when the SUT was faster than the run expected and the generated queries
            # ran out before the minimum duration: the run was too short, which a bigger one fixes
            sizing_errors = [e for e in lg_run.errors if RAN_OUT in e]
            if sizing_errors:
                reason = "duration"
            self.tries.append(Try(dict(self.settings), lg_run.validity, reason, seconds))
            other_errors = len(lg_run.errors) > len(sizing_errors)
            if other_errors or not reason or len(self.tries) >= MAX_TRIES or self.failure() is not None:
                return lg_run
            grown = regrow(self.scenario, self.settings, values, seconds, reason)
            if grown is None:
                return lg_run
            self.say(
                f"  short run INVALID ({_WHY[reason]}); again with "
                + ", ".join(f"{k} = {v}" for k, v in grown.items() if self.settings.get(k) != v)
            )
            self.settings = grown
            apply(settings_obj, self.scenario, grown)
            self.write_conf()
            _clear(outdir)

    def record(self) -> dict:
        return {"probe": self.probe, "tries": [t.to_dict() for t in self.tries]}


_WHY = {
    "duration": "it ended before its minimum duration",
    "queries": "too few queries",
    "early_stopping": "too few queries for LoadGen's early-stopping estimate",
    "latency": "the SUT answered the Server load too late",
}


def _clear(outdir: Path) -> None:
    """An INVALID try's logs go: the run directory holds the logs of the run that counts, only."""
    for child in outdir.iterdir():
        if child.is_file():
            child.unlink()
