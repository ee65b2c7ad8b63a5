"""`subtool run`: one benchmark scenario through LoadGen into a run directory (format: docs/architecture.md)."""

from __future__ import annotations

import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from subtool import __version__
from subtool.errors import EXIT_INTERRUPTED, SubtoolError
from subtool.fsutil import staged_directory, wrong_kind
from subtool.mlperf.round import loadgen_names
from subtool.mlperf.run_record import RUN_SCHEMA, load_run_record, schema_problems, write_run_record
from subtool.mlperf.user_conf import check_user_conf
from subtool.runner import interrupted
from subtool.runner.backend import check_run_extra, resolve_backend
from subtool.runner.harness import MODES, check_scenario, user_conf_settings, write_user_conf
from subtool.runner.inputs import RunInputs, assets_record, check_run_hash, resolve_inputs
from subtool.runner.session import PARENT_ENV, SessionSpec, spec_to_file

ENV_KEYS = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "SUBTOOL_CACHE", "HF_HUB_OFFLINE")


@dataclass
class RunOptions:
    model: str = "bert-99"
    scenario: str = "Offline"
    mode: str = "both"
    model_path: Path | None = None
    dataset_path: Path | None = None
    out: Path = Path("subtool-out/runs")
    run_style: str = "short"
    target_qps: float | None = None
    target_latency_ms: float | None = None
    min_duration_ms: int | None = None
    user_conf: Path | None = None
    backend: str = "auto"
    precision: str = "auto"
    batch_size: int | None = None
    threads: int | None = None
    compliance: list[str] | None = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # backend-specific options, passed to the SUT
    argv: list[str] = field(default_factory=list)
    round: str | None = None  # --version: the round the run is for (its RNG seeds); None: run_benchmark decides
    demo: bool = False  # --demo: the embedded demo even when `subtool fetch` installed the model's files
    inputs: RunInputs | None = None  # what the run reads, decided once (runner/inputs.py); None: not yet
    assets: Path | None = None  # --assets: the cache `subtool fetch --to` installed into; None: cache_root()
    quiet: bool = False  # the benchmark process prints nothing (find-perf's probes: one line each, its own)
    fresh: bool = False  # run every mode, reusing none an interrupted run kept (`all --force`)


def run_dir_for(out: Path, model: str, scenario: str) -> Path:
    return Path(out) / model / scenario


def _modes(mode: str) -> list[str]:
    if mode == "both":
        return list(MODES)
    if mode in MODES:
        return [mode]
    raise SubtoolError(f"unknown mode {mode!r}; choose performance, accuracy or both", rule="run.mode")


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SubtoolError(
            f"cannot create the output directory: {exc.strerror}", path=out, rule="run.out_dir"
        ) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise SubtoolError("output directory is not writable", path=out, rule="run.out_dir")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"subtool": __version__, "python": platform.python_version()}
    for dist, key in (("mlcommons-loadgen", "loadgen"), ("torch", "torch"), ("transformers", "transformers")):
        try:
            out[key] = version(dist)
        except PackageNotFoundError:
            out[key] = "absent"
    return out


def run_benchmark(opts: RunOptions, console=None) -> dict:
    """Decide what the user left open (round, backend, precision), then run: the run record (run.json)."""
    say = console.print if console is not None else (lambda *a, **k: None)
    return run_decided(decide(opts, say), say)


def decide(opts: RunOptions, say) -> RunOptions:
    """The options with every choice made, once: the round (--version, else the default or the latest round
    that lists the model, said when subtool chose it), the backend, the precision (the family's
    resolve_precision), the checkpoint and data set (given, fetched or the demo's: runner/inputs.py). Everything
    is checked here, before any data or weights load."""
    import dataclasses

    from subtool.runner.workload import get_workload

    workload = get_workload(opts.model)
    spec = workload.spec
    opts, scenario = check_options(opts)
    version = run_round(spec.name, opts.round, say)
    _check_round_scenario(spec.name, scenario, version)
    backend = resolve_backend(opts.backend, spec, say)
    opts = resolve_inputs(opts, say)
    precision = workload.resolve_precision(backend, opts.precision, model_path=opts.model_path)
    _check_inputs(opts)
    check_run_extra(backend)  # last: a wrong option is named first, even where the packages are missing too
    return dataclasses.replace(
        opts,
        scenario=scenario,
        round=version,
        backend=backend,
        precision=precision,
        compliance=list(opts.compliance or []),
    )


