"""The performance run's detail log: LoadGen's verdict, settings the round fixes, latency limits, the result."""

from __future__ import annotations

import math
from fractions import Fraction

from subtool.checker.context import ResultContext
from subtool.checker.registry import define
from subtool.checker.rules.inputs import NOT_FINITE
from subtool.checker.rules.summary import check_summary
from subtool.mlperf.logs import LoadgenLog
from subtool.mlperf.round import (
    EARLY_STOPPING_SCENARIOS,
    LLM_TOKEN_LIMITS,
    MIN_DURATION_MS,
    MS_PER_NS,
    OFFLINE_MIN_SAMPLES_PER_QUERY,
    SCENARIO_BY_LOWER,
    round_config,
    round_of_seeds,
)
from subtool.wording import plain_number, with_article

LOG_CORRUPT = define(
    "perf.log_corrupt",
    "error",
    "The performance detail log is not a clean LoadGen log: wrong first line, lines cut short, invalid JSON "
    "or binary garbage.",
    "crashes with a traceback (RuntimeError / UnicodeDecodeError in the log reader)",
)
LOADGEN_ERROR = define(
    "perf.loadgen_error",
    "error",
    'LoadGen logged an error during the performance run ("Loadgen built with uncommitted changes" excepted).',
    "ignored unless --submission-exceptions is given (the flag meant to relax it turns the check on); "
    "subtool is deliberately stricter",
)
SAMPLE_COUNT = define(
    "perf.sample_count",
    "error",
    "performance_sample_count is below the benchmark's (bert 10833, llama2-70b 24576, llama3.1-8b 13368 …).",
    "'performance_sample_count, found …, needs to be >= …', fails the result",
)
SEEDS = define(
    "perf.seeds",
    "error",
    "The RNG seeds are not the round's official ones; LoadGen's built-in mlperf.conf decides them, so the "
    "LoadGen version decides the round (6.0.17 → v6.1).",
    "'qsl_rng_seed is wrong' (and the other two), fails the result",
)
EARLY_STOPPING = define(
    "perf.early_stopping",
    "error",
    "Server/SingleStream/MultiStream: LoadGen's early-stopping condition was not met.",
    "'Early stopping condition was not met', fails the result",
)
LATENCY = define(
    "perf.latency",
    "error",
    "The latency the run targeted (Server) or reached (p99) exceeds the benchmark's limit.",
    "'Latency constraint … not met', fails the result",
)
MIN_QUERIES = define(
    "perf.min_queries",
    "error",
    "min_query_count is below the round's minimum for a scenario without early stopping.",
    "'Required minimum Query Count not met by user config', fails the result",
)
OFFLINE_SPQ = define(
    "perf.offline_samples_per_query",
    "error",
    "Closed-division Offline run with fewer samples per query than the benchmark needs (bert 10833).",
    "'Required minimum samples per query not met by user config', fails the result",
)
MIN_DURATION = define(
    "perf.min_duration",
    "error",
    "min_duration is below 600000 ms (600 s). Short runs break it on purpose: --waive perf.min_duration.",
    "'Test duration less than 600s in user config', fails the result",
)
NETWORK_SUT = define(
    "perf.network_sut_name",
    "error",
    "Network-division runs need 'Network SUT' in the SUT name.",
    "'invalid sut name for network mode', fails the result",
)
TOKEN_LATENCIES = define(
    "perf.token_latencies",
    "error",
    "LLM benchmarks must run with use_token_latencies enabled.",
    "'use_token_latencies flag needs to be enabled', fails the result",
)
TTFT_TPOT = define(
    "perf.ttft_tpot",
    "error",
    "LLM Server/Interactive: p99 time-to-first-token or time-per-output-token is not below the limit "
    "(llama2-70b Server 2 s / 200 ms; llama3.1-8b Server 2 s / 100 ms …).",
    "'Failed extra check for TTFT and TPOT', fails the result",
)
INTERACTIVE_LIMITS = define(
    "perf.interactive_latency",
    "warning",
    "LLM Interactive folder: p99 TTFT or TPOT is not below the Interactive limits (llama2-70b 450 ms / 40 ms; "
    "llama3.1-8b 500 ms / 30 ms). LoadGen logs an Interactive run as Server, and the official checker holds it to "
    "the Server limits from the log, so this does not fail the result.",
    "not checked: the Server limits of the log's effective_scenario are applied",
)
INFERRED = define(
    "perf.inferred_scenario",
    "error",
    "The log's scenario differs from the folder's and the result may not be inferred from it (only edge "
    "systems may infer Offline/MultiStream from SingleStream, Offline from MultiStream).",
    "'Result can not be inferred', fails the result",
)
RESULT_MISSING = define(
    "perf.result_missing",
    "error",
    "The log has no usable value in the scenario's result field.",
    "an exception inside the check, reported as a failed check",
)
RESULT_AS_TEXT = define(
    "perf.result_as_text",
    "warning",
    'The scenario\'s result field holds its number as JSON text ("87306.9"), which LoadGen never writes: read as '
    "the number, as the official checker's float() reads it.",
    "reads the number and passes",
)
RESULT_INVALID = define(
    "perf.result_invalid",
    "error",
    "LoadGen judged the performance run INVALID (result_validity).",
    "accepted: the current checker never fails an INVALID result (a known hole); subtool is deliberately stricter",
)
RESULT_INCONSISTENT = define(
    "perf.result_inconsistent",
    "error",
    "The result is not a positive number, or (Offline samples/s) differs by more than 0.1 % from what the log "
    "itself counts: samples issued per query (generated_samples_per_query, rounded up to whole sets of the "
    "performance samples under sample_concatenate_permutation) × queries ÷ the longest latency, which LoadGen's "
    "figure always equals.",
    "not checked: a hand-edited result (negative, zero, 1e300) passes and is published",
)
MISSING_KEY = define(
    "perf.missing_key",
    "error",
    "A setting the rules read is absent from the performance detail log (log cut short or not from LoadGen).",
    "an exception inside the check, reported as a failed check",
)


