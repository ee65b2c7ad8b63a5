"""Driving LoadGen: user.conf, test settings, log directories, and reading back what LoadGen decided."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.fsutil import atomic_write_text
from subtool.mlperf.logs import ALL_KEYS, Missing, read_accuracy_log, read_loadgen_log
from subtool.mlperf.round import INTERACTIVE_CONF_SUFFIX, LOADGEN_SCENARIO, UNITS
from subtool.runner import loadgen_watch

# the scenarios a run folder can be; Interactive runs LoadGen's Server scenario (mlperf/round.py loadgen_names)
SCENARIOS = ("Offline", "Server", "SingleStream", "MultiStream", "Interactive")
MODES = ("performance", "accuracy")

RESULT_FIELD = {
    "Offline": "result_samples_per_second",
    "Server": "result_completed_samples_per_sec",
    "SingleStream": "early_stopping_latency_ss",
    "MultiStream": "early_stopping_latency_ms",
    "Interactive": "result_completed_samples_per_sec",
}
RESULT_UNITS = {scenario: UNITS[scenario] for scenario in SCENARIOS}  # the round tables' units, one place

# Short runs keep every official setting except how long they last (see runner/sizing.py for how a short run
# is sized to the SUT so that LoadGen still calls it VALID).
SHORT_MIN_DURATION_MS = {"Offline": 1000, "Server": 10000, "SingleStream": 10000, "MultiStream": 10000}
# Queries LoadGen's early-stopping estimate needs when every query meets its latency (LoadGen's own answer:
# p99 for Server, p90 for SingleStream); fewer and the run is INVALID whatever its duration.
SHORT_MIN_QUERIES = {"Server": 500, "SingleStream": 64}
# LoadGen models whose built-in mlperf.conf turns on equal-issue mode (sample_concatenate_permutation): every
# latency-scenario run then issues a whole multiple of the data set (13,368 queries for llama3.1-8b). Short runs
# turn it off, and say so.
EQUAL_ISSUE_MODELS = frozenset({"gptj", "llama2-70b", "llama3_1-8b", "llama3_1-405b", "mixtral-8x7b"})
OFFLINE_MARGIN = 1.1  # LoadGen sizes the Offline query as expected_qps * min_duration * 1.1


@dataclass(frozen=True)
class LoadGenRun:
    outdir: Path
    mode: str
    scenario: str
    validity: str | None
    result: float | None
    result_field: str
    errors: list[str]


LATENCY_SCENARIOS = ("SingleStream", "MultiStream")  # LoadGen logs their result in ns; run.json says ms


def result_in_units(scenario: str, value: float | None) -> float | None:
    """A LoadGen result in the units run.json names (RESULT_UNITS): the latency scenarios' ns as ms."""
    if value is None or scenario not in LATENCY_SCENARIOS:
        return value
    return round(value / 1e6, 6)


def check_scenario(scenario: str) -> str:
    for s in SCENARIOS:
        if scenario.lower() == s.lower():
            return s
    import difflib

    near = difflib.get_close_matches(scenario.lower(), [s.lower() for s in SCENARIOS], n=1, cutoff=0.6)
    guess = next((s for s in SCENARIOS if near and s.lower() == near[0]), None)
    raise SubtoolError(
        f"unknown scenario {scenario!r}" + (f" (did you mean {guess}?)" if guess else ""),
        rule="run.scenario",
        hint=f"choose one of {', '.join(SCENARIOS)}",
    )


def user_conf_settings(
    scenario: str,
    run_style: str,
    sample_count: int,
    *,
    target_qps: float | None,
    target_latency_ms: float | None,
    min_duration_ms: int | None,
    loadgen_model: str = "",
) -> dict[str, object]:
    """The keys subtool writes into user.conf for one scenario (LoadGen's own names, without the model prefix)."""
    if run_style not in ("short", "valid"):
        raise SubtoolError(f"unknown run style {run_style!r}; choose short or valid", rule="run.style")
    scenario = LOADGEN_SCENARIO.get(scenario, scenario)
    settings: dict[str, object] = {}
    duration = min_duration_ms
    if duration is None and run_style == "short":
        duration = SHORT_MIN_DURATION_MS[scenario]
    if scenario == "Offline":
        qps = target_qps
        if run_style == "short" and qps is None:
            # by default the one Offline query still covers the whole data set (closed division needs it);
            # an explicit --target-qps is taken as given
            needed = sample_count / (OFFLINE_MARGIN * (duration or 600000) / 1000.0)
            qps = math.ceil(needed * 1000) / 1000 + 0.001
        if qps:
            settings["target_qps"] = qps
    elif scenario == "Server":
        if target_qps:
            settings["target_qps"] = target_qps
        if run_style == "short":
            settings["min_query_count"] = max(
                SHORT_MIN_QUERIES["Server"], int((target_qps or 0) * (duration or 10000) / 1000)
            )
    else:
        if target_latency_ms:
            settings["target_latency"] = target_latency_ms
        if run_style == "short" and scenario in SHORT_MIN_QUERIES:
            settings["min_query_count"] = SHORT_MIN_QUERIES[scenario]
    equal_issue = loadgen_model.removesuffix(INTERACTIVE_CONF_SUFFIX) in EQUAL_ISSUE_MODELS
    if run_style == "short" and scenario != "Offline" and equal_issue:
        settings["sample_concatenate_permutation"] = 0
    if duration is not None:
        settings["min_duration"] = int(duration)
    return settings