def check_options(opts: RunOptions, version: str | None = None) -> tuple[RunOptions, str]:
    """The checks of `decide` that need nothing but the options and the files they name (the scenario, in
    `version` when given, the modes, the compliance tests, user.conf): `all` makes them before it starts any
    stage. Returns the options with the compliance tests' names settled (test06 is TEST06) and the scenario's
    own spelling."""
    import dataclasses

    from subtool.runner.workload import get_workload

    spec = get_workload(opts.model).spec
    scenario = check_scenario(opts.scenario)
    if scenario not in spec.scenarios:
        raise SubtoolError(
            f"{spec.name} has no {scenario} scenario; choose one of {', '.join(spec.scenarios)}", rule="run.scenario"
        )
    _modes(opts.mode)
    opts = dataclasses.replace(opts, compliance=[t.upper() for t in opts.compliance or []])
    unknown = [t for t in opts.compliance if t not in spec.compliance]
    if unknown:
        raise SubtoolError(
            f"compliance test {', '.join(unknown)} does not apply to {spec.name} or is not run by "
            f"subtool (available: {', '.join(spec.compliance) or 'none'})",
            rule="run.compliance",
        )
    _check_compliance_runs(opts)
    if version is not None:
        _check_round_scenario(spec.name, scenario, version)
    if opts.user_conf is not None:  # before the backend, the data and the model are looked at
        conf = Path(opts.user_conf)
        if not conf.is_file():
            why = f"{wrong_kind(conf)}, not a user.conf file" if conf.exists() else "not found"
            raise SubtoolError(f"user.conf {why}", path=opts.user_conf, rule="run.user_conf")
        check_user_conf(conf, *loadgen_names(spec.loadgen_model, scenario))
    return opts, scenario


# what TEST01/TEST04 compare their audited run with: the submission's own runs, this run's or a kept earlier one
_COMPARED_WITH = {
    "accuracy": Path("accuracy") / "mlperf_log_accuracy.json",
    "performance": Path("performance") / "run_1" / "mlperf_log_detail.txt",
}


def _check_compliance_runs(opts: RunOptions) -> None:
    """A compliance test that compares with a mode this run neither runs nor finds from an earlier run is refused
    before anything runs (else it fails after the whole performance run, rule run.compliance_needs_runs)."""
    tests = [t for t in opts.compliance or [] if t != "TEST06"]  # TEST06 checks its own answers
    if not tests:
        return
    modes = _modes(opts.mode)
    final_dir = run_dir_for(Path(opts.out), opts.model, opts.scenario)
    for mode, log in _COMPARED_WITH.items():
        if mode not in modes and not (final_dir / log).is_file():
            raise SubtoolError(
                f"{tests[0]} compares with the {mode} run, which --mode {opts.mode} does not run and no earlier "
                "run left here",
                path=final_dir / log,
                rule="run.compliance_needs_runs",
                hint=f"use --mode both, or run --mode {mode} first, before --compliance {tests[0]}",
            )


def run_round(model: str, version: str | None, say) -> str:
    """The round a run of `model` is for: --version, else the default round, or the latest round that lists
    the model (said, with why, when subtool chose it). Refuses a round subtool does not know."""
    from types import SimpleNamespace

    from subtool.mlperf.round_choice import announce, choose_round

    chosen = announce(choose_round([model], version), SimpleNamespace(print=say)).version
    round_seeds(chosen)
    return chosen


def _check_round_scenario(model: str, scenario: str, version: str) -> None:
    """Interactive only for a benchmark whose round lists it (llama2-70b from v5.1, llama3.1-8b, …): LoadGen
    would otherwise run it under a model name its mlperf.conf may not know, with the Server limits."""
    from subtool.mlperf.round import round_config

    if scenario != "Interactive":
        return
    rules = round_config(version).model(model)
    if rules is None or not rules.lists_scenario("Interactive"):
        raise SubtoolError(
            f"{model} has no Interactive scenario in round {version}",
            rule="run.scenario",
            hint="choose a round that has it with --version, or run Server",
        )


def _check_inputs(opts: RunOptions) -> None:
    if opts.dataset_path is not None and not Path(opts.dataset_path).is_file():
        if Path(opts.dataset_path).exists():  # a folder, a FIFO, a device: there, but no data set
            raise SubtoolError(
                "not a regular file (a folder, FIFO or device)", path=opts.dataset_path, rule="dataset.unreadable"
            )
        raise SubtoolError("dataset file not found", path=opts.dataset_path, rule="dataset.missing")