def check_perf_log(ctx: ResultContext, log: LoadgenLog, rel: str, main_run: bool) -> None:
    """Every rule on one performance log; `main_run` is False for compliance runs (TEST01/TEST04)."""
    scenario = _readable_scenario(ctx, log, rel)
    if scenario is None:
        return
    rules = ctx.rules
    model = ctx.job.mlperf_model
    if rules is not None:
        _sample_count(ctx, log, rel)
    _seeds(ctx, log, rel)
    _latency(ctx, log, rel, scenario)
    if rules is not None:
        _min_queries(ctx, log, rel, scenario)
    if model not in ("e2e-rag-qna", "e2e-rag-db"):
        _min_duration(ctx, log, rel)
    _network_sut(ctx, log, rel)
    if rules is not None and rules.is_llm:
        _llm(ctx, log, rel, scenario)
    inferred_ok = _inferred(ctx, rel, scenario)
    if rules is not None:
        value = _result_value(ctx, log, rel, scenario, inferred_ok)
        if main_run:
            ctx.result_value = value
    check_summary(ctx, log, rel, scenario)
    if main_run:
        _validity(ctx, log, rel)


def _readable_scenario(ctx: ResultContext, log: LoadgenLog, rel: str) -> str | None:
    """The log's own soundness (finite values, readable lines, no LoadGen errors), and its scenario: None when the
    rules cannot go on (nothing read, or no effective_scenario)."""
    out = ctx.out
    log.decode_all()  # every value now, so that a bad one is reported here, whichever rule reads it
    if log.non_finite:
        out.add(
            NOT_FINITE,
            rel,
            f"performance log values are not finite numbers: {log.non_finite_text()}",
            "copy mlperf_log_detail.txt again from the run directory; LoadGen never writes NaN or Infinity",
        )
    if not log.readable:
        out.add(
            LOG_CORRUPT,
            rel,
            f"performance log {'; '.join(log.problems[:3])}",
            "copy mlperf_log_detail.txt again from the run directory; never edit it",
        )
        if not log.raw:
            return None
    bad = [e for e in log.errors if "Loadgen built with uncommitted changes" not in e]
    if bad:
        out.add(
            LOADGEN_ERROR,
            rel,
            f"LoadGen logged {len(bad)} error(s): {'; '.join(bad[:3])}",
            'fix the cause and re-run; a run with LoadGen errors is not a valid result ("Multiple conf '
            'files are used" means pass only user.conf to TestSettings.FromConfig)',
        )
    scenario = log["effective_scenario"]
    if isinstance(scenario, str):
        return scenario
    out.add(
        MISSING_KEY,
        rel,
        "effective_scenario is missing from the log",
        "use the complete mlperf_log_detail.txt LoadGen wrote",
    )
    return None


