"""What every `subtool` command shares: the stderr console, the one-line failure, output pre-flight, --json."""

from __future__ import annotations

import json
import sys

import typer

from subtool.errors import SubtoolError

CI_LOG_WIDTH = 240  # not a terminal (a CI log, a file): lines this long before a table or a rule folds


def _console():
    """Human output on stderr. In a terminal rich fits it to the window; in a CI log or a file (no terminal, no
    $COLUMNS) there is no window: lines are not wrapped at 80 columns mid-sentence and paths are never cut."""
    import os

    from rich.console import Console

    if sys.stderr.isatty() or os.environ.get("COLUMNS"):
        return Console(stderr=True)
    return Console(stderr=True, width=CI_LOG_WIDTH, soft_wrap=True)


_JSON_STATE: dict = {"emitted": False, "error": None}


def record_error(line: str, hint: str | None, rule: str | None = None, path: object = None) -> None:
    """The error a command ends with, for `--json`'s error object (json_error_object)."""
    _JSON_STATE["error"] = {"rule": rule, "message": line, "path": str(path) if path else None, "hint": hint}


def recorded_error() -> dict | None:
    return _JSON_STATE["error"]


def json_error_object(code: int) -> dict | None:
    """With --json and nothing written on stdout yet: what to print there so that a script's json.loads(stdout)
    still reads why the command failed; None otherwise."""
    if "--json" not in sys.argv[1:] or _JSON_STATE["emitted"] or code == 0:
        return None
    return {"ok": False, "exit_code": code, "error": _JSON_STATE["error"]}


def _fail(err: SubtoolError) -> None:
    from rich.markup import escape

    record_error(err.one_line(), err.hint, err.rule, err.path)
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


def _emit_json(obj: object) -> None:
    _JSON_STATE["emitted"] = True
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()