def run_decided(opts: RunOptions, say) -> dict:
    """Run options `decide` returned: the LoadGen session in a child process, into the run directory."""
    from subtool.runner.demo_assets import cache_root
    from subtool.runner.workload import get_workload

    workload = get_workload(opts.model)
    spec = workload.spec
    out = Path(opts.out)
    _check_writable(out)
    demo = opts.inputs.demo if opts.inputs is not None else opts.model_path is None and opts.dataset_path is None
    if demo:
        say(f"[cyan]demo[/]: embedded tiny {spec.name} model (random weights) on generated data — open division only")
        model_path, dataset_path = workload.demo_assets()
    else:
        model_path, dataset_path = Path(opts.model_path), Path(opts.dataset_path)
    workload.check_model(model_path)
    final_dir = run_dir_for(out, opts.model, opts.scenario)
    try:
        with staged_directory(final_dir) as stage:
            session, settings = _session(opts, spec, stage, (model_path, dataset_path, cache_root()), demo)
            mark = interrupted.fingerprint(session, stage, dataset_path, model_path)
            answers = interrupted.answers_fingerprint(session, dataset_path, model_path)
            previous = _carry_over_other_modes(final_dir, stage, session, (mark, answers), say)
            outcome = _run_keeping_finished_modes(session, stage, final_dir, mark, say, fresh=opts.fresh)
            if outcome.get("teardown"):
                from rich.markup import escape

                kept = escape(f"{outcome['teardown']}; the LoadGen logs are kept [run.teardown_crashed]")
                say(f"[yellow]warning[/]: {kept}")
            check_run_hash(opts.inputs, outcome.get("dataset_sha256"))
            settings = outcome.get("settings", settings)  # a short run's, as sized to the SUT
            record = _run_record(opts, spec, opts.scenario, demo, model_path, dataset_path, settings, outcome, previous)
            record["fingerprint"], record["answers_fingerprint"] = mark, answers
            write_run_record(stage, record)
    except BaseException:
        _remove_if_empty(final_dir.parent)  # a failed first run leaves no empty <model>/ folder behind
        raise
    interrupted.discard(interrupted.kept_dir(final_dir))  # a complete run directory: nothing left to reuse
    if record["waives"]:
        say(f"short run (not submittable): waives the official {'; '.join(record['waives'])}")
    say(f"run directory: {final_dir}")
    return record


def _run_keeping_finished_modes(
    session: SessionSpec, stage: Path, final_dir: Path, mark: str, say, *, fresh: bool = False
) -> dict:
    """The session in its child, reusing the modes an interrupted run with the same settings finished (none when
    `fresh`), and keeping those this one finishes if it stops early (runner/interrupted.py)."""
    import dataclasses

    where = interrupted.kept_dir(final_dir)
    if fresh:
        interrupted.discard(where)
    kept = interrupted.reuse(where, mark, stage, session.modes, say)
    session = dataclasses.replace(
        session,
        modes=[m for m in session.modes if m not in kept.modes],
        short_settings=None if "performance" in kept.modes else session.short_settings,
        progress_path=str(stage / interrupted.PROGRESS_NAME),
    )
    try:
        outcome = _run_child(session, stage)
    except BaseException:
        try:
            modes = interrupted.keep(stage, where, mark, kept)
        except OSError as exc:  # a full disk, say: the run's own error is the one to report
            from rich.markup import escape

            why = escape(f"the finished modes could not be kept in {where}: {exc.strerror or exc}")
            say(f"[yellow]warning[/]: {why}")
            modes = []
        if modes:
            say(f"kept the finished {' and '.join(modes)} run in {where}: the same command reuses it")
        raise
    finally:
        Path(session.progress_path).unlink(missing_ok=True)
    return interrupted.merged(outcome, kept)


def _session(opts: RunOptions, spec, stage: Path, paths: tuple[Path, Path, Path], demo: bool):
    """The user.conf in the stage (subtool's, or the user's copied) and the child's SessionSpec; the settings.
    `paths`: the checkpoint, the data set and subtool's cache."""
    model_path, dataset_path, cache = paths
    modes = _modes(opts.mode)
    user_conf = stage / "user.conf"
    header = f"written by subtool {__version__} (run style: {opts.run_style})"
    short_settings = None
    if opts.user_conf is not None:
        shutil.copyfile(opts.user_conf, user_conf)
        settings = {"from_file": str(opts.user_conf)}
    else:
        settings = user_conf_settings(
            opts.scenario,
            opts.run_style,
            spec.sample_count,
            target_qps=opts.target_qps,
            target_latency_ms=opts.target_latency_ms,
            min_duration_ms=opts.min_duration_ms,
            loadgen_model=spec.loadgen_model,
        )
        write_user_conf(user_conf, *loadgen_names(spec.loadgen_model, opts.scenario), settings, header=header)
        if opts.run_style == "short" and "performance" in modes:
            short_settings = dict(settings)  # the session sizes them to the SUT
    session = SessionSpec(
        model=spec.name,
        scenario=opts.scenario,
        modes=modes,
        model_path=str(model_path),
        dataset_path=str(dataset_path),
        user_conf=str(user_conf),
        stage=str(stage),
        cache_dir=str(cache / "features"),
        result_path=str(stage / ".session-result.json"),
        batch_size=opts.batch_size,
        threads=opts.threads,
        precision=opts.precision,
        backend=opts.backend,
        demo=demo,
        compliance=list(opts.compliance),
        extra=dict(opts.extra),
        round=opts.round,
        seeds=round_seeds(opts.round),
        short_settings=short_settings,
        user_conf_header=header,
        quiet=opts.quiet,
    )
    return session, settings