def _validity(ctx: ResultContext, log: LoadgenLog, rel: str) -> None:
    """LoadGen's own verdict on the main run."""
    validity = log["result_validity"]
    if validity != "VALID":
        reason = log["result_invalid_reason"] or "no reason given"
        ctx.out.add(
            RESULT_INVALID,
            rel,
            f"LoadGen judged the run {validity or 'without a verdict'}: {reason}",
            "meet LoadGen's conditions (min duration, min queries, early stopping, latency) and re-run",
        )


def _int(log: LoadgenLog, key: str) -> int | None:
    value = log[key]
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _missing(ctx: ResultContext, rel: str, key: str) -> None:
    ctx.out.add(MISSING_KEY, rel, f"{key} is missing from the log", "use the complete log LoadGen wrote")


def _sample_count(ctx: ResultContext, log: LoadgenLog, rel: str) -> None:
    need = ctx.rules.performance_sample_count
    found = _int(log, "effective_performance_sample_count")
    if found is None:
        return _missing(ctx, rel, "effective_performance_sample_count")
    if found < need:
        ctx.out.add(
            SAMPLE_COUNT,
            rel,
            f"performance_sample_count is {plain_number(found)}, {ctx.job.mlperf_model} needs ≥ {need}",
            f"let the QSL report {need} performance samples (LoadGen's mlperf.conf sets "
            "performance_sample_count_override; do not override it in user.conf)",
        )


def _seeds(ctx: ResultContext, log: LoadgenLog, rel: str) -> None:
    want = ctx.cfg.seeds
    got = {k: log[f"effective_{k}"] for k in ("qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed")}
    wrong = [k for k in got if got[k] != want[k]]
    if not wrong:
        return
    other = round_of_seeds(got["qsl_rng_seed"], got["sample_index_rng_seed"], got["schedule_rng_seed"])
    if other and round_config(other).layout.name == (ctx.job.generation or ctx.cfg.layout.name):
        hint = (
            f"these are the {other} seeds: check with --version {other}, or run with the LoadGen release "
            f"of {ctx.cfg.version}"
        )
    elif other:  # that round's trees are laid out otherwise: checking with it would fail on the folders
        hint = f"these are the {other} seeds: run with the LoadGen release of {ctx.cfg.version}"
    else:
        hint = (
            "do not set seeds in user.conf; LoadGen's built-in mlperf.conf carries the official ones "
            "(mlcommons-loadgen 6.0.17 → v6.1)"
        )
    details = ", ".join(f"{k}={got[k]} (expected {want[k]})" for k in wrong)
    ctx.out.add(SEEDS, rel, f"seeds are not the {ctx.cfg.version} ones: {details}", hint)


