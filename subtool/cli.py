"""The `subtool` command line: one function per subcommand; each parses options, calls one stage, prints.

Human output and progress go to stderr; stdout carries only the `--json` document. Stages are imported inside
the functions so that `subtool check` never imports torch.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import typer

from subtool import __version__
from subtool.cli_common import _console, _emit_json, _fail, _outputs
from subtool.cli_fetch import fetch
from subtool.cli_run import all_, run
from subtool.cli_system import system
from subtool.errors import SubtoolError
from subtool.mlperf.layout import NAME_ALPHABET as _NAMES
from subtool.wording import counted

app = typer.Typer(
    name="subtool",
    help="MLPerf Inference from 'run it' to 'results published': run, package, check, pack, publish, score.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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


# run and all: every run option, defined once (cli_options.py)
app.command()(run)
app.command("all")(all_)
app.command()(fetch)  # the official checkpoints and data sets (cli_fetch.py)


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
        help="Submission round: v6.1, v6.0 (current layout) or v5.1, v5.0 (default: the round whose seeds the runs "
        "were made with, else v6.1, or v5.1 for an --out tree already laid out for v5.x; then the latest round of "
        "that layout that lists the models).",
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
    from subtool.fsutil import undo_on_error
    from subtool.package.api import PackageOptions, package_results

    _check_package_names(version, division, (("--submitter", submitter), ("--system", system)), out)
    scorer = _accuracy_scorer(model_path, dataset_path)
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
    try:
        with undo_on_error(out, full_logs or out.with_name(out.name + "_full_logs")):  # a failure leaves nothing
            result = package_results(opts, console=_console(), accuracy_scorer=scorer)
    except SubtoolError as err:
        _fail(err)
    if json_out:
        _emit_json(result.to_dict())


def _check_package_names(version: str | None, division: str | None, names, out: Path) -> None:
    """The round and division, and each (flag, name) as a path component that fits under out (before any work)."""
    from subtool.cli_options import check_round_and_division
    from subtool.fsutil import check_name_fits
    from subtool.mlperf.layout import check_name

    try:
        check_round_and_division(version, division)
        for flag, value in names:
            if value is not None:
                check_name(value, flag[2:], flag=flag)
            check_name_fits(value or "", out, flag)
    except SubtoolError as err:
        _fail(err)


def _accuracy_scorer(model_path: Path | None, dataset_path: Path | None):
    """With --model-path and --dataset-path: what scores an imported result's missing accuracy.txt; else None."""
    if (model_path is None) != (dataset_path is None):
        _fail(
            SubtoolError(
                "--model-path and --dataset-path go together (they score a missing accuracy.txt)", rule="cli.usage"
            )
        )
    if model_path is None:
        return None

    def score_with_subtool(imp):
        from subtool.runner.api import accuracy_text

        return accuracy_text(imp.bench.name, model_path, dataset_path, imp.acc_dir / "mlperf_log_accuracy.json")

    return score_with_subtool


# ------------------------------------------------------------------------------------------------- check
@app.command()
def check(
    tree: Path = typer.Argument(..., help="Submission root (holds closed/ and/or open/)."),
    version: str | None = typer.Option(
        None,
        help="Rules of this round: v6.1, v6.0, v5.1, v5.0 (default: v6.1, or for a tree laid out for v5.x "
        "the latest v5.x round; then the latest round of that layout that lists the tree's models).",
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

    try:
        opts = CheckOptions(
            version=version,
            submitter=submitter,
            waive=frozenset(waive),
            skip_compliance=skip_compliance,
            official=official,
        )
        rep = check_tree(tree, opts, console=_console())
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
        None,
        help="Rules used for the summary (default: as for check, v6.1 or, for a tree laid out for v5.x, the "
        "latest v5.x round; then the latest round of that layout that lists the tree's models).",
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

            check_name(name, "artifact name", flag="--name")
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
    no_pr: bool = typer.Option(False, "--no-pr", help="Push only; print the compare URL to open the PR by hand."),
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


# ------------------------------------------------------------------------------------------------ system
app.command()(system)  # the system description (cli_system.py)


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
    for skip in result.leaderboard["skipped"]:
        said = f"[yellow]skipped[/] {escape(skip['path'])}: {escape(skip['why'])}"
        console.print(said, highlight=False, soft_wrap=True)
    console.print(
        escape(
            f"score: {counted(c['inputs'], 'input')}, {c['scored']} scored, {c['errors']} refused, {c['ranked']} "
            f"ranked, {c['flagged']} flagged, {c['skipped']} skipped in {result.seconds:.1f} s ({result.jobs} "
            "workers) → "
            f"{result.out}"
        ),
        highlight=False,
        soft_wrap=True,
    )
    if json_out:
        _emit_json(result.to_dict())


# --------------------------------------------------------------------------------------------------- mcp
@app.command()
def mcp() -> None:
    """Serve every command as a tool to a coding agent over MCP (stdio); needs the `mcp` extra."""
    from subtool.mcp_server import serve

    try:
        serve(app)
    except SubtoolError as err:
        _fail(err)


def main() -> None:
    """Entry point: every way a command can end is one line and a distinct exit code, never a traceback."""
    from subtool.cli_signals import (
        _exit_for,
        _install_signal_handlers,
        _is_usage_error,
        _usage_error,
        terminated,
        terminated_by,
    )
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
    if code == EXIT_INTERRUPTED or terminated():
        code = EXIT_TERMINATED if terminated() else EXIT_INTERRUPTED
        _record_interruption(f"terminated ({terminated_by()})" if terminated() else "interrupted (Ctrl-C)")
        if not interruption_explained():
            what = f"terminated ({terminated_by()})" if terminated() else "interrupted"
            with contextlib.suppress(Exception):
                _console().print(
                    f"[bold red]{what}[/] — nothing half-written; run the same command again: what finished "
                    "is kept, and the interrupted step runs again from its start.",
                    highlight=False,
                    soft_wrap=True,
                )
    _json_error(code)
    sys.exit(code)


def _record_interruption(what: str) -> None:
    """--json's error object for a command a signal or Ctrl-C ended (it said "error": null), unless the command
    recorded its own (a stage's interruption, with the rule that says so)."""
    from subtool.cli_common import record_error, recorded_error

    if recorded_error() is None:
        record_error(
            f"{what}: nothing half-written",
            "run the same command again: what finished is kept, the interrupted step runs again from its start",
            "cli.interrupted",
        )


def _json_error(code: int) -> None:
    from subtool.cli_common import _emit_json, json_error_object

    obj = json_error_object(code)
    if obj is not None:
        with contextlib.suppress(Exception):
            _emit_json(obj)


if __name__ == "__main__":  # pragma: no cover
    main()
