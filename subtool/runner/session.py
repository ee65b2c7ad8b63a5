"""One benchmark session in its own process: load data and model, run each LoadGen mode, score accuracy.

LoadGen keeps process-wide state (it counts conf files loaded, and a second FromConfig poisons the log), so
`subtool run` starts this module as a child process: `python -m subtool.runner.session SPEC.json`. The child
writes its outcome (or the error it stopped on) to the spec's `result_path`; the parent owns the run directory.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from subtool.errors import SubtoolError, hand_errors_to
from subtool.fsutil import atomic_write_json, atomic_write_text


@dataclass
class SessionSpec:
    model: str
    scenario: str
    modes: list[str]
    model_path: str
    dataset_path: str
    user_conf: str
    stage: str
    cache_dir: str
    result_path: str
    batch_size: int | None = None  # None: the default (32), and the workload may choose its own
    threads: int | None = None
    precision: str = "fp32"
    backend: str = "torch-cpu"
    demo: bool = False
    compliance: list[str] = field(default_factory=list)  # e.g. ["TEST01"], run after the modes
    extra: dict = field(default_factory=dict)  # backend-specific options (e.g. endpoint URL)
    round: str | None = None  # the submission round the run is for; None: LoadGen's own
    seeds: dict | None = None  # that round's RNG seeds, when they are not LoadGen's built-in ones
    # a short run whose user.conf subtool wrote: the settings in it, which the session sizes to the SUT
    # (runner/sizing.py) and writes back; None: the user.conf is taken as given
    short_settings: dict | None = None
    user_conf_header: str = ""
    quiet: bool = False  # print nothing (errors still come back through result_path)
    progress_path: str | None = None  # each finished mode noted here as it finishes (runner/interrupted.py)


def run_session(spec: SessionSpec, console, report=None) -> dict:
    """The session's phases: the data, the SUT and QSL, LoadGen's settings and seeds, each mode and compliance
    test, and the record of it all for run.json. `report(outcome)`, when given, gets the record marked
    `teardown: pending` once every LoadGen run has finished, before the SUT and QSL are shut down, so that a
    process killed in the shutdown (a native crash in a library's teardown) still leaves the finished runs'
    record (api._run_child decides what to make of it)."""
    from subtool.mlperf.round import loadgen_names
    from subtool.runner.harness import load_test_settings
    from subtool.runner.workload import get_workload

    say = console.print
    workload = get_workload(spec.model)
    lg_model, lg_scenario = loadgen_names(workload.spec.loadgen_model, spec.scenario)
    model_path = Path(spec.model_path)
    workload.check_model(model_path)
    config = _sut_config(spec)
    workload.check_backend(model_path, config)
    data = _load_data(spec, workload, model_path, say)
    sut = workload.make_sut(model_path, data, config)
    qsl = workload.make_qsl(data)
    try:
        sizer = _short_sizer(spec, workload, sut, qsl, data.sample_count, say)
        settings = load_test_settings(Path(spec.user_conf), lg_model, lg_scenario)
    except BaseException:
        sut.stop()
        qsl.destroy()
        raise
    seeds = _seeds(spec, settings, say)
    try:
        modes, compliance, tstamps, sut_stats = _runs(spec, workload, data, sut, qsl, settings, sizer, say)
        # arrives resolved (the family's resolve_precision), except on Ray, whose workers resolve `auto` against
        # the backend they run once they see the cluster's GPUs: that SUT says which
        precision = sut.precision if spec.precision == "auto" else spec.precision
        outcome = {
            "ok": True,
            "samples": data.sample_count,
            "description": data.description,
            "dataset_sha256": data.dataset_sha256,
            "modes": modes,
            "compliance": compliance,
            "tstamps": tstamps,
            "precision": precision,
            "sut_stats": sut_stats,
            "seeds": seeds,
            # what the weights ran in, where the SUT knows better than the precision's name (bert fp8's fallback)
            "measurements": workload.measurements(
                spec.demo, model_path, getattr(sut, "weight_data_types", None) or precision
            ),
            **({"settings": sizer.settings, "sizing": sizer.record()} if sizer is not None else {}),
        }
        if report is not None:
            report({**outcome, "teardown": "pending"})
    except BaseException as exc:
        _stop_after(exc, sut, qsl)
        raise
    try:
        sut.stop()
    finally:
        qsl.destroy()
    return outcome


def _stop_after(exc: BaseException, sut, qsl) -> None:
    """Stop the SUT and free the QSL while `exc` is on its way out. Where the SUT failed, its own error (its rule:
    run.sut_error, run.endpoint_failed, a tensor-parallel rank's) is the cause of an error LoadGen or the session
    raised after it, and replaces it; an interruption (Ctrl-C, a signal) stays what it is."""
    try:
        sut.stop()
    except SubtoolError as failed:
        if isinstance(exc, SubtoolError):
            raise failed from None
    finally:
        qsl.destroy()


def _load_data(spec: SessionSpec, workload, model_path: Path, say):
    """The workload's data set, and a warning when its size is not the official one (no closed division)."""
    t0 = time.time()
    data = workload.load(model_path, Path(spec.dataset_path), Path(spec.cache_dir))
    say(f"data: {data.description} ({time.time() - t0:.1f} s)")
    if data.sample_count != workload.spec.sample_count:
        say(
            f"[yellow]warning[/]: {data.sample_count} samples; the official {workload.spec.name} data set has "
            f"{workload.spec.sample_count}, so this result cannot go to the closed division"
        )
    return data


def _sut_config(spec: SessionSpec):
    """The SUT's options, made once: checked before the data loads (workload.check_backend), then the SUT's."""
    from subtool.runner.workload import SutConfig

    return SutConfig(
        backend=spec.backend,
        precision=spec.precision,
        batch_size=spec.batch_size or 32,
        batch_size_given=spec.batch_size is not None,
        threads=spec.threads,
        extra=dict(spec.extra),
    )


def _seeds(spec: SessionSpec, settings, say) -> dict:
    """LoadGen's RNG seeds as the run uses them, and who set them: mlperf.conf's, or the round's official ones."""
    from subtool.runner.harness import settings_seeds, use_round_seeds

    if use_round_seeds(settings, spec.seeds):
        say(f"seeds: the {spec.round} round's official RNG seeds (LoadGen's built-in ones are another round's)")
        return {**settings_seeds(settings), "set_by": f"subtool ({spec.round} official seeds)"}
    return {**settings_seeds(settings), "set_by": "loadgen mlperf.conf"}


def _runs(spec: SessionSpec, workload, data, sut, qsl, settings, sizer, say) -> tuple[dict, dict, list, dict]:
    """(modes, compliance, tstamps, sut_stats): each mode, then each compliance test, between two timestamps."""
    from subtool.mlperf.run_record import date_u

    tstamps = [date_u()]
    modes: dict = {}
    for mode in spec.modes:
        modes[mode] = _run_mode(mode, spec, workload, data, sut, qsl, settings, sizer, say)
        _refuse_failed(sut, f"{mode} run")
        _note_progress(spec, modes, tstamps[0], sizer)
    compliance = {}
    for test in spec.compliance:
        compliance[test] = _run_compliance(test, workload, data, sut, qsl, settings, spec, Path(spec.stage), say)
        _refuse_failed(sut, f"{test} compliance run")
    tstamps.append(date_u())
    # how the work was spread (Ray: workers, nodes, lost workers, re-issued samples; GPU: batches, graphs)
    return modes, compliance, tstamps, _sut_stats(sut)


def _refuse_failed(sut, what: str) -> None:
    """End the session when the SUT failed during `what`: it answered LoadGen's queries empty from then on (so
    LoadGen ended the run, often VALID at an absurd rate), and a mode so ended is never kept nor reused."""
    failure = getattr(sut, "failure", None)
    if failure is not None:
        raise SubtoolError(
            f"the SUT failed during the {what}: {failure}; nothing of that run is kept",
            rule="run.sut_error",
            hint="fix what the error names and run again",
        )


def _note_progress(spec: SessionSpec, modes: dict, started: str, sizer) -> None:
    """The modes finished so far, for the parent to keep if the session stops before its end."""
    if spec.progress_path is None:
        return
    sized = {}
    if sizer is not None and "performance" in modes:
        sized = {"settings": sizer.settings, "sizing": sizer.record()}
    atomic_write_json(spec.progress_path, {"modes": modes, "started": started, **sized})
    _failpoint_after(next(reversed(modes)))


def _failpoint_after(mode: str) -> None:
    """Fault injection for the tests of runner/interrupted.py: SUBTOOL_SESSION_FAILPOINT=<mode> ends the session
    process at once after that mode finished (as a crash or a signal would)."""
    import os

    if os.environ.get("SUBTOOL_SESSION_FAILPOINT") == mode:
        os._exit(1)


def _run_mode(mode: str, spec: SessionSpec, workload, data, sut, qsl, settings, sizer, say) -> dict:
    """One LoadGen mode into its folder of the stage; its run.json entry (result, or accuracy metrics)."""
    from subtool.runner.harness import RESULT_UNITS, result_in_units, run_loadgen

    stage = Path(spec.stage)
    outdir = stage / ("performance/run_1" if mode == "performance" else "accuracy")
    say(f"loadgen: {spec.model} {spec.scenario} {mode} …")
    t1 = time.time()
    if mode == "performance" and sizer is not None:
        lg_run = sizer.run(settings, outdir)
    else:
        lg_run = run_loadgen(sut.handle, qsl.handle, settings, scenario=spec.scenario, mode=mode, outdir=outdir)
    if lg_run.errors:
        raise SubtoolError(
            f"LoadGen reported errors: {loadgen_errors(lg_run.errors)}",
            path=outdir / "mlperf_log_detail.txt",
            rule="run.loadgen_error",
        )
    entry: dict = {"dir": str(outdir.relative_to(stage)), "seconds": round(time.time() - t1, 2)}
    if mode == "performance":
        entry.update(
            result_validity=lg_run.validity,
            result=result_in_units(spec.scenario, lg_run.result),  # SingleStream/MultiStream: ns → ms
            result_field=lg_run.result_field,
            units=RESULT_UNITS[spec.scenario],
        )
        # a workload may report in its own units (the LLMs: tokens/s, TTFT/TPOT percentiles)
        perf_metrics = getattr(workload, "performance_metrics", None)
        if perf_metrics is not None:
            entry.update(perf_metrics(outdir / "mlperf_log_detail.txt", spec.scenario))
        _check_interactive_limits(spec, entry, outdir / "mlperf_log_detail.txt")
        for line in summary_lines(entry, token_latencies=workload.spec.token_metrics):
            say(line)
    else:
        metrics, line = workload.accuracy(data, outdir / "mlperf_log_accuracy.json")
        atomic_write_text(outdir / "accuracy.txt", line + "\n")
        entry["metrics"] = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        # counts as counts (gen_num = 13368), scores to 4 places, never an exponent
        say(
            "  " + "  ".join(f"{k} = {round(v, 4) if isinstance(v, float) else v}" for k, v in entry["metrics"].items())
        )
    return entry


def _check_interactive_limits(spec: SessionSpec, entry: dict, detail: Path) -> None:
    """An Interactive run must have run under the round's Interactive TTFT/TPOT limits: LoadGen takes them from its
    built-in mlperf.conf for the `-interactive` model, which an older LoadGen lacks (it then runs the defaults)."""
    from subtool.mlperf.round import LLM_TOKEN_LIMITS

    wanted = LLM_TOKEN_LIMITS.get(spec.model, {}).get("Interactive")
    if spec.scenario != "Interactive" or wanted is None:
        return
    applied = entry.get("limits") or {}
    if (applied.get("ttft_ms"), applied.get("tpot_ms")) != (wanted[0] / 1e6, wanted[1] / 1e6):
        raise SubtoolError(
            f"LoadGen ran this Interactive run with TTFT/TPOT limits {applied.get('ttft_ms')} / "
            f"{applied.get('tpot_ms')} ms; {spec.model}'s Interactive limits are {wanted[0] / 1e6:g} / "
            f"{wanted[1] / 1e6:g} ms",
            path=detail,
            rule="run.interactive_limits",
            hint="use a LoadGen whose mlperf.conf has the -interactive models (mlcommons-loadgen 5.1.1 or newer) "
            "and leave ttft_latency / tpot_latency out of user.conf",
        )


SUMMARY_PERCENTILES = ("p50", "p90", "p95", "p97", "p99")
_SUMMARY_LATENCIES = (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"))


def summary_lines(entry: dict, *, token_latencies: bool) -> list[str]:
    """The performance mode's console summary: the result in its units, then for runs with token latencies the
    TTFT and TPOT percentiles (ms) LoadGen logged, with the limits it applied; a value the log lacks is n/a."""
    value, units = entry.get("result"), str(entry.get("units") or "")
    unit = "ms" if units.startswith("Latency") else units
    shown = "n/a" if not isinstance(value, (int, float)) else f"{value:,.3f}".rstrip("0").rstrip(".")
    lines = [f"  {entry.get('result_field')} = {shown} {unit}  ({entry.get('result_validity')})"]
    if not token_latencies:
        return lines
    limits = entry.get("limits") or {}
    for key, name in _SUMMARY_LATENCIES:
        found = entry.get(key) or {}
        cells = "  ".join(f"{p} {found[p]:g}" if p in found else f"{p} n/a" for p in SUMMARY_PERCENTILES)
        limit = f"  (limit {limits[key]:g})" if key in limits else ""
        lines.append(f"  {name} ms: {cells}{limit}")
    return lines


def _short_sizer(spec: SessionSpec, workload, sut, qsl, sample_count: int, say):
    """For a short run with subtool's own user.conf: measure the SUT where the scenario needs it, write the
    sized settings into user.conf (before LoadGen reads it), and return the ShortRun that grows the
    performance run until LoadGen calls it VALID. None for other runs."""
    if spec.short_settings is None:
        return None
    from subtool.mlperf.round import loadgen_names
    from subtool.runner import sizing

    lg_model, lg_scenario = loadgen_names(workload.spec.loadgen_model, spec.scenario)
    settings, probe = dict(spec.short_settings), None
    if sizing.needs_probe(lg_scenario, settings):
        say(f"short run: measuring the SUT to size the {spec.scenario} run …")
        probe = sizing.probe(sut.handle, qsl.handle, lg_scenario, sample_count)
        settings = sizing.initial(lg_scenario, settings, probe)
    run = sizing.ShortRun(
        sut=sut.handle,
        qsl=qsl.handle,
        scenario=lg_scenario,
        loadgen_model=lg_model,
        user_conf=Path(spec.user_conf),
        header=spec.user_conf_header,
        settings=settings,
        probe=probe,
        say=say,
        failure=lambda: getattr(sut, "failure", None),
    )
    run.write_conf()
    return run


def _sut_stats(sut) -> dict | None:
    """A SUT's counters, whether it offers them as a method (Ray, torch-cuda) or a dataclass (CPU SUTs)."""
    import dataclasses

    stats = getattr(sut, "stats", None)
    if callable(stats):
        return stats()
    if dataclasses.is_dataclass(stats):
        return dataclasses.asdict(stats)
    return None


def _run_compliance(test, workload, data, sut, qsl, settings, spec: SessionSpec, stage: Path, say) -> dict:
    if test == "TEST06":
        return _run_test06(workload, data, sut, qsl, settings, spec, stage, say)
    return _run_test01(test, workload, data, sut, qsl, settings, spec, stage, say)


def _audited_run(test, workload, sut, qsl, settings, spec: SessionSpec, stage: Path, say):
    """The test's performance run under its official audit settings: TEST0x/performance/run_1/ holds its logs
    and TEST0x/accuracy/mlperf_log_accuracy.json the responses LoadGen sampled. Returns (LoadGen run, test dir)."""
    import shutil

    from subtool.runner import compliance as comp
    from subtool.runner.harness import run_loadgen

    test_dir = stage / test
    if test_dir.exists():
        shutil.rmtree(test_dir)
    audit = comp.write_audit_config(stage / f".audit-{test}.config", workload.spec.loadgen_model, test)
    perf_dir = test_dir / "performance" / "run_1"
    say(f"loadgen: {spec.model} {spec.scenario} {test} (performance run with accuracy sampling) …")
    try:
        lg_run = run_loadgen(
            sut.handle,
            qsl.handle,
            settings,
            scenario=spec.scenario,
            mode="performance",
            outdir=perf_dir,
            audit_config=audit,
        )
    finally:
        audit.unlink(missing_ok=True)
    if lg_run.errors:
        raise SubtoolError(
            f"LoadGen reported errors: {loadgen_errors(lg_run.errors)}",
            path=perf_dir / "mlperf_log_detail.txt",
            rule="run.loadgen_error",
        )
    acc_dir = test_dir / "accuracy"
    acc_dir.mkdir(parents=True, exist_ok=True)
    shutil.move(perf_dir / "mlperf_log_accuracy.json", acc_dir / "mlperf_log_accuracy.json")
    return lg_run, test_dir


def _run_test06(workload, data, sut, qsl, settings, spec: SessionSpec, stage: Path, say) -> dict:
    """TEST06 checks the audited run's answers on their own: no submission run to compare with."""
    from subtool.runner import compliance as comp

    token_output = getattr(workload, "token_output", None)
    if token_output is None:
        raise SubtoolError(
            f"TEST06 checks token answers; {spec.model} does not answer in tokens", rule="run.compliance"
        )
    dtype, eos_token_id = token_output(data)
    lg_run, test_dir = _audited_run("TEST06", workload, sut, qsl, settings, spec, stage, say)
    outcome = comp.verify_test06(
        test_dir / "accuracy" / "mlperf_log_accuracy.json",
        scenario=spec.scenario,
        dtype=dtype,
        eos_token_id=eos_token_id,
    )
    atomic_write_text(test_dir / "verify_accuracy.txt", outcome.text)
    say(
        f"  TEST06: {outcome.samples} answers; first token {outcome.first_token}, EOS {outcome.eos}, "
        f"sample length {outcome.sample_length} → {'PASS' if outcome.passed else 'FAIL'}"
    )
    return {
        "dir": "TEST06",
        "accuracy_pass": outcome.passed,
        "first_token": outcome.first_token,
        "eos": outcome.eos,
        "sample_length": outcome.sample_length,
        "samples": outcome.samples,
        "result": lg_run.result,
    }


def _run_test01(test, workload, data, sut, qsl, settings, spec: SessionSpec, stage: Path, say) -> dict:
    """An audited performance run plus its verification against this run directory's own results."""
    from subtool.runner import compliance as comp

    reference_acc = stage / "accuracy" / "mlperf_log_accuracy.json"
    reference_perf = stage / "performance" / "run_1" / "mlperf_log_detail.txt"
    for needed in (reference_acc, reference_perf):
        if not needed.is_file():
            raise SubtoolError(
                f"{test} compares with the submission's own runs, and this one is missing",
                path=needed,
                rule="run.compliance_needs_runs",
                hint="run --mode both (or run the missing mode first) before --compliance",
            )
    lg_run, test_dir = _audited_run(test, workload, sut, qsl, settings, spec, stage, say)
    perf_dir = test_dir / "performance" / "run_1"
    acc_dir = test_dir / "accuracy"
    sampled_log = acc_dir / "mlperf_log_accuracy.json"
    v_acc = comp.verify_accuracy(reference_acc, sampled_log)
    v_perf = comp.verify_performance(reference_perf, perf_dir / "mlperf_log_detail.txt")
    atomic_write_text(test_dir / "verify_accuracy.txt", v_acc.text)
    atomic_write_text(test_dir / "verify_performance.txt", v_perf.text)
    entry = {"dir": test, "accuracy_pass": v_acc.passed, "performance_pass": v_perf.passed, "result": lg_run.result}
    if hasattr(workload, "accuracy_on_samples"):
        sampled = {int(e["qsl_idx"]) for e in json.loads(sampled_log.read_text())}
        baseline, baseline_line = workload.accuracy_on_samples(data, reference_acc, sampled)
        observed, observed_line = workload.accuracy_on_samples(data, sampled_log, sampled)
        atomic_write_text(acc_dir / "baseline_accuracy.txt", baseline_line + "\n")
        atomic_write_text(acc_dir / "compliance_accuracy.txt", observed_line + "\n")
        atomic_write_text(acc_dir / "accuracy.txt", observed_line + "\n")
        entry.update(baseline=baseline, compliance=observed, samples=len(sampled))
    verdict = "PASS" if v_acc.passed else _test01_fallback(spec, entry)
    say(f"  {test}: accuracy {verdict}, performance {'PASS' if v_perf.passed else 'FAIL'}")
    return entry


def _test01_fallback(spec: SessionSpec, entry: dict) -> str:
    """TEST01's verdict where the sampled responses are not the accuracy run's bytes (batching on a CPU changes the
    last bits of a logit): the checker's fallback compares the two accuracies on the sampled questions. Said as
    "FAIL" alone, a run the checker passes looked failed."""
    from subtool.mlperf.round import round_config, test01_delta
    from subtool.mlperf.rounds import DEFAULT_VERSION

    base, comp = entry.get("baseline"), entry.get("compliance")
    rules = round_config(spec.round or DEFAULT_VERSION).model(spec.model)
    if not isinstance(base, dict) or not isinstance(comp, dict) or rules is None:
        return "FAIL (responses differ from the accuracy run's)"
    checked = {b.metric.lower() for b in rules.accuracy(spec.scenario)}  # the metrics the checker compares
    worst = ""
    for metric in sorted(m for m in set(base) & set(comp) if m.lower() in checked):
        b, c = base[metric], comp[metric]
        if not isinstance(b, (int, float)) or not isinstance(c, (int, float)) or not c:
            continue
        delta, allowed = test01_delta(spec.model, metric, b, c)
        if delta > allowed:
            entry["accuracy_fallback_pass"] = False
            return f"FAIL ({metric} {c:g} against the accuracy run's {b:g}: {delta:.3f} % apart, {allowed:g} % allowed)"
        worst = worst or f"{metric} {c:g} against {b:g}"
    if not worst:
        return "FAIL (responses differ from the accuracy run's, and no accuracy of theirs to compare)"
    entry["accuracy_fallback_pass"] = True
    return f"PASS by the accuracy comparison (responses differ byte for byte; {worst} on the sampled questions)"


def loadgen_errors(errors: list[str], most: int = 5) -> str:
    """LoadGen's error messages for one line: each once, with how often it came (it logs one per sample: 49 kB
    for 8 samples of "Number of tokens need to be greater than 1"), at most `most` of them."""
    counts: dict[str, int] = {}
    for message in errors:
        counts[message] = counts.get(message, 0) + 1
    said = [f"{m} (×{n})" if n > 1 else m for m, n in list(counts.items())[:most]]
    more = len(counts) - most
    return "; ".join(said) + (f"; and {more} other messages" if more > 0 else "")


def session_console(quiet: bool, file=None):
    """The session's console: a line is never broken (its stderr is a pipe to the parent, which rich would wrap at
    80 columns, splitting `gen_len = 2650120` over two lines of the log)."""
    from rich.console import Console

    return Console(stderr=file is None, file=file, quiet=quiet, soft_wrap=True)


def main(argv: list[str]) -> int:
    spec_file = Path(argv[0])
    spec = SessionSpec(**json.loads(spec_file.read_text()))
    # read once, then gone: it may hold an --endpoint's password, and a subtool killed by SIGKILL cannot remove it
    spec_file.unlink(missing_ok=True)
    console = session_console(spec.quiet)
    pending: list[dict] = []

    def report(record: dict) -> None:
        pending.append(record)
        atomic_write_json(spec.result_path, record)

    # a thread that must end this process (tp_launch's stall watch) leaves its error where the parent reads it
    hand_errors_to(lambda err: atomic_write_json(spec.result_path, _error_outcome(err)))
    try:
        outcome = run_session(spec, console, report=report)
    except SubtoolError as err:
        outcome = _error_outcome(err)
    except Exception as exc:  # as the CLI does in its own process: one line, the traceback only when asked
        outcome = {"ok": False, "error": _unexpected(exc, in_teardown=bool(pending))}
    atomic_write_json(spec.result_path, outcome)
    return 0 if outcome["ok"] else 2


def _error_outcome(err: SubtoolError) -> dict:
    """The outcome of a session that stopped on `err`: the parent raises it again, as one line."""
    fields = {"message": err.message, "path": err.path, "rule": err.rule, "hint": err.hint}
    return {"ok": False, "error": {**fields, "exit_code": err.exit_code}}


def _unexpected(exc: Exception, in_teardown: bool) -> dict:
    """An error no check foresaw (a library's own exception type on a file it parses, or a bug): the error line
    the parent prints, instead of a traceback and 'the benchmark process died' naming its staging folder. After
    every LoadGen run finished (`in_teardown`) it is the SUT's shutdown that failed: not a finished session."""
    import os
    import traceback

    from subtool.errors import EXIT_BUG, exception_line

    debug = bool(os.environ.get("SUBTOOL_DEBUG"))
    if debug:
        traceback.print_exception(exc)
    what = exception_line(exc)
    if in_teardown:
        message, rule = (
            f"the benchmark failed while shutting the SUT down, after every LoadGen run ({what})",
            "run.crashed",
        )
    else:
        message, rule = (
            f"the benchmark failed unexpectedly ({what}): a bug in subtool, or an input not yet checked",
            "internal",
        )
    return {
        "message": message,
        "path": None,
        "rule": rule,
        "hint": None if debug else "run it again with SUBTOOL_DEBUG=1 for the traceback, and report it",
        "exit_code": EXIT_BUG,
    }


def spec_to_file(spec: SessionSpec, path: Path) -> Path:
    return atomic_write_json(path, asdict(spec))


PARENT_ENV = "SUBTOOL_SESSION_PARENT"  # the pid of the subtool that started this process


def die_with_parent() -> None:
    """Linux: this process is sent SIGKILL when the subtool that started it dies. Killed by SIGKILL itself, that
    subtool cannot kill its children: an orphan session kept writing into its staging folder, which the next run
    removed and ran a second benchmark beside it."""
    import ctypes
    import os
    import signal

    parent = os.environ.get(PARENT_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # it died before the call
        os._exit(1)


if __name__ == "__main__":
    die_with_parent()
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:  # Ctrl-C reaches this process too (one process group): the parent reports it
        sys.exit(130)
