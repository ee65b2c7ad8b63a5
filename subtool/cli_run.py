"""`subtool run` and `subtool all`: both take every run option (cli_options.RUN_OPTIONS) plus their own."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from subtool.cli_common import _console, _emit_json, _fail, _outputs
from subtool.cli_options import RunArgs, check_run_args, recorded_command, run_options, with_run_options
from subtool.errors import SubtoolError
from subtool.mlperf.layout import NAME_ALPHABET as _NAMES


@with_run_options
def run(
    args: RunArgs,
    mode: str = typer.Option("both", help="performance, accuracy or both."),
    out: Path = typer.Option(Path("subtool-out/runs"), help="Parent directory of the run directory."),
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
    try:
        backend, extra = check_run_args(args, mode=mode)
    except SubtoolError as err:
        _fail(err)
    opts = run_options(args, backend=backend, extra=extra, out=out, mode=mode, argv=recorded_command(sys.argv[1:]))
    try:
        if find_perf:
            from subtool.runner.find_perf import find_performance

            record = find_performance(opts, console=_console())
        else:
            from subtool.runner.api import run_benchmark

            record = run_benchmark(opts, console=_console())
    except SubtoolError as err:
        _fail(err)
    if json_out:
        _emit_json(record)


@with_run_options
def all_(
    args: RunArgs,
    submitter: str = typer.Option(..., help=f"Organisation / team name ({_NAMES})."),
    out: Path = typer.Option(Path("subtool-out"), help="Output directory (runs, tree, check, artifacts)."),
    division: str | None = typer.Option(None, help="open or closed (demo: open)."),
    system: str | None = typer.Option(None, help=f"System name ({_NAMES}; default: detected)."),
    system_file: Path | None = typer.Option(None, help="System description overrides (TOML/JSON)."),
    name: str = typer.Option("mlperf_submission_short", help=f"Base name of the artifacts ({_NAMES})."),
    fork: str | None = typer.Option(None, help="Publish to this fork when given."),
    upstream: str | None = typer.Option(None, help="OWNER/REPO for the pull request."),
    base: str = typer.Option("main", help="Base branch for publishing."),
    no_pr: bool = typer.Option(False, "--no-pr", help="Publish: push only."),
    allow_short: bool = typer.Option(False, help="Publish: allow DEMO / short-run results, marked as such."),
    replace: bool = typer.Option(False, help="Publish: the branch holds this tree only (default: add to it)."),
    from_stage: str | None = typer.Option(None, help="Start at this stage (run, package, check, pack, publish)."),
    only: str | None = typer.Option(None, help="Run only this stage."),
    force: bool = typer.Option(False, help="Re-run stages even when their inputs did not change."),
    wait: bool = typer.Option(
        False, "--wait", help="Another subtool is writing to --out: wait for it to finish instead of stopping."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the outcome as JSON on stdout."),
) -> None:
    """run → package → check → pack (→ publish): the whole job in one command."""
    _outputs(("--out", out, True))
    from subtool.pipeline import PipelineOptions, run_pipeline

    try:
        backend, extra = check_run_args(args, division=division)
    except SubtoolError as err:
        _fail(err)
    argv = recorded_command(sys.argv[1:])
    opts = PipelineOptions(
        submitter=submitter,
        run=run_options(args, backend=backend, extra=extra, out=out / "runs", mode="both", argv=argv),
        out=out,
        division=division,
        system=system,
        system_file=system_file,
        version=args.version,
        name=name,
        fork=fork,
        upstream=upstream,
        base=base,
        no_pr=no_pr,
        allow_short=allow_short,
        replace=replace,
        from_stage=from_stage,
        only=only,
        force=force,
        compliance=args.compliance,
        argv=argv,
        wait=wait,
    )
    try:
        outcome = run_pipeline(opts, console=_console())
    except SubtoolError as err:
        _fail(err)
    if json_out:
        _emit_json(outcome.to_dict())
    raise typer.Exit(outcome.exit_code)