def round_seeds(version: str | None) -> dict[str, int] | None:
    """A submission round's official LoadGen RNG seeds (None: no round asked, LoadGen's built-in ones)."""
    if version is None:
        return None
    from subtool.mlperf.round import round_config
    from subtool.mlperf.rounds import check_version

    return dict(round_config(check_version(version)).seeds)


def _seeds_record(seeds: dict | None) -> dict | None:
    """run.json "seeds": the seeds LoadGen ran with, who set them, and the round they belong to."""
    if not seeds:
        return None
    from subtool.mlperf.round import round_of_seeds
    from subtool.runner.harness import SEED_KEYS

    values = {k: seeds[k] for k in SEED_KEYS}
    return {"round": round_of_seeds(*values.values()), **values, "set_by": seeds.get("set_by")}


def _run_child(session: SessionSpec, stage: Path) -> dict:
    """Run the LoadGen session in a child process and return its outcome, or raise the error it stopped on.

    A child killed by a signal (SIGABRT, SIGSEGV: a native library failing in its own teardown) after it reported
    every LoadGen run finished keeps those runs: the outcome comes back with `teardown` saying what happened and
    what could not run (the SUT's own end-of-run checks). Any other death before the final report is a crash."""
    from subtool.runner.child_process import run_child

    spec_file = spec_to_file(session, stage / ".session-spec.json")
    env = {**os.environ, PARENT_ENV: str(os.getpid())}  # it dies with this process (session.die_with_parent)
    try:
        returncode = run_child([sys.executable, "-m", "subtool.runner.session", str(spec_file)], env=env)
    finally:
        spec_file.unlink(missing_ok=True)
    return child_outcome(returncode, Path(session.result_path), stage)