def write_user_conf(
    path: Path, loadgen_model: str, scenario: str, settings: dict[str, object], header: str = ""
) -> Path:
    lines = [f"# {line}" for line in header.splitlines()] if header else []
    for key, value in settings.items():
        if isinstance(value, float):
            value = repr(value) if value != int(value) else str(int(value))
        lines.append(f"{loadgen_model}.{scenario}.{key} = {value}")
    return atomic_write_text(path, "\n".join(lines) + "\n")


def read_detail_log(path: Path) -> dict[str, object]:
    """The first value of every key in a LoadGen detail log, plus the list of error entries under "__errors__"."""
    log = read_loadgen_log(path, ALL_KEYS, follow_links=True)
    if log.problems and isinstance(log.problems[0], Missing):
        raise SubtoolError("LoadGen wrote no detail log", path=path, rule="run.loadgen")
    values: dict[str, object] = log.decode_all()  # a value that cannot be read is None
    errors = list(log.errors)
    if "error_invalid_config" in values and not errors:
        errors.append(str(values["error_invalid_config"]))
    values["__errors__"] = errors
    return values


def accuracy_entries(path: Path) -> list[tuple[int, bytes]]:
    """(qsl_idx, response bytes) of LoadGen's mlperf_log_accuracy.json in its order; one SubtoolError when the log
    is missing or cannot be read (the model family turns the bytes into arrays)."""
    log = read_accuracy_log(path)
    if isinstance(log.problem, Missing):
        raise SubtoolError("accuracy log missing", path=path, rule="acc.log_missing")
    if log.problem is not None:
        raise SubtoolError(f"accuracy log {log.problem}", path=path, rule="acc.log_parse")
    return log.entries


SEED_KEYS = ("qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed")


def load_test_settings(user_conf: Path, loadgen_model: str, scenario: str):
    """TestSettings from user.conf, loaded once per process.

    LoadGen counts every FromConfig call in a process and logs "Multiple conf files are used" (fatal for the
    checker) from the second one on, so one process runs one benchmark and reuses these settings for every mode.
    """
    import mlperf_loadgen as lg

    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, scenario)
    rc = settings.FromConfig(str(user_conf), loadgen_model, scenario)
    if rc != 0:
        raise SubtoolError("LoadGen rejected user.conf", path=user_conf, rule="run.user_conf")
    return settings


def settings_seeds(settings) -> dict[str, int]:
    """The RNG seeds a TestSettings will run with."""
    return {key: int(getattr(settings, key)) for key in SEED_KEYS}


def use_round_seeds(settings, seeds: dict[str, int] | None) -> bool:
    """Give loaded settings a submission round's RNG seeds; True when they differ from LoadGen's built-in ones.

    LoadGen takes the seeds from its built-in mlperf.conf (its own round's) and reads them from no user.conf, so
    a run for another round (gptj: v5.0) sets them here, after FromConfig and before the first test.
    """
    if not seeds:
        return False
    changed = settings_seeds(settings) != {key: int(seeds[key]) for key in SEED_KEYS}
    for key in SEED_KEYS:
        setattr(settings, key, int(seeds[key]))
    return changed


def run_loadgen(
    sut_handle, qsl_handle, settings, *, scenario: str, mode: str, outdir: Path, audit_config: Path | None = None
) -> LoadGenRun:
    import mlperf_loadgen as lg

    outdir.mkdir(parents=True, exist_ok=True)
    settings.mode = lg.TestMode.PerformanceOnly if mode == "performance" else lg.TestMode.AccuracyOnly
    log = lg.LogSettings()
    log.log_output.outdir = str(outdir)
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False
    # Name the audit config explicitly: LoadGen would otherwise pick up any audit.config in the CWD and
    # silently turn a normal run into a compliance run.
    audit = audit_config if audit_config is not None else outdir / "no-audit.config"
    loadgen_watch.start_test(lg, sut_handle, qsl_handle, settings, log, str(audit))
    trace = outdir / "mlperf_log_trace.json"
    if trace.is_file() and trace.stat().st_size == 0:
        trace.unlink()  # LoadGen leaves an empty trace file when tracing is off; it is no result
    values = read_detail_log(outdir / "mlperf_log_detail.txt")
    field = RESULT_FIELD[scenario]
    result = values.get(field)
    return LoadGenRun(
        outdir=outdir,
        mode=mode,
        scenario=scenario,
        validity=values.get("result_validity") if mode == "performance" else None,
        result=float(result) if isinstance(result, (int, float)) else None,
        result_field=field,
        errors=list(values["__errors__"]),
    )