def _latency(ctx: ResultContext, log: LoadgenLog, rel: str, scenario: str) -> None:
    rules = ctx.rules
    if scenario in EARLY_STOPPING_SCENARIOS:
        if not log["early_stopping_met"]:
            ctx.out.add(
                EARLY_STOPPING,
                rel,
                f"early stopping condition not met: {log['early_stopping_result'] or 'no estimate'}",
                "run longer (more queries) or lower the load so LoadGen can estimate the latency",
            )
            return
        limit = rules.latency_ns(scenario) if rules else None
        target = _int(log, "effective_target_latency_ns")
        if limit and target is not None and target > limit:
            ctx.out.add(
                LATENCY,
                rel,
                f"target latency {plain_number(target)} ns exceeds the {plain_number(limit)} ns limit",
                "lower target_latency in user.conf to the benchmark's limit or below",
            )
        return
    fixed = ctx.scenario
    limit = rules.latency_ns(fixed) if rules else None
    p99 = _int(log, "result_99.00_percentile_latency_ns")
    if limit and p99 is not None and p99 > limit:
        ctx.out.add(
            LATENCY,
            rel,
            f"p99 latency {plain_number(p99)} ns exceeds the {plain_number(limit)} ns limit",
            "lower the load",
        )


def _min_queries(ctx: ResultContext, log: LoadgenLog, rel: str, scenario: str) -> None:
    if scenario not in EARLY_STOPPING_SCENARIOS:
        need = ctx.rules.min_queries(scenario)
        found = _int(log, "effective_min_query_count")
        if need and (found is None or found < need):
            ctx.out.add(
                MIN_QUERIES,
                rel,
                f"min_query_count is {plain_number(found)}, {scenario} needs ≥ {need}",
                f"set {scenario}.min_query_count ≥ {need} in user.conf (or drop the override)",
            )
    if scenario == "Offline" and ctx.job.division == "closed":
        need = OFFLINE_MIN_SAMPLES_PER_QUERY.get(ctx.job.mlperf_model)
        found = _int(log, "effective_samples_per_query")
        if need is not None and (found is None or found < need):
            ctx.out.add(
                OFFLINE_SPQ,
                rel,
                f"Offline samples_per_query is {plain_number(found)}, closed needs ≥ {need}",
                "raise target_qps (samples per query = target_qps × min_duration) so one query holds "
                f"at least {need} samples",
            )


def _min_duration(ctx: ResultContext, log: LoadgenLog, rel: str) -> None:
    found = _int(log, "effective_min_duration_ms")
    if found is None:
        return _missing(ctx, rel, "effective_min_duration_ms")
    if found < MIN_DURATION_MS:
        ctx.out.add(
            MIN_DURATION,
            rel,
            f"min_duration is {plain_number(found)} ms, official runs need ≥ {MIN_DURATION_MS} ms (short run)",
            "re-run with --run-style valid for a submittable result, or pass --waive perf.min_duration "
            "to accept a short run",
        )


def _network_sut(ctx: ResultContext, log: LoadgenLog, rel: str) -> None:
    raw = (ctx.job.system_json or {}).get("is_network")
    if isinstance(raw, str) and raw.lower() == "true":
        name = log["sut_name"] or ""
        if "Network SUT" not in str(name):
            ctx.out.add(
                NETWORK_SUT,
                rel,
                f"SUT name {name!r} lacks 'Network SUT'",
                "name the network SUT so that it contains 'Network SUT'",
            )