def child_outcome(returncode: int, result_path: Path, stage: Path) -> dict:
    """What the session child that ended with `returncode` left in `result_path` (removed here): its outcome, or
    the error it stopped on raised again as the one line it said; a child Ctrl-C stopped, KeyboardInterrupt."""
    import json
    import signal

    try:
        outcome = json.loads(result_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        if returncode in (EXIT_INTERRUPTED, -signal.SIGINT):  # Ctrl-C reached the benchmark process (session.py)
            raise KeyboardInterrupt from None  # said as every interruption of a run is, and what finished is kept
        raise SubtoolError(
            f"the benchmark process died (exit code {returncode}) before reporting",
            path=stage,
            rule="run.crashed",
            hint="see the messages above; re-run the same command to try again",
        ) from None
    finally:
        result_path.unlink(missing_ok=True)
    if outcome.get("teardown") == "pending":
        if returncode in (EXIT_INTERRUPTED, -signal.SIGINT):  # Ctrl-C in the shutdown: an interruption, runs kept
            raise KeyboardInterrupt
        if returncode >= 0:  # a Python error in the shutdown, or an exit: not a finished session
            raise SubtoolError(
                f"the benchmark process stopped (exit code {returncode}) while shutting the SUT down",
                path=stage,
                rule="run.crashed",
                hint="see the messages above; re-run the same command to try again",
            )
        outcome["teardown"] = (
            f"the benchmark process was killed by signal {-returncode} while shutting the SUT down, after every "
            "LoadGen run had finished; the SUT's own end-of-run checks did not run"
        )
    if not outcome.get("ok"):
        err = outcome["error"]
        message, path = err["message"], err.get("path")
        where, staged = (Path(path).resolve() if path is not None else None), stage.resolve()
        if where is not None and where.is_relative_to(staged):
            # the staging folder goes with the failed run: name what the file was, not a path that is gone
            message, path = f"{message} (seen in the run's {where.relative_to(staged)})", None
        raise SubtoolError(
            message, path=path, rule=err.get("rule"), hint=err.get("hint"), exit_code=err.get("exit_code", 2)
        )
    return outcome


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def _carry_over_other_modes(final_dir: Path, stage: Path, session: SessionSpec, marks: tuple[str, str], say) -> dict:
    """The earlier run's modes and compliance tests this one does not run again, with their records, where they
    still hold for it: its accuracy run where the answers' fingerprint is the same (a performance-only re-run with
    a new user.conf keeps it), its performance run and compliance tests where the whole fingerprint is the same
    and no performance run replaces the one they were verified against (interrupted.fingerprint). Nothing of a
    run with another checkpoint, data set or options: one checkpoint's TEST01 stayed beside the next one's
    result, and check passed it."""
    if not final_dir.is_dir():
        return {}
    old = load_run_record(final_dir / "run.json")[0] or {}
    if schema_problems(old):
        old = {}  # a damaged record vouches for nothing
    mark, answers = marks
    same = old.get("fingerprint") == mark
    holds = {"accuracy": same or old.get("answers_fingerprint") == answers, "performance": same}
    for test in ("TEST01", "TEST04", "TEST06"):
        holds[test] = same and "performance" not in session.modes
    wanted = [n for n in holds if n not in session.modes + list(session.compliance) and (final_dir / n).is_dir()]
    dropped = [n for n in wanted if not holds[n]]
    if dropped:
        say(f"{final_dir}: the earlier {', '.join(dropped)} no longer hold for this run's settings: not kept")
    kept = {}
    for name in (n for n in wanted if holds[n]):
        shutil.copytree(final_dir / name, stage / name)
        entries = old.get("modes") if name in ("performance", "accuracy") else old.get("compliance")
        if isinstance(entries, dict) and name in entries:
            if name.startswith("TEST"):
                kept.setdefault("__compliance__", {})[name] = entries[name]
            else:
                kept[name] = entries[name]
    return kept


def _run_record(opts, spec, scenario, demo, model_path, dataset_path, settings, outcome, previous) -> dict:
    return {
        "schema": RUN_SCHEMA,
        "subtool_version": __version__,
        "model": spec.name,
        "scenario": scenario,
        "run_style": opts.run_style,
        "demo": demo,
        "division_hint": "open" if demo else "closed",
        "backend": opts.backend,
        "precision": outcome.get("precision", opts.precision),
        "batch_size": opts.batch_size,
        "sut": outcome.get("sut_stats"),
        "model_path": None if demo else str(model_path),
        "dataset_path": None if demo else str(dataset_path),
        "dataset_sha256": outcome["dataset_sha256"],
        "assets": assets_record(
            opts.inputs, None if demo else model_path, None if demo else dataset_path, outcome["dataset_sha256"]
        ),
        "samples": outcome["samples"],
        "data": outcome["description"],
        "versions": _versions(),
        "settings": settings,
        "tstamps": outcome["tstamps"],
        "command": list(opts.argv) or ["subtool", "run", "--model", spec.name, "--scenario", scenario],
        "env": {k: os.environ[k] for k in ENV_KEYS if k in os.environ},
        "modes": {**{k: v for k, v in previous.items() if k != "__compliance__"}, **outcome["modes"]},
        "compliance": {**previous.get("__compliance__", {}), **outcome.get("compliance", {})},
        "measurements": outcome["measurements"],
        "seeds": _seeds_record(outcome.get("seeds")),
        "sizing": outcome.get("sizing"),
        "waives": short_run_waives(scenario, opts.run_style, settings),
        "teardown": outcome.get("teardown"),  # None, or how the process died after its LoadGen runs finished
    }


def short_run_waives(scenario: str, run_style: str, settings: dict) -> list[str]:
    """The official minimums a short run does not meet, in words (run.json "waives"; empty for valid runs)."""
    if run_style != "short":
        return []
    out = ["600 s minimum duration (perf.min_duration)"]
    if str(settings.get("sample_concatenate_permutation", "")) == "0":
        out.append("equal-issue mode: the run issues part of the data set, not whole copies of it")
    return out


def accuracy_text(model: str, model_path: Path, dataset_path: Path, accuracy_log: Path) -> str:
    """accuracy.txt for a LoadGen accuracy log written by any harness, with the workload's own scoring.

    The log must come from the same data set and tokenizer (the sample indices refer to its features).
    """
    from subtool.runner.demo_assets import cache_root
    from subtool.runner.workload import get_workload

    workload = get_workload(model)
    workload.check_model(Path(model_path))
    data = workload.load(Path(model_path), Path(dataset_path), cache_root() / "features")
    _, line = workload.accuracy(data, Path(accuracy_log))
    return line + "\n"
