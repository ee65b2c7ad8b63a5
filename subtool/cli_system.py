"""`subtool system`: print, edit (--set/--file) or validate a system description, one command function.

What the user gives is checked before anything is detected or written: the division, the submitter (also when
an override sets it), every override's field name and value. A value the user set that the schema refuses, or a
count no real system has (mlperf/system_counts.py), is an error, and `--out` is then left as it was; a field nobody
set (detected, or a placeholder) is only a warning.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from subtool.cli_common import _console, _fail, _outputs
from subtool.errors import EXIT_USAGE, SubtoolError
from subtool.mlperf.layout import DIVISIONS
from subtool.mlperf.layout import NAME_ALPHABET as _NAMES


def system(
    submitter: str = typer.Option("", help=f"Organisation / team name written into the description ({_NAMES})."),
    division: str | None = typer.Option(None, help="open (default), closed or network; must match the tree folder."),
    set_: list[str] = typer.Option([], "--set", help="Override a field: key=value (repeatable)."),
    file: Path | None = typer.Option(None, "--file", help="Overrides from a TOML or JSON file."),
    validate: Path | None = typer.Option(None, help="Only validate this system JSON; exit 1 if invalid."),
    out: Path | None = typer.Option(None, help="Also write the JSON to this file."),
    explain: bool = typer.Option(
        False, "--explain", help="Print where each field came from (library, file, command, override, guessed)."
    ),
) -> None:
    """Print the detected system description (systems/<system>.json); edit it with --set/--file; validate."""
    _outputs(("--out", out, False))
    from rich.markup import escape

    from subtool.fsutil import atomic_write_text
    from subtool.package.system import explain_table, validation_errors

    console = _console()
    try:
        _check_options(submitter, division, validate, set_, file, out, explain)
        if validate is not None:
            raise typer.Exit(_validate_system_file(validate, division, submitter or None, console))
        desc, chosen = _described_system(submitter, division, file, list(set_))
        _refuse_invalid_choices(desc, chosen, division, submitter)
        if out is not None:
            atomic_write_text(out, desc.to_json())
    except SubtoolError as err:
        _fail(err)
    sys.stdout.write(explain_table(desc) + "\n" if explain else desc.to_json())
    if desc.guessed:
        console.print(
            escape(f"note: not detected, please set: {', '.join(desc.guessed)} (--set key=value)"),
            highlight=False,
            soft_wrap=True,
        )
    for err in validation_errors(desc.fields, division=division or "open", submitter=submitter or None):
        console.print(escape(f"warning: {err}"), highlight=False, soft_wrap=True)


def _check_options(submitter, division, validate, sets, file, out, explain) -> None:
    if division is not None and division not in DIVISIONS:
        raise SubtoolError(
            f"--division {division!r} is no division; allowed values: {', '.join(DIVISIONS)}",
            rule="cli.usage",
            exit_code=EXIT_USAGE,
        )
    if submitter:
        from subtool.mlperf.layout import check_name

        check_name(submitter, "submitter", flag="--submitter")
    if validate is not None:
        given = [
            flag for flag, value in (("--set", sets), ("--file", file), ("--out", out), ("--explain", explain)) if value
        ]
        if given:
            raise SubtoolError(
                f"--validate checks a file as it is and cannot be combined with {', '.join(given)}",
                rule="cli.usage",
                exit_code=EXIT_USAGE,
                hint="validate the file alone, or describe the system with --set/--file and --out, then validate",
            )


def _validate_system_file(path: Path, division: str | None, submitter: str | None, console) -> int:
    """`system --validate`: one error line per finding in the system JSON at path; the exit status (1: invalid)."""
    from rich.markup import escape

    from subtool.mlperf.logs import read_json_object
    from subtool.package.system import validation_errors

    fields, problem = read_json_object(path)  # the checker's strict reader: NaN and Infinity are refused
    if problem is not None:
        raise SubtoolError(f"the system JSON {problem}", path=path, rule="system.bad_json")
    errors = validation_errors(fields, division=division, submitter=submitter)
    for err in errors:
        console.print(
            f"[bold red]error:[/] {escape(f'{path}: {err} [system.invalid]')}", highlight=False, soft_wrap=True
        )
    if not errors:
        console.print(escape(f"{path}: valid"), highlight=False)
    return 1 if errors else 0


def _described_system(submitter: str, division: str | None, file: Path | None, sets: list[str]):
    """(the detected description with the file's overrides, then --set's, applied; each source recorded, the
    names of the fields the user chose and where: field → source)."""
    from subtool.package.system import apply_overrides, detect_system, load_overrides, parse_set, split_overrides

    from_file = split_overrides(load_overrides(file), path=file)[0] if file is not None else {}
    from_set = parse_set(sets)
    chosen = {**dict.fromkeys(from_file, str(file)), **dict.fromkeys(from_set, "--set")}
    if "submitter" in chosen:
        from subtool.mlperf.layout import check_name

        value = {**from_file, **from_set}["submitter"]
        where = "--set submitter" if chosen["submitter"] == "--set" else f"{file}: submitter"
        check_name(str(value), "submitter", flag=where)
    overrides = {**from_file, **from_set}
    desc = detect_system(submitter=submitter or str(overrides.get("submitter", "")), division=division or "open")
    desc = apply_overrides(desc, from_file, source=f"override: {file}")
    return apply_overrides(desc, from_set, source="override: --set"), chosen


def _refuse_invalid_choices(desc, chosen: dict[str, str], division: str | None, submitter: str) -> None:
    """A value the user set that the schema refuses is an error (nothing written), not a warning."""
    from subtool.package.system import field_errors

    mine = dict(chosen)
    if division is not None:
        mine.setdefault("division", "--division")
    if submitter:
        mine.setdefault("submitter", "--submitter")
    found = field_errors(desc.fields, division=division or "open", submitter=submitter or None)
    bad = [(name, msg) for name, msg in found if name in mine]
    if bad:
        name, msg = bad[0]
        more = f" (and {len(bad) - 1} more: {', '.join(n for n, _ in bad[1:])})" if len(bad) > 1 else ""
        raise SubtoolError(
            f"{mine[name]}: {msg}{more}",
            rule="system.invalid",
            exit_code=EXIT_USAGE,
            hint="fix the value; fields nobody set are only warned about",
        )
