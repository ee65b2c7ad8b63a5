"""`subtool all`: run → package → check → pack (→ publish), resumable (the state: pipeline_state.py).

This module only sequences: each stage's api decides its own inputs from what the user gave; the round is
decided once, by the run stage's api, and every later stage is given that round.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from subtool import fsutil
from subtool.errors import EXIT_USAGE, SubtoolError
from subtool.fsutil import exclusive, file_identity, remove_leftovers
from subtool.mlperf.layout import check_name
from subtool.mlperf.rounds import DEFAULT_VERSION, VERSIONS
from subtool.pipeline_outcome import Outcome, print_summary
from subtool.pipeline_state import STAGES, State, file_digests, fingerprint, stage_runner, tree_digest
from subtool.runner.api import RunOptions


@dataclass
class PipelineOptions:
    submitter: str
    run: RunOptions = field(default_factory=RunOptions)  # the run stage's options (its out and mode are ours)
    out: Path = Path("subtool-out")
    division: str | None = None
    system: str | None = None
    system_file: Path | None = None
    version: str | None = None  # None: the run stage decides (the default round, or the latest for the model)
    name: str = "mlperf_submission_short"
    fork: str | None = None
    upstream: str | None = None
    base: str = "main"
    no_pr: bool = False
    allow_short: bool = False  # publish: DEMO / short-run trees are refused unless asked for (and then marked)
    replace: bool = False  # publish: the branch holds this tree only
    from_stage: str | None = None
    only: str | None = None
    force: bool = False
    compliance: list[str] | None = None  # None: what the model needs when the division is closed
    argv: list[str] = field(default_factory=list)
    wait: bool = False  # another subtool holds OUT: wait for it instead of stopping


def short_run_waivers(scenario: str, run_style: str) -> frozenset[str]:
    """The rules a short run breaks on purpose; the checker reports them as waived, by name."""
    if run_style != "short":
        return frozenset()
    # Only the duration: short runs are sized to meet every other official minimum LoadGen checks (query counts
    # for early stopping included), so no other rule needs waiving in any scenario.
    return frozenset({"perf.min_duration"})


# ----------------------------------------------------------------------------------------------- stages
def _selected(opts: PipelineOptions) -> list[str]:
    for name, value in (("--only", opts.only), ("--from-stage", opts.from_stage)):
        if value is not None and value not in STAGES:
            import difflib

            near = difflib.get_close_matches(str(value), STAGES, n=1)
            raise SubtoolError(
                f"{name} {value!r} is not a stage; stages: {', '.join(STAGES)}",
                rule="cli.usage",
                hint=f"did you mean {name} {near[0]}?" if near else None,
            )
    if opts.only:
        return [opts.only]
    start = STAGES.index(opts.from_stage) if opts.from_stage else 0
    return list(STAGES[start:])


def out_paths(out: Path, version: str) -> dict[str, Path]:
    """Where each stage writes. One tree per round: the default round's tree is OUT/submission (with check/,
    artifacts/, full_logs/ beside it); another round's lives under OUT/<round>/, so packing a v5.0 result never
    mixes rounds in one tree, and artifacts that said PASS are never overwritten by another round's."""
    out = Path(out)
    base = out if version == DEFAULT_VERSION else out / version
    return {
        "runs": out / "runs",
        "tree": base / "submission",
        "full_logs": base / "full_logs",
        "check": base / "check",
        "artifacts": base / "artifacts",
    }