def _llm(ctx: ResultContext, log: LoadgenLog, rel: str, scenario: str) -> None:
    if not log["requested_use_token_latencies"]:
        ctx.out.add(
            TOKEN_LATENCIES,
            rel,
            "use_token_latencies is not enabled",
            "LLM runs report tokens: set use_token_latencies = 1 (LoadGen's mlperf.conf does it for "
            "the official model names) and answer with FirstTokenComplete + token counts",
        )
        return
    if scenario not in ("Server", "Interactive"):
        return
    limits = LLM_TOKEN_LIMITS.get(ctx.job.mlperf_model, {}).get(scenario)
    if limits is None:
        ctx.out.add(
            TTFT_TPOT,
            rel,
            f"no TTFT/TPOT limits for {ctx.job.mlperf_model} {scenario}",
            "this benchmark has no such scenario in the round",
        )
        return
    ttft = _int(log, "result_first_token_99.00_percentile_latency_ns")
    tpot = _int(log, "result_time_per_output_token_99.00_percentile_ns")
    if ttft is None or tpot is None:
        ctx.out.add(
            TTFT_TPOT,
            rel,
            "TTFT or TPOT percentiles are missing from the log",
            "run with use_token_latencies and report first tokens (FirstTokenComplete)",
        )
        return
    if not (ttft < limits[0] and tpot < limits[1]):
        ctx.out.add(
            TTFT_TPOT,
            rel,
            f"p99 TTFT {ttft / 1e6:.1f} ms / TPOT {tpot / 1e6:.2f} ms; limits are "
            f"{limits[0] / 1e6:.0f} ms / {limits[1] / 1e6:.0f} ms (both must be below)",
            "lower the Server target QPS until both p99 values are below the limits",
        )
        return
    tight = LLM_TOKEN_LIMITS.get(ctx.job.mlperf_model, {}).get("Interactive")
    if ctx.scenario == "Interactive" and scenario == "Server" and tight and not (ttft < tight[0] and tpot < tight[1]):
        ctx.out.add(
            INTERACTIVE_LIMITS,
            rel,
            f"p99 TTFT {ttft / 1e6:.1f} ms / TPOT {tpot / 1e6:.2f} ms are not below the Interactive limits "
            f"{tight[0] / 1e6:.0f} ms / {tight[1] / 1e6:.0f} ms (the log's Server limits are met)",
            "run with the Interactive settings (subtool run --scenario Interactive) at a lower target QPS",
        )


_INFERABLE = {("singlestream", "multistream"), ("multistream", "offline"), ("singlestream", "offline")}


def _inferred(ctx: ResultContext, rel: str, scenario: str) -> bool:
    ran, folder = scenario.lower(), ctx.job.scenario.lower()
    if ran == folder or (ran, folder) == ("server", "interactive"):
        return True
    system_type = str((ctx.job.system_json or {}).get("system_type", ""))
    if "edge" not in system_type.lower():
        ctx.out.add(
            INFERRED,
            rel,
            f"the log is {with_article(scenario)} run in {with_article(ctx.job.scenario)} folder; "
            f"{with_article(system_type or 'non-edge')} system cannot infer results",
            "move the logs to the folder of the scenario they ran",
        )
        return False
    if (ran, folder) not in _INFERABLE:
        ctx.out.add(
            INFERRED,
            rel,
            f"{ctx.job.scenario} cannot be inferred from {with_article(scenario)} run",
            "run the scenario itself",
        )
        return False
    return True


def _result_value(ctx: ResultContext, log: LoadgenLog, rel: str, scenario: str, inferred_ok: bool) -> float | None:
    key = ctx.rules.result_field(scenario)
    raw = log[key] if key else None
    if key in log.non_finite:
        return None  # reported as value.not_finite
    raw = _number_text(ctx, rel, key, raw)
    if not isinstance(raw, (int, float)) or isinstance(raw, bool):
        ctx.out.add(
            RESULT_MISSING,
            rel,
            f"result field {key or '(none for ' + scenario + ')'} is missing",
            "use the complete log LoadGen wrote for this scenario",
        )
        return None
    value = float(raw)
    if not _consistent(ctx, log, rel, key, value):
        return None
    if scenario in ("SingleStream", "MultiStream"):
        value /= MS_PER_NS
    folder = SCENARIO_BY_LOWER.get(ctx.job.scenario.lower(), ctx.job.scenario)
    if scenario.lower() != folder.lower() and (scenario.lower(), folder.lower()) != ("server", "interactive"):
        ctx.inferred = True
        value = _infer(ctx, log, rel, scenario, folder, value)
    return value


def _number_text(ctx: ResultContext, rel: str, key: str | None, raw: object) -> object:
    """A result written as JSON text of a finite number, as that number (with a warning); anything else as it is."""
    if not isinstance(raw, str):
        return raw
    try:
        value = float(raw.strip())
    except ValueError:
        return raw
    if not math.isfinite(value):
        return raw
    ctx.out.add(RESULT_AS_TEXT, rel, f"{key} is the text {raw[:40]!r}, not a number", "use the log LoadGen wrote")
    return value


