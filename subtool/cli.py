"""The `subtool` command line: one function per subcommand; each parses options, calls one stage, prints.

Human output and progress go to stderr; stdout carries only the `--json` document. Stages are imported inside
the functions so that `subtool check` never imports torch.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import typer

from subtool import __version__
from subtool.errors import SubtoolError
from subtool.mlperf.layout import NAME_ALPHABET as _NAMES

app = typer.Typer(
    name="subtool",
    help="MLPerf Inference from 'run it' to 'results published': run, package, check, pack, publish, score.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


CI_LOG_WIDTH = 240  # not a terminal (a CI log, a file): lines this long before a table or a rule folds


def _console():
    """Human output on stderr. In a terminal rich fits it to the window; in a CI log or a file (no terminal, no
    $COLUMNS) there is no window: lines are not wrapped at 80 columns mid-sentence and paths are never cut."""
    import os

    from rich.console import Console

    if sys.stderr.isatty() or os.environ.get("COLUMNS"):
        return Console(stderr=True)
    return Console(stderr=True, width=CI_LOG_WIDTH, soft_wrap=True)


def _fail(err: SubtoolError) -> None:
    from rich.markup import escape

    console = _console()
    console.print(f"[bold red]error:[/] {escape(err.one_line())}", highlight=False, soft_wrap=True)
    if err.hint:
        console.print(f"  hint: {escape(err.hint)}", highlight=False, soft_wrap=True)
    raise typer.Exit(err.exit_code)


def _outputs(*options) -> None:
    """(flag, path, is_directory) of each output option: refused before anything runs when it cannot be
    written, with one line (exit 2), creating nothing."""
    from subtool.fsutil import check_output_path

    try:
        for flag, path, is_dir in options:
            check_output_path(path, flag, directory=is_dir)
    except SubtoolError as err:
        _fail(err)


def _said(choice):
    """A round subtool chose for the user (not the one they gave, not the default): one line saying which, why."""
    from subtool.mlperf.round_choice import announce

    return announce(choice, _console())


def _emit_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"subtool {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """subtool: MLPerf Inference submissions, end to end."""


# --------------------------------------------------------------------------------------------------- run
@app.command()
def run(
    model: str = typer.Option("bert-99", help="Benchmark: bert-99 (more in later releases)."),
    scenario: str = typer.Option("Offline", help="Offline, Server, SingleStream or MultiStream."),
    mode: str = typer.Option("both", help="performance, accuracy or both."),
    model_path: Path | None = typer.Option(None, help="Checkpoint directory; omit for the embedded demo."),
    dataset_path: Path | None = typer.Option(None, help="SQuAD v1.1 dev JSON; omit for the embedded demo."),
    out: Path = typer.Option(Path("subtool-out/runs"), help="Parent directory of the run directory."),
    run_style: str = typer.Option("short", help="short (try things, not submittable) or valid (official)."),
    target_qps: float | None = typer.Option(None, help="Offline/Server target QPS written into user.conf."),
    target_latency_ms: float | None = typer.Option(None, help="SingleStream/MultiStream expected latency."),
    min_duration_ms: int | None = typer.Option(None, help="Override the run style's minimum duration."),
    user_conf: Path | None = typer.Option(None, help="Use this user.conf instead of writing one."),
    backend: str = typer.Option(
        "auto",
        help="SUT backend: auto (torch-cuda when a GPU is visible, else "
        "torch-cpu), torch-cpu, torch-cuda, ray, openai (LLMs).",
    ),
    precision: str = typer.Option(
        "auto", help="auto (on GPU fp16 for BERT, bf16 for LLMs; fp32 on CPU), fp32, bf16, fp16, fp8."
    ),
    batch_size: int | None = typer.Option(
        None, help="Samples per forward pass (default 32; the LLM demos choose their own; torch-cuda: ×384 tokens)."
    ),
    threads: int | None = typer.Option(None, help="torch intra-op threads (default: all cores)."),
    demo: bool = typer.Option(False, "--demo", help="Embedded demo (tiny random-weight model); no paths."),
    endpoint: str | None = typer.Option(None, help="LLMs: OpenAI-compatible server URL (backend openai)."),
    api_key_env: str | None = typer.Option(None, help="LLMs: env variable holding the endpoint's API key."),
    max_new_tokens: int | None = typer.Option(None, help="LLMs: override the generation length."),
    engine: str | None = typer.Option(None, help="LLMs, torch backends: auto, batched or continuous."),
    ray_address: str | None = typer.Option(
        None,
        help="Spread the run over Ray workers: local (a cluster on this machine), auto (the running one) or HOST:PORT.",
    ),
    workers: int | None = typer.Option(
        None, help="Ray workers (default: one per free GPU or CPU); --backend names what each runs."
    ),
    compliance: list[str] = typer.Option([], help="Compliance test to run after the modes, e.g. TEST01."),
    version: str | None = typer.Option(
        None,
        help="Submission round the run is for; LoadGen gets its RNG seeds "
        "(default v6.1, or the latest round that lists the model).",
    ),
    find_perf: bool = typer.Option(
        False,
        "--find-perf",
        help="Short probe run that measures the SUT and writes the user.conf "
        "(target_qps / target_latency) for the full run; runs nothing else.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the run record as JSON on stdout."),
) -> None:
    """Run one benchmark scenario through LoadGen (performance and/or accuracy) into a run directory."""
    _outputs(("--out", out, True))
    from subtool.runner.api import RunOptions, run_benchmark

    try:
        _validate_run_options(
            model=model,
            scenario=scenario,
            mode=mode,
            run_style=run_style,
            backend=backend,
            precision=precision,
            version=version,
            engine=engine,
        )
        backend, extra = _llm_extra(
            demo, model_path, dataset_path, backend, endpoint, api_key_env, max_new_tokens, engine
        )
        backend, extra = _ray_extra(backend, extra, ray_address, workers)
        from subtool.mlperf.round_choice import choose_round

        run_round = _said(choose_round([model], version)).version
    except SubtoolError as err:
        _fail(err)
    opts = RunOptions(
        model=model,
        scenario=scenario,
        mode=mode,
        model_path=model_path,
        dataset_path=dataset_path,
        out=out,
        run_style=run_style,
        target_qps=target_qps,
        target_latency_ms=target_latency_ms,
        min_duration_ms=min_duration_ms,
        user_conf=user_conf,
        backend=backend,
        precision=precision,
        batch_size=batch_size,
        threads=threads,
        extra=extra,
        compliance=list(compliance),
        argv=["subtool", *sys.argv[1:]],
        round=run_round,
    )
    try:
        if find_perf:
            from subtool.runner.find_perf import find_performance

            record = find_performance(opts, console=_console())
        else:
            record = run_benchmark(opts, console=_console())
    except SubtoolError as err:
        _fail(err)
    if json_out:
        _emit_json(record)


def _llm_extra(demo, model_path, dataset_path, backend, endpoint, api_key_env, max_new_tokens, engine):
    """Backend options that go into RunOptions.extra; --endpoint implies the openai backend."""
    if demo and (model_path is not None or dataset_path is not None):
        raise SubtoolError("--demo runs the embedded demo: drop --model-path/--dataset-path", rule="cli.usage")
    extra = {
        k: v
        for k, v in (
            ("endpoint", endpoint),
            ("api_key_env", api_key_env),
            ("max_new_tokens", max_new_tokens),
            ("engine", engine),
        )
        if v is not None
    }
    if endpoint and backend in ("auto", "torch-cpu"):
        backend = "openai"
    return backend, extra


def _ray_extra(backend, extra, ray_address, workers):
    """--ray-address/--workers run the backend on Ray workers: backend ray, the named one inside each worker
    (no address: $RAY_ADDRESS, else a local cluster)."""
    if ray_address is None and workers is None:
        return backend, extra
    if workers is not None and workers < 1:
        raise SubtoolError(f"--workers must be at least 1, not {workers}", rule="cli.usage")
    inner = "torch-cpu" if backend == "ray" else backend  # auto: decided by the cluster's GPUs
    extra = {**extra, "inner_backend": inner}
    extra.update({k: v for k, v in (("ray_address", ray_address), ("workers", workers)) if v is not None})
    return "ray", extra


BACKENDS = ("auto", "torch-cpu", "torch-cuda", "ray", "openai")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "fp8")
RUN_STYLES = ("short", "valid")
RUN_MODES = ("both", "performance", "accuracy")
ENGINES = ("auto", "batched", "continuous")


def _choice(flag: str, value, choices) -> None:
    if value is not None and value not in choices:
        import difflib

        near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        raise SubtoolError(
            f"{flag} {value!r} is not one of {', '.join(map(str, choices))}",
            rule="cli.usage",
            hint=f"did you mean {flag} {near[0]}?" if near else None,
        )


def _registered_backends() -> tuple[str, ...]:
    """Backends a model family registered in this process beyond the built-in names (its SUT_BACKENDS table;
    the tests' instant SUT is one). Only families already imported are read: a family that was never imported
    registered nothing, and importing one here would cost the start-up time the early check exists to save."""
    names: list[str] = []
    for module in ("subtool.runner.bert.workload", "subtool.runner.llm.workload"):
        table = getattr(sys.modules.get(module), "SUT_BACKENDS", None) or {}
        names += [name for name in table if name not in BACKENDS]
    return tuple(names)


def _validate_run_options(
    *,
    model=None,
    scenario=None,
    mode=None,
    run_style=None,
    backend=None,
    precision=None,
    division=None,
    version=None,
    engine=None,
) -> str | None:
    """Every option of a benchmark run, checked before anything runs (a typo must not cost the benchmark);
    returns the scenario's canonical spelling. Imports nothing heavy."""
    from subtool.mlperf.layout import WRITABLE_DIVISIONS
    from subtool.mlperf.rounds import check_version
    from subtool.runner.harness import check_scenario
    from subtool.runner.workload import WORKLOAD_MODULES

    if model is not None and model not in WORKLOAD_MODULES:
        _choice("--model", model, sorted(WORKLOAD_MODULES))
    _choice("--mode", mode, RUN_MODES)
    _choice("--run-style", run_style, RUN_STYLES)
    _choice("--backend", backend, BACKENDS + _registered_backends())
    _choice("--precision", precision, PRECISIONS)
    _choice("--division", division, WRITABLE_DIVISIONS)
    _choice("--engine", engine, ENGINES)
    if version is not None:
        check_version(version)
    return check_scenario(scenario) if scenario is not None else None


# ----------------------------------------------------------------------------------------------- package
@app.command()
def package(
    from_dir: list[Path] = typer.Option([], "--from", help="subtool run directory or MLC raw results dir."),
    perf: Path | None = typer.Option(None, help="Loose LoadGen performance log directory."),
    acc: Path | None = typer.Option(None, help="Loose LoadGen accuracy log directory."),
    compliance: list[str] = typer.Option([], help="TEST01=DIR (repeatable) for loose logs."),
    model: str | None = typer.Option(None, help="Benchmark of loose logs (checked against the logs)."),
    scenario: str | None = typer.Option(None, help="Scenario of loose logs (checked against the logs)."),
    submitter: str = typer.Option(..., help=f"Organisation / team name ({_NAMES})."),
    division: str | None = typer.Option(None, help="open or closed (default: from the run; demo → open)."),
    system: str | None = typer.Option(None, help=f"System name ({_NAMES}; default: detected)."),
    system_file: Path | None = typer.Option(None, help="TOML/JSON with system description overrides."),
    version: str | None = typer.Option(
        None,
        help="Submission round: v6.1, v6.0 (current layout) or v5.1, v5.0 "
        "(default v6.1, or the latest round that lists the models).",
    ),
    out: Path = typer.Option(..., help="Tree root (holds closed/ and open/)."),
    full_logs: Path | None = typer.Option(None, help="Where untruncated accuracy logs are kept."),
    force: bool = typer.Option(False, help="Replace a result that is already in the tree."),
    model_path: Path | None = typer.Option(
        None, help="With --dataset-path: compute a missing accuracy.txt with subtool's accuracy script."
    ),
    dataset_path: Path | None = typer.Option(None, help="The data set the accuracy log was made from."),
    json_out: bool = typer.Option(False, "--json", help="Print what was packaged as JSON on stdout."),
) -> None:
    """Lay results out as the official submission tree."""
    _outputs(("--out", out, True), ("--full-logs", full_logs, True))
    from subtool.fsutil import check_name_fits, undo_on_error
    from subtool.mlperf.layout import check_name
    from subtool.mlperf.round_choice import choose_round_for_runs
    from subtool.package.api import PackageOptions, package_results

    try:
        _validate_run_options(division=division, version=version)
        for flag, value in (("--submitter", submitter), ("--system", system)):
            if value is not None:
                check_name(value, flag[2:], flag=flag)
            check_name_fits(value or "", out, flag)
        version = _said(choose_round_for_runs(from_dir, [model or ""], version)).version
    except SubtoolError as err:
        _fail(err)
    opts = PackageOptions(
        from_dirs=list(from_dir),
        perf=perf,
        acc=acc,
        compliance=list(compliance),
        model=model,
        scenario=scenario,
        submitter=submitter,
        division=division,
        system=system,
        system_file=system_file,
        version=version,
        out=out,
        full_logs=full_logs,
        force=force,
    )
    if (model_path is None) != (dataset_path is None):
        _fail(
            SubtoolError(
                "--model-path and --dataset-path go together (they score a missing accuracy.txt)", rule="cli.usage"
            )
        )

    def score_with_subtool(imp):
        from subtool.runner.api import accuracy_text

        return accuracy_text(imp.bench.name, model_path, dataset_path, imp.acc_dir / "mlperf_log_accuracy.json")

    scorer = score_with_subtool if model_path is not None else None
    try:
        with undo_on_error(out, full_logs or out.with_name(out.name + "_full_logs")):  # a failure leaves nothing
            result = package_results(opts, console=_console(), accuracy_scorer=scorer)
    except SubtoolError as err:
        _fail(err)
    if json_out:
        _emit_json(result.to_dict())


# ------------------------------------------------------------------------------------------------- check
@app.command()
def check(
    tree: Path = typer.Argument(..., help="Submission root (holds closed/ and/or open/)."),
    version: str | None = typer.Option(
        None,
        help="Rules of this round: v6.1, v6.0, v5.1, v5.0 (default v6.1, "
        "or the latest round that lists the tree's models).",
    ),
    submitter: str | None = typer.Option(None, help="Only check this submitter."),
    csv: Path | None = typer.Option(None, "--csv", help="Write summary.csv (official columns) here."),
    report: Path | None = typer.Option(None, help="Write the JSON report with every finding here."),
    waive: list[str] = typer.Option([], help="Rule id to waive (repeatable), e.g. perf.min_duration."),
    skip_compliance: bool = typer.Option(False, help="Do not require compliance test results."),
    official: Path | None = typer.Option(None, help="Official checker checkout: also run it and diff."),
    json_out: bool = typer.Option(False, "--json", help="Print the JSON report on stdout."),
) -> None:
    """Check a submission tree with the official rules; exit 0 only when there are no errors."""
    _outputs(("--csv", csv, False), ("--report", report, False))
    from subtool.checker.api import CheckOptions, check_tree
    from subtool.checker.report import print_human, report_to_dict, write_report_json, write_summary_csv
    from subtool.mlperf.round_choice import choose_round_for_tree

    try:
        version = _said(choose_round_for_tree(tree, version)).version
        opts = CheckOptions(
            version=version,
            submitter=submitter,
            waive=frozenset(waive),
            skip_compliance=skip_compliance,
            official=official,
        )
        rep = check_tree(tree, opts)
        if csv:
            write_summary_csv(rep, csv)
        if report:
            write_report_json(rep, report)
    except SubtoolError as err:
        _fail(err)
    print_human(rep, _console())
    if json_out:
        _emit_json(report_to_dict(rep))
    raise typer.Exit(0 if rep.ok else 1)


# -------------------------------------------------------------------------------------------------- pack
@app.command()
def pack(
    tree: Path | None = typer.Argument(None, help="Submission root to pack."),
    out: Path | None = typer.Option(None, help="Directory for the artifacts."),
    name: str = typer.Option("mlperf_submission_short", help=f"Base name of the artifacts ({_NAMES})."),
    runs: list[Path] = typer.Option(
        [],
        help="Run directories (for .run and .tstamps), or a folder of them "
        "(OUT/runs: those whose results the tree holds); optional.",
    ),
    version: str | None = typer.Option(
        None, help="Rules used for the summary (default v6.1, or the latest round that lists the tree's models)."
    ),
    waive: list[str] = typer.Option([], help="Rule id waived in the summary (repeatable)."),
    verify: Path | None = typer.Option(None, help="Verify this tarball against its manifest and re-check it."),
    json_out: bool = typer.Option(False, "--json", help="Print the artifact paths as JSON on stdout."),
) -> None:
    """Make the competition artifacts: tarball, summary JSON/CSV, .run, .tstamps, .md, sha256 manifest."""
    _outputs(("--out", out, True))
    from subtool.fsutil import undo_on_error
    from subtool.pack.api import PackOptions, pack_tree, verify_tarball

    try:
        if verify is not None:
            from subtool.mlperf.rounds import DEFAULT_VERSION, check_version

            if version is not None:
                check_version(version)

            result = verify_tarball(verify, version=version or DEFAULT_VERSION, console=_console())
        else:
            if tree is None or out is None:
                raise SubtoolError("pack needs TREE and --out (or --verify TARBALL)", rule="cli.usage")
            from subtool.mlperf.layout import check_name
            from subtool.mlperf.round_choice import choose_round_for_tree

            check_name(name, "artifact name", flag="--name")

            version = _said(choose_round_for_tree(tree, version)).version
            with undo_on_error(out):  # a failure leaves no new folder or file
                result = pack_tree(
                    PackOptions(
                        tree=tree, out=out, name=name, runs=list(runs), version=version, waive=frozenset(waive)
                    ),
                    console=_console(),
                )
    except SubtoolError as err:
        _fail(err)
    if json_out:
        _emit_json(result.to_dict())
    raise typer.Exit(0 if result.ok else 1)


# ----------------------------------------------------------------------------------------------- publish
@app.command()
def publish(
    tree: Path = typer.Argument(..., help="Submission root whose submitter directories are published."),
    fork: str = typer.Option(..., help="Git URL of your fork of the results repository."),
    upstream: str | None = typer.Option(None, help="OWNER/REPO the pull request goes to."),
    base: str = typer.Option("main", help="Base branch (upstream) to start from and open the PR against."),
    branch: str | None = typer.Option(None, help="Branch to push (default: derived from the submitter)."),
    title: str | None = typer.Option(None, help="Pull request title."),
    api_url: str | None = typer.Option(None, envvar="GITHUB_API_URL", help="REST API base URL."),
    token_env: str | None = typer.Option(None, help="Name of the env variable holding the token."),
    no_pr: bool = typer.Option(False, help="Push only; print the compare URL to open the PR by hand."),
    dry_run: bool = typer.Option(False, help="Show what would be pushed; push nothing."),
    cache: Path | None = typer.Option(None, help="Where the fork clone is cached."),
    allow_short: bool = typer.Option(False, help="Publish DEMO / short-run results, marked as such (else refused)."),
    replace: bool = typer.Option(False, help="The branch holds this tree only (default: add to what it holds)."),
    json_out: bool = typer.Option(False, "--json", help="Print the outcome as JSON on stdout."),
) -> None:
    """Push the submission to a branch of your fork and open the pull request."""
    _outputs(("--cache", cache, True))
    from subtool.publish.api import PublishOptions, publish_tree

    opts = PublishOptions(
        tree=tree,
        fork=fork,
        upstream=upstream,
        base=base,
        branch=branch,
        title=title,
        api_url=api_url,
        token_env=token_env,
        no_pr=no_pr,
        dry_run=dry_run,
        cache=cache,
        allow_short=allow_short,
        replace=replace,
    )
    try:
        result = publish_tree(opts, console=_console())
    except SubtoolError as err:
        _fail(err)
    if json_out:
        _emit_json(result.to_dict())


# --------------------------------------------------------------------------------------------------- all
@app.command("all")
def all_(
    submitter: str = typer.Option(..., help=f"Organisation / team name ({_NAMES})."),
    model: str = typer.Option("bert-99", help="Benchmark."),
    scenario: str = typer.Option("Offline", help="Scenario."),
    model_path: Path | None = typer.Option(None, help="Checkpoint directory; omit for the embedded demo."),
    dataset_path: Path | None = typer.Option(None, help="Dataset file; omit for the embedded demo."),
    out: Path = typer.Option(Path("subtool-out"), help="Output directory (runs, tree, check, artifacts)."),
    run_style: str = typer.Option("short", help="short or valid."),
    division: str | None = typer.Option(None, help="open or closed (demo: open)."),
    system: str | None = typer.Option(None, help=f"System name ({_NAMES}; default: detected)."),
    system_file: Path | None = typer.Option(None, help="System description overrides (TOML/JSON)."),
    version: str | None = typer.Option(
        None, help="Submission round (default v6.1, or the latest round that lists the model)."
    ),
    name: str = typer.Option("mlperf_submission_short", help=f"Base name of the artifacts ({_NAMES})."),
    target_qps: float | None = typer.Option(None, help="Target QPS for the performance run."),
    backend: str = typer.Option(
        "auto", help="SUT backend (auto: torch-cuda with bf16 when a GPU is visible, else torch-cpu)."
    ),
    batch_size: int | None = typer.Option(
        None, help="Samples per forward pass (default 32; the LLM demos choose their own; torch-cuda: ×384 tokens)."
    ),
    fork: str | None = typer.Option(None, help="Publish to this fork when given."),
    upstream: str | None = typer.Option(None, help="OWNER/REPO for the pull request."),
    base: str = typer.Option("main", help="Base branch for publishing."),
    no_pr: bool = typer.Option(False, help="Publish: push only."),
    allow_short: bool = typer.Option(False, help="Publish: allow DEMO / short-run results, marked as such."),
    replace: bool = typer.Option(False, help="Publish: the branch holds this tree only (default: add to it)."),
    from_stage: str | None = typer.Option(None, help="Start at this stage (run, package, check, pack, publish)."),
    only: str | None = typer.Option(None, help="Run only this stage."),
    force: bool = typer.Option(False, help="Re-run stages even when their inputs did not change."),
    demo: bool = typer.Option(False, "--demo", help="Embedded demo (tiny random-weight model); no paths."),
    endpoint: str | None = typer.Option(None, help="LLMs: OpenAI-compatible server URL (backend openai)."),
    api_key_env: str | None = typer.Option(None, help="LLMs: env variable holding the endpoint's API key."),
    max_new_tokens: int | None = typer.Option(None, help="LLMs: override the generation length."),
    engine: str | None = typer.Option(None, help="LLMs, torch backends: auto, batched or continuous."),
    ray_address: str | None = typer.Option(
        None,
        help="Spread the run over Ray workers: local (a cluster on this machine), auto (the running one) or HOST:PORT.",
    ),
    workers: int | None = typer.Option(
        None, help="Ray workers (default: one per free GPU or CPU); --backend names what each runs."
    ),
    compliance: list[str] | None = typer.Option(
        None, help="Compliance tests to run (default: those the model needs, for closed-division runs)."
    ),
    wait: bool = typer.Option(
        False, "--wait", help="Another subtool is writing to --out: wait for it to finish instead of stopping."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the outcome as JSON on stdout."),
) -> None:
    """run → package → check → pack (→ publish): the whole job in one command."""
    _outputs(("--out", out, True))
    from subtool.pipeline import PipelineOptions, run_pipeline

    try:
        _validate_run_options(
            model=model,
            scenario=scenario,
            run_style=run_style,
            backend=backend,
            division=division,
            version=version,
            engine=engine,
        )
        backend, extra = _llm_extra(
            demo, model_path, dataset_path, backend, endpoint, api_key_env, max_new_tokens, engine
        )
        backend, extra = _ray_extra(backend, extra, ray_address, workers)
    except SubtoolError as err:
        _fail(err)
    opts = PipelineOptions(
        submitter=submitter,
        model=model,
        scenario=scenario,
        model_path=model_path,
        dataset_path=dataset_path,
        out=out,
        run_style=run_style,
        division=division,
        system=system,
        system_file=system_file,
        version=version,
        name=name,
        target_qps=target_qps,
        backend=backend,
        batch_size=batch_size,
        fork=fork,
        upstream=upstream,
        base=base,
        no_pr=no_pr,
        allow_short=allow_short,
        replace=replace,
        from_stage=from_stage,
        only=only,
        force=force,
        extra=extra,
        compliance=compliance,
        argv=["subtool", *sys.argv[1:]],
        wait=wait,
    )
    try:
        outcome = run_pipeline(opts, console=_console())
    except SubtoolError as err:
        _fail(err)
    if json_out:
        _emit_json(outcome.to_dict())
    raise typer.Exit(outcome.exit_code)


# ------------------------------------------------------------------------------------------------ system
@app.command()
def system(
    submitter: str = typer.Option("", help=f"Organisation / team name written into the description ({_NAMES})."),
    division: str | None = typer.Option(None, help="open (default) or closed; must match the tree folder."),
    set_: list[str] = typer.Option([], "--set", help="Override a field: key=value (repeatable)."),
    file: Path | None = typer.Option(None, "--file", help="Overrides from a TOML or JSON file."),
    validate: Path | None = typer.Option(None, help="Only validate this system JSON; exit 1 if invalid."),
    out: Path | None = typer.Option(None, help="Also write the JSON to this file."),
) -> None:
    """Print the detected system description (systems/<system>.json); edit it with --set/--file; validate."""
    _outputs(("--out", out, False))
    from rich.markup import escape

    from subtool.fsutil import atomic_write_text
    from subtool.package.system import (
        apply_overrides,
        detect_system,
        load_overrides,
        parse_set,
        split_overrides,
        validation_errors,
    )

    console = _console()
    try:
        if submitter:
            from subtool.mlperf.layout import check_name

            check_name(submitter, "submitter", flag="--submitter")
        if validate is not None:
            try:
                fields = json.loads(validate.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise SubtoolError(
                    f"cannot read the system JSON: {exc}", path=validate, rule="system.bad_json"
                ) from None
            errors = validation_errors(fields, division=division, submitter=submitter or None)
            for err in errors:
                console.print(
                    f"[bold red]error:[/] {escape(f'{validate}: {err} [system.invalid]')}",
                    highlight=False,
                    soft_wrap=True,
                )
            if not errors:
                console.print(escape(f"{validate}: valid"), highlight=False)
            raise typer.Exit(1 if errors else 0)
        overrides = {}
        if file is not None:
            overrides, _ = split_overrides(load_overrides(file))
        overrides.update(parse_set(list(set_)))
        desc = detect_system(submitter=submitter or str(overrides.get("submitter", "")), division=division or "open")
        desc = apply_overrides(desc, overrides)
        if out is not None:
            atomic_write_text(out, desc.to_json())
    except SubtoolError as err:
        _fail(err)
    sys.stdout.write(desc.to_json())
    if desc.guessed:
        console.print(
            escape(f"note: not detected, please set: {', '.join(desc.guessed)} (--set key=value)"),
            highlight=False,
            soft_wrap=True,
        )
    for err in validation_errors(desc.fields, division=division or "open", submitter=submitter or None):
        console.print(escape(f"warning: {err}"), highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------------- ci
@app.command()
def ci(
    checkout: Path = typer.Argument(..., help="Checkout of the results repository at the pull request's head."),
    base_ref: str = typer.Option(..., help="The pull request's base, fetched into the checkout, e.g. origin/main."),
    version: str = typer.Option("v6.1", help="Rules of this round: v6.1, v6.0, v5.1, v5.0."),
    waive: list[str] = typer.Option([], help="Rule id to waive (repeatable), e.g. perf.min_duration."),
    skip_compliance: bool = typer.Option(False, help="Do not require compliance test results."),
    summary: Path | None = typer.Option(
        None, envvar="GITHUB_STEP_SUMMARY", help="Append the Markdown report here (default: $GITHUB_STEP_SUMMARY)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the outcome as JSON on stdout."),
) -> None:
    """For results repositories' CI: check only the submitter directories a pull request changes."""
    _outputs(("--summary", summary, False))
    from subtool.ci import CiOptions, run_ci

    opts = CiOptions(
        checkout=checkout,
        base_ref=base_ref,
        version=version,
        waive=frozenset(waive),
        skip_compliance=skip_compliance,
        summary=summary,
    )
    try:
        outcome = run_ci(opts, console=_console())
    except SubtoolError as err:
        _fail(err)
    # GitHub reads workflow commands (annotations) from the step's output; stdout stays JSON-only with --json.
    stream = sys.stderr if json_out else sys.stdout
    for line in outcome.annotations:
        stream.write(line + "\n")
    stream.flush()
    if json_out:
        _emit_json(outcome.to_dict())
    raise typer.Exit(outcome.exit_code)


@app.command()
def score(
    inputs: list[Path] = typer.Argument(..., help="Team tarballs, folders of them, or extracted submission trees."),
    out: Path = typer.Option(..., help="Folder for leaderboard.csv, .json, .md and .html."),
    rules: Path | None = typer.Option(None, help="Scoring rules TOML (default: SCC BERT-99 + Llama2-70B Offline)."),
    metrics: Path | None = typer.Option(None, help="Also write per-result verdict metrics here (.json or .csv)."),
    jobs: int | None = typer.Option(None, help="Inputs scored in parallel (default: CPU cores, at most 4)."),
    json_out: bool = typer.Option(False, "--json", help="Print the outcome as JSON on stdout."),
) -> None:
    """Verify every team's hand-in, rank teams within hardware categories, write the leaderboards."""
    _outputs(("--out", out, True), ("--metrics", metrics, False))
    from rich.markup import escape

    from subtool.fsutil import undo_on_error
    from subtool.scoring.api import ScoreOptions
    from subtool.scoring.api import score as score_inputs

    console = _console()
    try:
        with undo_on_error(out, metrics):  # a failure (a full disk) leaves no new folder or file
            result = score_inputs(
                ScoreOptions(inputs=list(inputs), out=out, rules=rules, metrics=metrics, jobs=jobs), console=console
            )
    except SubtoolError as err:
        _fail(err)
    c = result.counts
    for cat in result.leaderboard["categories"]:
        top = ", ".join(
            f"{r['rank']}. {r['team']} ({r['total']:.2f})" for r in cat["overall"] if r["status"] == "ranked"
        )
        console.print(escape(f"{cat['name']}: {top or 'nobody ranked'}"), highlight=False, soft_wrap=True)
    for dq in result.leaderboard["disqualified"]:
        who = dq["team"] or dq["input"]
        console.print(
            f"[red]not ranked[/] {escape(who)}{escape(' / ' + dq['task'] if dq['task'] else '')}: "
            f"{escape(dq['reason'])}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        escape(
            f"score: {c['inputs']} inputs, {c['scored']} scored, {c['errors']} refused, {c['ranked']} "
            f"ranked, {c['flagged']} flagged in {result.seconds:.1f} s ({result.jobs} workers) → "
            f"{result.out}"
        ),
        highlight=False,
        soft_wrap=True,
    )
    if json_out:
        _emit_json(result.to_dict())


_TERMINATED = False
SIGNAL_GRACE_S = 5.0  # after SIGTERM/Ctrl-C, how long the main thread gets to unwind before the watchdog exits


def _on_sigterm(signum, frame) -> None:
    """SIGTERM (Slurm's time limit, `kill`) is handled like Ctrl-C: the same clean-up paths run."""
    import signal

    from subtool.errors import Terminated

    global _TERMINATED
    if _TERMINATED:
        return  # a second SIGTERM must not interrupt the clean-up of the first
    _TERMINATED = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Terminated()


def _install_signal_handlers() -> None:
    """SIGTERM raises in the main thread like Ctrl-C. Python runs signal handlers only when the main thread runs
    Python code, and it may be waiting inside LoadGen's native code for minutes; so the C-level handler also
    writes the signal to a pipe that a watchdog thread reads: if the process is still alive SIGNAL_GRACE_S
    later, the watchdog removes what is in flight, records the stage as interrupted and exits (143 or 130)."""
    import os
    import signal
    import threading

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    except (OSError, ValueError):
        return
    threading.Thread(target=_watchdog, args=(read_end,), name="subtool-signal-watchdog", daemon=True).start()


def _watchdog(read_end: int) -> None:
    import os
    import signal
    import time

    from subtool.errors import EXIT_INTERRUPTED, EXIT_TERMINATED
    from subtool.fsutil import emergency_cleanup

    while True:
        data = os.read(read_end, 64)
        if not data:
            return
        got = {b for b in data if b in (signal.SIGTERM, signal.SIGINT)}
        if got:
            break
    time.sleep(SIGNAL_GRACE_S)
    code = EXIT_TERMINATED if signal.SIGTERM in got else EXIT_INTERRUPTED
    _kill_children()  # e.g. the LoadGen session process, which would keep writing
    emergency_cleanup()
    with contextlib.suppress(Exception):
        what = "terminated (SIGTERM)" if code == EXIT_TERMINATED else "interrupted"
        sys.stderr.write(
            f"{what} while the benchmark was running: what it was writing is removed; run the same "
            "command again to resume\n"
        )
        sys.stderr.flush()
    os._exit(code)


def _print_line(text: str, hint: str | None = None) -> None:
    from rich.markup import escape

    console = _console()
    console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)
    if hint:
        console.print(f"  hint: {escape(hint)}", highlight=False, soft_wrap=True)


def _command_name() -> str:
    words = [a for a in sys.argv[1:] if not a.startswith("-")]
    return words[0] if words else "subtool"


def _exit_for(exc: BaseException) -> int:
    """The one line (and exit code) for an exception that escaped a command."""
    import os
    import traceback

    from subtool.errors import EXIT_BUG, EXIT_REMOTE, os_error

    if isinstance(exc, SubtoolError):
        _print_line(exc.one_line(), exc.hint)
        return exc.exit_code
    if isinstance(exc, (ConnectionError, TimeoutError)):
        _print_line(f"network failure: {exc} [remote.network]", "check the network and run the same command again")
        return EXIT_REMOTE
    if isinstance(exc, OSError):
        err = os_error(exc, action="cannot read or write")
        _print_line(err.one_line(), err.hint)
        return err.exit_code
    if os.environ.get("SUBTOOL_DEBUG"):
        traceback.print_exception(exc)
    detail = (str(exc).strip().splitlines() or [""])[0][:200]
    _print_line(
        f"`subtool {_command_name()}` failed unexpectedly ({type(exc).__name__}"
        f"{': ' + detail if detail else ''}): this is a bug in subtool [internal]",
        None
        if os.environ.get("SUBTOOL_DEBUG")
        else "run it again with SUBTOOL_DEBUG=1 for the traceback, and report it",
    )
    return EXIT_BUG


def _kill_children() -> None:
    """SIGKILL this process's children (Linux /proc); nothing elsewhere."""
    import os
    import signal

    me = str(os.getpid())
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError):
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    ppid = fh.read().rsplit(b")", 1)[1].split()[1].decode()
                if ppid == me:
                    os.kill(int(entry), signal.SIGKILL)


def main() -> None:
    """Entry point: every way a command can end is one line and a distinct exit code, never a traceback."""
    from subtool.errors import EXIT_BUG, EXIT_INTERRUPTED, EXIT_TERMINATED, interruption_explained

    _install_signal_handlers()
    try:
        # not standalone: usage errors come here (one line, not typer's box); typer turns Ctrl-C (and our
        # SIGTERM) into exit 130 and `raise typer.Exit(n)` into a returned n
        returned = app(standalone_mode=False)
        code = returned if isinstance(returned, int) else 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else EXIT_BUG)
    except (KeyboardInterrupt, typer.Abort):
        code = EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        code = _usage_error(exc) if _is_usage_error(exc) else _exit_for(exc)
    if code == EXIT_INTERRUPTED or _TERMINATED:
        code = EXIT_TERMINATED if _TERMINATED else EXIT_INTERRUPTED
        if not interruption_explained():
            what = "terminated (SIGTERM)" if _TERMINATED else "interrupted"
            with contextlib.suppress(Exception):
                _console().print(
                    f"[bold red]{what}[/] — nothing half-written; run the same command again to "
                    "resume where it stopped.",
                    highlight=False,
                    soft_wrap=True,
                )
    sys.exit(code)


def _is_usage_error(exc: BaseException) -> bool:
    """click's ClickException (typer vendors its own click, so matched by name): a bad command line."""
    return any(cls.__name__ == "ClickException" for cls in type(exc).__mro__)


def _usage_error(exc) -> int:
    """A bad command line (unknown option, missing argument, a value of the wrong type): one line, not typer's
    box; with no command at all, the help."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        exc.show()
        return exc.exit_code
    ctx = getattr(exc, "ctx", None)
    where = f"subtool {ctx.info_name}" if ctx is not None and ctx.parent is not None else "subtool"
    _print_line(f"{exc.format_message()} [cli.usage]", f"`{where} --help` lists every option")
    return exc.exit_code


if __name__ == "__main__":  # pragma: no cover
    main()