def run_pipeline(opts: PipelineOptions, console=None) -> Outcome:
    from rich.console import Console

    console = console or Console(stderr=True)
    for flag, name in (("--submitter", opts.submitter), ("--system", opts.system)):
        if flag == "--submitter" or name is not None:
            check_name(name, flag[2:], flag=flag)
        fsutil.check_name_fits(name or "", opts.out, flag)
    _selected(opts)  # a misspelt --only or --from-stage, said before anything is fetched or decided
    opts = _decided(opts, console)
    _preflight(opts, console)
    selected = _selected(opts)
    if {"pack", "publish"} & set(selected):
        _refuse_other_submitters(out_paths(Path(opts.out), opts.version)["tree"], opts.submitter)
    out = Path(opts.out)

    def waiting(pid: str) -> None:
        console.print(
            f"waiting for subtool pid {pid}, which is writing to {out} (--wait)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    with exclusive(out, wait=opts.wait, on_wait=waiting):
        if not os.access(out, os.W_OK | os.X_OK):
            raise SubtoolError("output directory is not writable", path=out, rule="run.out_dir")
        written = {p for version in VERSIONS for p in out_paths(out, version).values()}  # subtool's folders only
        for left in remove_leftovers(out, within=sorted(written)):
            console.print(
                f"removed what an interrupted run left: {left}", markup=False, highlight=False, soft_wrap=True
            )
        return _run_stages(opts, out, selected, console)


def _decided(opts: PipelineOptions, console) -> PipelineOptions:
    """The round every stage works for, decided once by the run stage's api (and said when subtool chose it),
    and the checkpoint and data set the run reads (given, fetched or the demo's: the division follows from them).
    A closed result of a benchmark that round lists only in another variant would fail at packaging: say so
    before the run."""
    from subtool.mlperf.benchmarks import benchmark
    from subtool.mlperf.round_choice import refuse_closed
    from subtool.runner.api import run_round
    from subtool.runner.inputs import resolve_inputs

    version = run_round(opts.run.model, opts.version, console.print)
    opts = dataclasses.replace(opts, version=version, run=resolve_inputs(opts.run, console.print))
    bench = benchmark(opts.run.model)
    if bench is not None and _division(opts) == "closed":
        refuse_closed(bench, version)
    return dataclasses.replace(opts, run=dataclasses.replace(opts.run, round=version))


def _preflight(opts: PipelineOptions, console) -> None:
    """Every option a later stage reads, checked by that stage before the run starts (a run can take hours)."""
    from subtool.package.api import check_request

    check_name(opts.name, "artifact name", flag="--name")
    check_request(opts.system_file, opts.division, demo=_is_demo(opts))
    _refuse_overlaps(opts)
    if opts.fork and "publish" in _selected(opts):
        from subtool.publish.api import check_ready, probe_fork
        from subtool.publish.marks import refuse_short_ahead

        check_ready(opts.fork, opts.upstream, no_pr=opts.no_pr)
        unreachable = probe_fork(opts.fork, opts.base)
        if unreachable:
            console.print(f"warning: {unreachable}", markup=False, highlight=False, soft_wrap=True)
        if "run" in _selected(opts) and not opts.allow_short:  # else publish refuses it after the whole run
            refuse_short_ahead(
                demo=_is_demo(opts), run_style=opts.run.run_style, min_duration_ms=opts.run.min_duration_ms
            )
    if "run" in _selected(opts):
        from subtool.runner.api import check_options, check_run_extra

        runs = out_paths(Path(opts.out), opts.version)["runs"]  # as _do_run will run it
        # a scenario the model has not, a folder for --user-conf: said now, not once the run stage has begun
        check_options(dataclasses.replace(opts.run, mode="both", out=runs), opts.version)
        check_run_extra(opts.run.backend)


def _refuse_overlaps(opts: PipelineOptions) -> None:
    """The run's inputs are fingerprinted by their files' sizes and times: an OUT inside --model-path (`cd
    checkpoint && subtool all --model-path .`) or a --user-conf inside OUT changes with every run, so the
    benchmark would run again each time instead of being kept."""
    for flag, given in (("--model-path", opts.run.model_path), ("--dataset-path", opts.run.dataset_path)):
        if given is not None and fsutil.within(opts.out, given):
            raise SubtoolError(
                f"--out is inside {flag} {given}: what the run writes would change its own input",
                path=opts.out,
                rule="all.out_inside_input",
                hint="give --out a folder outside the checkpoint and the data set",
                exit_code=EXIT_USAGE,
            )
    if opts.run.user_conf is not None and fsutil.within(opts.run.user_conf, opts.out):
        raise SubtoolError(
            "--user-conf is inside --out, where the run writes its own user.conf",
            path=opts.run.user_conf,
            rule="all.user_conf_inside_out",
            hint="copy it outside --out and pass that copy",
            exit_code=EXIT_USAGE,
        )


def _refuse_other_submitters(tree: Path, submitter: str) -> None:
    """`all` checks --submitter's results, and pack would hand in the whole tree: a tree in --out that holds
    another submitter (an earlier run under another name) would go in unchecked and be scored as a second team."""
    from subtool.mlperf.layout import DIVISIONS

    for division in DIVISIONS:
        try:
            names = sorted(e.name for e in os.scandir(tree / division) if e.is_dir(follow_symlinks=False))
        except OSError:  # no such division yet (or not a folder: the check stage names that)
            continue
        other = next((n for n in names if n != submitter), None)
        if other is not None:
            raise SubtoolError(
                f"holds {division}/{other}, but this run is for {submitter}: pack would hand in both, and only "
                f"{submitter} is checked",
                path=tree,
                rule="all.other_submitter",
                hint=f"remove {tree / division / other} (an earlier run's, under another name) or use another --out",
            )


@dataclass
class _Context:
    """What every phase of one `all` works with."""

    opts: PipelineOptions
    paths: dict[str, Path]
    stage: object  # pipeline_state.stage_runner's stage(name, fingerprint, action, key, intact)
    outcome: Outcome
    console: object
    run_dir: Path
    result_key: str  # model/scenario: what run and package are finished for
    tree_key: str  # the round's tree: what check, pack and publish are finished for
    waive: frozenset[str]


def _dirs_intact(tree: Path, dirs: object) -> bool:
    """A package stage's result folders (as state.json lists them) are all still in the tree."""
    return isinstance(dirs, list) and bool(dirs) and all(isinstance(d, str) and (tree / d).is_dir() for d in dirs)


def _run_stages(opts: PipelineOptions, out: Path, selected: list[str], console) -> Outcome:
    state = State(out / "state.json")
    if state.unreadable:
        console.print(
            f"[yellow]warning[/]: {out / 'state.json'} is {state.unreadable}: every stage runs again", soft_wrap=True
        )
    paths = out_paths(out, opts.version)
    _check_tree_round(state, out, paths["tree"], opts.version)
    scenario = _scenario_name(opts.run.scenario)
    outcome = Outcome(out=out, stages={s: "not asked" for s in STAGES})
    if not opts.fork:
        outcome.stages["publish"] = "not asked (no --fork)"
    started = time.time()
    ctx = _Context(
        opts=opts,
        paths=paths,
        stage=stage_runner(opts.force, state, selected, outcome.stages, console),
        outcome=outcome,
        console=console,
        run_dir=paths["runs"] / opts.run.model / scenario,
        result_key=f"{opts.run.model}/{scenario}",
        tree_key=str(paths["tree"].relative_to(out)),
        waive=short_run_waivers(scenario, opts.run.run_style),
    )
    run_digest = _run_phase(ctx)
    _package_phase(ctx, run_digest)
    state.data["trees"][ctx.tree_key] = opts.version
    tree_id = tree_digest(paths["tree"])  # check, pack and publish read only the tree: one digest serves all three
    _check_phase(ctx, tree_id)
    _pack_phase(ctx, tree_id, run_digest)
    if opts.fork:
        _publish_phase(ctx, tree_id)
    print_summary(outcome, console, time.time() - started)
    return outcome


def _run_phase(ctx: _Context) -> str:
    """1. run: finished only while its run directory is as it was left (same digest); returns that digest."""
    run_digest = tree_digest(ctx.run_dir)
    tests = _compliance_tests(ctx.opts)
    run_out = ctx.stage(
        "run",
        fingerprint("run", *_run_inputs(ctx.opts, tests)),
        lambda: _do_run(ctx.opts, ctx.paths["runs"], tests, ctx.console),
        key=ctx.result_key,
        intact=lambda done: (
            done["outputs"].get("digest", run_digest) == run_digest and (ctx.run_dir / "run.json").is_file()
        ),
    )
    if ctx.outcome.stages["run"].startswith("done"):  # it ran just now: its digest is the new one
        run_digest = run_out.get("digest") or tree_digest(ctx.run_dir)
    ctx.outcome.run = _headline(_read_run_record(ctx.run_dir))
    return run_digest


def _run_inputs(opts: PipelineOptions, tests: list[str]) -> list:
    """What the run depends on. Options left at their defaults add nothing, so a state.json written before
    they existed still matches."""
    run = opts.run
    later = {
        k: v
        for k, v in (
            ("precision", None if run.precision == "auto" else run.precision),
            ("threads", run.threads),
            ("target_latency_ms", run.target_latency_ms),
            ("min_duration_ms", run.min_duration_ms),
            ("user_conf", file_identity(run.user_conf)),
        )
        if v is not None
    }
    return [
        run.model,
        _scenario_name(run.scenario),
        run.run_style,
        run.target_qps,
        run.backend,
        run.batch_size,
        file_identity(run.model_path),
        file_identity(run.dataset_path),
        *([run.extra] if run.extra else []),
        *([tests] if tests else []),
        *([opts.version] if opts.version != DEFAULT_VERSION else []),  # its seeds
        *([later] if later else []),
    ]


def _package_phase(ctx: _Context, run_digest: str) -> None:
    """2. package: finished while the tree still holds what it packaged."""
    opts, tree = ctx.opts, ctx.paths["tree"]
    done = ctx.stage(
        "package",
        fingerprint(
            "package",
            run_digest,
            opts.submitter,
            opts.division,
            opts.system,
            file_identity(opts.system_file),
            opts.version,
        ),
        lambda: _do_package(opts, ctx.run_dir, ctx.paths, ctx.console),
        key=ctx.result_key,
        intact=lambda done: _dirs_intact(tree, done["outputs"].get("result_dirs")),
    )
    for other in _same_benchmark_elsewhere(tree, (done or {}).get("result_dirs")):
        ctx.console.print(
            f"[yellow]warning[/]: the tree also holds {other}, an earlier run's result of this benchmark under "
            "another system name: pack hands it in beside this one (remove it if it was this machine's)",
            highlight=False,
            soft_wrap=True,
        )


def _same_benchmark_elsewhere(tree: Path, dirs: object) -> list[str]:
    """Result folders of the benchmark and scenario just packaged, under the submitter's other system folders."""
    if not isinstance(dirs, list):
        return []
    found = set()
    for d in (d for d in dirs if isinstance(d, str) and d.count("/") == 5):
        division, submitter, _, system, model, scenario = d.split("/")
        for other in (tree / division / submitter / "results").glob(f"*/{model}/{scenario}"):
            if other.parent.parent.name != system and other.is_dir():
                found.add(other.relative_to(tree).as_posix())
    return sorted(found)


def _check_phase(ctx: _Context, tree_id: str) -> None:
    """3. check: the verdict and the findings go into the outcome."""
    check = ctx.paths["check"]
    check_out = ctx.stage(
        "check",
        fingerprint("check", tree_id, ctx.opts.version, sorted(ctx.waive)),
        lambda: _do_check(ctx.opts, ctx.paths, ctx.waive, ctx.console),
        key=ctx.tree_key,
        intact=lambda done: _unchanged(check, done["outputs"].get("files")),
    )
    if "ok" in (check_out or {}):
        ctx.outcome.check_ok = bool(check_out["ok"])
        ctx.outcome.findings = check_out.get("findings", [])


def _pack_phase(ctx: _Context, tree_id: str, run_digest: str) -> None:
    """4. pack: the artifacts go into the outcome."""
    opts, artifacts = ctx.opts, ctx.paths["artifacts"]
    pack_out = ctx.stage(
        "pack",
        fingerprint("pack", tree_id, run_digest, opts.name, opts.version, sorted(ctx.waive)),
        lambda: _do_pack(opts, ctx.paths, ctx.waive, ctx.console),
        key=ctx.tree_key,
        intact=lambda done: _unchanged(artifacts, done["outputs"].get("files")),
    )
    if pack_out:  # the names, found in this OUT: an OUT copied elsewhere names its own files
        names = pack_out.get("names") if isinstance(pack_out.get("names"), dict) else {}
        ctx.outcome.artifacts = {kind: str(artifacts / name) for kind, name in names.items()}


def _unchanged(folder: Path, recorded: object) -> bool:
    """The files a finished stage wrote in `folder` are still the bytes it wrote (a damaged or replaced tarball
    is written again, never handed in); a state.json from before the digests were recorded runs the stage."""
    if not isinstance(recorded, dict) or not recorded:
        return False
    names = [str(name) for name in recorded]
    return file_digests(folder, names) == recorded


def _publish_phase(ctx: _Context, tree_id: str) -> None:
    """5. publish (only with --fork)."""
    opts = ctx.opts
    pub_inputs = fingerprint(
        "publish", tree_id, opts.fork, opts.upstream, opts.base, opts.no_pr, opts.allow_short, opts.replace
    )
    pub_out = ctx.stage("publish", pub_inputs, lambda: _do_publish(opts, ctx.paths, ctx.console), key=ctx.tree_key)
    if pub_out:
        ctx.outcome.publish = pub_out


def _check_tree_round(state: State, out: Path, tree: Path, version: str) -> None:
    """A tree holds one round: refuse to add results of another round to a tree state.json says is not it."""
    recorded = state.data["trees"].get(str(tree.relative_to(out)))
    if recorded and recorded != version and tree.exists():
        raise SubtoolError(
            f"the tree holds {recorded} results and this run is for {version}; a tree holds one round",
            path=tree,
            rule="pipeline.round_mismatch",
            hint=f"use --version {recorded}, or another --out for {version}",
        )


def _scenario_name(scenario: str) -> str:
    from subtool.runner.harness import check_scenario

    return check_scenario(scenario)


def _compliance_tests(opts: PipelineOptions) -> list[str]:
    """Explicit --compliance, else the tests the model needs when the result goes to the closed division."""
    if opts.compliance is not None:
        return list(opts.compliance)
    from subtool.runner.workload import get_workload

    return list(get_workload(opts.run.model).spec.compliance) if _division(opts) == "closed" else []


def _is_demo(opts: PipelineOptions) -> bool:
    run = opts.run
    return (run.model_path is None and run.dataset_path is None) or run.demo or bool(run.extra.get("demo"))


def _division(opts: PipelineOptions) -> str:
    return opts.division or ("open" if _is_demo(opts) else "closed")


def _do_run(opts: PipelineOptions, runs: Path, compliance: list[str], console) -> dict:
    from subtool.runner.api import run_benchmark

    run = dataclasses.replace(
        opts.run, mode="both", out=runs, compliance=compliance, argv=opts.argv, fresh=opts.force or opts.run.fresh
    )
    record = run_benchmark(run, console=console)
    run_dir = runs / record["model"] / record["scenario"]
    return {"run_dir": str(run_dir), "digest": tree_digest(run_dir)}


def _read_run_record(run_dir: Path) -> dict:
    from subtool.mlperf.run_record import read_run_record

    if not (run_dir / "run.json").exists():
        raise SubtoolError(
            "no finished run here",
            path=run_dir / "run.json",
            rule="pipeline.no_run",
            hint="run the 'run' stage first (drop --from-stage/--only)",
        )
    return read_run_record(run_dir / "run.json", rule="pipeline.no_run", hint="re-run with --only run")


def _headline(record: dict) -> dict:
    perf = (record.get("modes") or {}).get("performance") or {}
    acc = (record.get("modes") or {}).get("accuracy") or {}
    return {
        "model": record.get("model"),
        "scenario": record.get("scenario"),
        "demo": record.get("demo"),
        "run_style": record.get("run_style"),
        "result": perf.get("result"),
        "units": perf.get("units"),
        "validity": perf.get("result_validity"),
        "accuracy": acc.get("metrics"),
        # LoadGen's percentiles (ms): query latency, and TTFT/TPOT for LLM runs with token latencies
        **{k: perf[k] for k in ("latency_ms", "ttft_ms", "tpot_ms") if isinstance(perf.get(k), dict)},
    }


def _do_package(opts: PipelineOptions, run_dir: Path, paths: dict, console) -> dict:
    from subtool.package.api import PackageOptions, package_results

    with fsutil.undo_on_error(paths["tree"], paths["full_logs"]):  # a failure leaves no new folder or file
        result = package_results(
            PackageOptions(
                from_dirs=[run_dir],
                perf=None,
                acc=None,
                compliance=[],
                model=None,
                scenario=None,
                submitter=opts.submitter,
                division=opts.division,
                system=opts.system,
                system_file=opts.system_file,
                version=opts.version,
                out=paths["tree"],
                full_logs=paths["full_logs"],
                force=True,
            ),
            console=console,
        )
    results = result.to_dict().get("results", [])
    tree = Path(paths["tree"]).resolve()
    dirs = [os.path.relpath(Path(r["path"]).resolve(), tree) for r in results if r.get("path")]
    return {
        "tree": str(paths["tree"]),
        "results": results,
        "result_dirs": [d for d in dirs if not d.startswith("..")],
    }  # relative: an OUT copied elsewhere


def _do_check(opts: PipelineOptions, paths: dict, waive: frozenset[str], console) -> dict:
    from subtool.checker.api import CheckOptions, check_tree
    from subtool.checker.report import print_human, report_to_dict, write_report_json, write_summary_csv

    report = check_tree(paths["tree"], CheckOptions(version=opts.version, submitter=opts.submitter, waive=waive))
    write_summary_csv(report, paths["check"] / "summary.csv")
    write_report_json(report, paths["check"] / "report.json")
    print_human(report, console)
    doc = report_to_dict(report)
    findings = [f for f in doc.get("findings", []) if f.get("severity") in ("error", "waived")]
    return {
        "ok": bool(report.ok),
        "findings": findings,
        "files": file_digests(paths["check"], ["summary.csv", "report.json"]),
    }


def _do_pack(opts: PipelineOptions, paths: dict, waive: frozenset[str], console) -> dict:
    from subtool.pack.api import PackOptions, pack_tree

    # every run under runs/ whose results the tree holds (this one among them): .run/.tstamps cover them all
    result = pack_tree(
        PackOptions(
            tree=paths["tree"],
            out=paths["artifacts"],
            name=opts.name,
            runs=[paths["runs"]],
            version=opts.version,
            waive=waive,
        ),
        console=console,
    )
    names = {kind: Path(path).name for kind, path in result.artifacts.items()}
    return {"ok": bool(result.ok), "names": names, "files": file_digests(paths["artifacts"], sorted(names.values()))}


def _do_publish(opts: PipelineOptions, paths: dict, console) -> dict:
    from subtool.publish.api import PublishOptions, publish_tree

    result = publish_tree(
        PublishOptions(
            tree=paths["tree"],
            fork=opts.fork,
            upstream=opts.upstream,
            base=opts.base,
            branch=None,
            title=None,
            api_url=os.environ.get("GITHUB_API_URL"),
            token_env=None,
            no_pr=opts.no_pr,
            dry_run=False,
            cache=Path(opts.out) / ".publish-cache",
            allow_short=opts.allow_short,
            replace=opts.replace,
        ),
        console=console,
    )
    return result.to_dict()