def _consistent(ctx: ResultContext, log: LoadgenLog, rel: str, key: str, value: float) -> bool:
    """A result must be positive; Offline's samples/s must be the log's own count over its longest latency."""
    hint = "copy mlperf_log_detail.txt and mlperf_log_summary.txt again from the run directory; never edit them"
    if value <= 0:
        ctx.out.add(RESULT_INCONSISTENT, rel, f"{key} is {value:.6g}: not a positive number", hint)
        return False
    if key != "result_samples_per_second":
        return True
    queries, longest = (_int(log, k) for k in OFFLINE_COUNT_KEYS)
    per_query = _issued_per_query(log)
    if not (queries and per_query and longest and longest > 0):
        return True  # a missing count is reported by the rules that read it
    # exact: in floats a huge count or a tiny latency made `counted` infinite, and |v - inf| <= inf let any v pass
    counted = Fraction(queries) * Fraction(per_query) * 10**9 / Fraction(longest)
    if abs(Fraction(value) - counted) <= counted / 1000:
        return True
    ctx.out.add(
        RESULT_INCONSISTENT,
        rel,
        f"{key} is {value:.6g}, but the log's own {queries} × {per_query} samples in "
        f"{_float_text(Fraction(longest) / 10**9, '.3f')} s make {_float_text(counted)}",
        hint,
    )
    return False


def _float_text(x: Fraction, spec: str = "") -> str:
    try:
        return format(float(x), spec) if spec else plain_number(float(x))
    except OverflowError:
        return "more than any float"


OFFLINE_COUNT_KEYS = ("result_query_count", "result_max_latency_ns")
SAMPLES_PER_QUERY_KEYS = ("generated_samples_per_query", "effective_samples_per_query")


def _issued_per_query(log: LoadgenLog) -> int | float | None:
    """The samples LoadGen issued per query, which its samples/s counts: as generated (else as configured), and
    with sample_concatenate_permutation rounded up to whole sets of the performance samples (3d-unet: 5578 →
    5590). LoadGen 5.1 logs the rounded count as generated_samples_per_query, 4.1 the count before rounding."""
    per_query = next((n for n in (_int(log, k) for k in SAMPLES_PER_QUERY_KEYS) if n), None)
    sets = _int(log, "effective_performance_sample_count")
    if per_query and per_query > 0 and sets and sets > 0 and log["effective_sample_concatenate_permutation"] is True:
        return -(-per_query // sets) * sets
    return per_query


def _infer(ctx: ResultContext, log: LoadgenLog, rel: str, ran: str, folder: str, value: float) -> float | None:
    try:
        if folder == "Offline" and ran == "SingleStream":
            qps = log["result_qps_without_loadgen_overhead"]
            # taken as the log writes it, as the official summary does: 829187, not 829187.0
            return qps if isinstance(qps, int) and not isinstance(qps, bool) else float(qps)
        if folder == "Offline" and ran == "MultiStream":
            return (
                float(log["effective_samples_per_query"])
                * 1000
                / (float(log["result_mean_query_latency_ns"]) / MS_PER_NS)
            )
        if folder == "MultiStream" and ran == "SingleStream":
            est = float(log["early_stopping_latency_ms"])
            if est == 0:
                ctx.out.add(
                    EARLY_STOPPING, rel, "not enough samples for an early-stopping estimate", "run more queries"
                )
            return est * 8 / MS_PER_NS
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        ctx.out.add(
            RESULT_MISSING, rel, f"cannot infer the {folder} result from this {ran} log", "run the scenario itself"
        )
        return None
    if folder == "Interactive" and ran != "Server":
        ctx.out.add(INFERRED, rel, "Interactive results come from Server runs only", "run the scenario itself")
    return value
