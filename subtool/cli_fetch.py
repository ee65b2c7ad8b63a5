"""`subtool fetch`: the official checkpoints and data sets (subtool/fetch/), one command function."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from subtool.cli_common import _console, _fail, _outputs
from subtool.errors import SubtoolError


def fetch(
    model: str = typer.Argument(..., help="Benchmark, e.g. bert-99 (an unknown one lists those subtool fetches)."),
    dataset_only: bool = typer.Option(False, "--dataset-only", help="Only the data set."),
    model_only: bool = typer.Option(False, "--model-only", help="Only the checkpoint."),
    to: Path | None = typer.Option(
        None,
        "--to",
        help="Install under DIR/assets/<model>/<kind>/ instead of the cache ($SUBTOOL_CACHE); "
        "`subtool run --assets DIR` (or SUBTOOL_CACHE=DIR) finds it there.",
    ),
    plan: bool = typer.Option(False, "--plan", help="Print every URL, size and checksum; download nothing."),
    json_file: Path | None = typer.Option(
        None, "--json", help="Write the plan (with --plan) or what was installed as JSON to FILE."
    ),
    from_dir: Path | None = typer.Option(
        None, "--from", help="Verify and install files copied by hand into DIR/<model>/<kind>/<name> (see --plan)."
    ),
    verify: bool = typer.Option(
        False,
        "--verify",
        help="Hash every installed file again (by default a file whose size and times are as installed is trusted).",
    ),
    mirror: str | None = typer.Option(
        None,
        "--mirror",
        help="Fetch plain HTTP files from an internal mirror: URL/<host>/<path> of each original "
        "(default $SUBTOOL_FETCH_MIRROR; the Hub's mirror is $HF_ENDPOINT).",
    ),
) -> None:
    """Download, verify and install a benchmark's official checkpoint and data set (or plan it, or bring it in)."""
    from subtool.fetch import api
    from subtool.fsutil import atomic_write_json

    _outputs(("--to", to, True), ("--json", json_file, False))
    console = _console()
    try:
        kinds = _kinds(dataset_only, model_only)
        _refuse_clashes(plan, from_dir, json_file)
        if plan:
            record = api.plan(model, kinds=kinds, mirror=mirror)
            _print_plan(console, record)
            _say_not_served(console, model, kinds)
            if json_file is not None:
                atomic_write_json(json_file, record)
            return
        say = lambda line: console.print(line, highlight=False, soft_wrap=True, markup=False)  # noqa: E731
        if from_dir is not None:
            result = api.install_from(model, from_dir, kinds=kinds, to=to, say=say, verify=verify)
        else:
            progress = sys.stderr.isatty() and json_file is None
            result = api.fetch(model, kinds=kinds, to=to, mirror=mirror, say=say, progress=progress, verify=verify)
        if to is not None:
            say(f"installed outside the cache: `subtool run --model {model} --assets {result.root}` finds it")
        _say_not_served(console, model, kinds)
        if json_file is not None:
            atomic_write_json(json_file, result.to_dict())
    except SubtoolError as err:
        _fail(err)


def _refuse_clashes(plan: bool, from_dir: Path | None, json_file: Path | None) -> None:
    """Options that cannot go together: --plan with --from, and a --json record inside --from's folder."""
    if plan and from_dir is not None:
        raise SubtoolError("--plan and --from do not go together", rule="cli.usage")
    if from_dir is not None and json_file is not None and json_file.resolve().is_relative_to(from_dir.resolve()):
        raise SubtoolError(
            "--json would write into --from's folder, over the plan or files it installs from",
            path=json_file,
            rule="cli.usage",
            hint="write the record elsewhere, e.g. --json fetched.json",
        )


def _say_not_served(console, model: str, kinds: tuple[str, ...]) -> None:
    """A kind asked for (by default both) that no source serves for this benchmark: what to do instead."""
    from subtool.mlperf.assets import asset, not_served

    for kind in kinds:
        why = not_served(model, kind)
        if why is not None and asset(model, kind) is None:
            console.print(f"{kind}: not fetched: {why}", highlight=False, soft_wrap=True, markup=False)


def _kinds(dataset_only: bool, model_only: bool) -> tuple[str, ...]:
    if dataset_only and model_only:
        raise SubtoolError("--dataset-only and --model-only do not go together", rule="cli.usage")
    return ("dataset",) if dataset_only else ("model",) if model_only else ("model", "dataset")


def _print_plan(console, record: dict) -> None:
    def out(line: str) -> None:
        console.print(line, highlight=False, soft_wrap=True, markup=False)

    out(f"plan for {record['benchmark']} (for --from DIR: {record['from_layout']})")
    for a in record["assets"]:
        out(f"{a['kind']}: {a['form']} (source: {a['document']})")
        for f in a["files"]:
            digest = f["sha256"] or f["md5"] or f["blob_id"] or "none (first-download: recorded when fetched)"
            size = f["size"] if f["size"] is not None else "unknown size"
            out(f"  {f['path']}  {size}  {f['origin']} {digest}\n    {f['url']}")
        hub = a["hub"]
        if hub is not None:
            where = f"{hub['repo_id']}@{hub['revision']} files {', '.join(hub['patterns'])} on {hub['endpoint']}"
            out(f"  Hub: {where}; token: {hub['token']}")
            if not hub["listed"]:
                out(f"  the Hub's files are not listed: {hub['problem']}")
                out("  (a plan made where the Hub answers lists them with their checksums, which --from needs)")
