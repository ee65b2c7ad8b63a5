"""measurements.json (v6: in the result folder; v5: measurements/<system>/<model>/<scenario>/<system>*.json)."""

from __future__ import annotations

from subtool.checker.context import ResultContext
from subtool.checker.registry import define
from subtool.checker.rules.inputs import NOT_FINITE
from subtool.checker.rules.layout import MISSING_FILE, check_measurement_files
from subtool.mlperf.logs import NonFinite, read_json_object
from subtool.mlperf.round import MEASUREMENTS_FIELDS

UNREADABLE = define(
    "measurements.unreadable", "error", "measurements.json is not a readable JSON object.", "crashes with a traceback"
)
FIELD_MISSING = define(
    "measurements.field_missing",
    "error",
    "measurements.json lacks a required field (input_data_types, retraining, starting_weights_filename, "
    "weight_data_types, weight_transformations).",
    "'field … is missing', fails the result",
)
FIELD_EMPTY = define(
    "measurements.field_empty",
    "error",
    "A required measurements.json field is empty.",
    "'field … is missing meaningful value', fails the result",
)


def measurements_json_rel(ctx: ResultContext) -> str | None:
    """Path of the measurements JSON; v5 trees name it after the system, found by listing the folder."""
    folder = ctx.measurements_rel
    if ctx.cfg.layout.measurements_json_in_dir:
        return f"{folder}/measurements.json"
    names = sorted(ctx.files(folder))
    system, scenario = ctx.job.system, ctx.job.scenario
    for name in names:
        if name.startswith(system) and (name.endswith(f"_{scenario}.json") or name.endswith(".json")):
            return f"{folder}/{name}"
    return None


def check_measurements(ctx: ResultContext) -> dict | None:
    """Check the measurements JSON and the files beside it; return the JSON (the summary row needs it)."""
    check_measurement_files(ctx)
    rel = measurements_json_rel(ctx)
    if rel is None or not ctx.exists(rel):
        where = rel or f"{ctx.measurements_rel}/{ctx.job.system}.json"
        name = "measurements.json" if ctx.cfg.layout.measurements_json_in_dir else f"{ctx.job.system}.json"
        ctx.out.add(
            MISSING_FILE, where, f"{name} is missing", f"write {name} with the fields {', '.join(MEASUREMENTS_FIELDS)}"
        )
        return None
    data, problem = read_json_object(ctx.abs(rel))
    if data is None:
        rule = NOT_FINITE if isinstance(problem, NonFinite) else UNREADABLE
        ctx.out.add(rule, rel, f"measurements JSON {problem}", "rewrite it as one JSON object of finite values")
        return None
    for key in MEASUREMENTS_FIELDS:
        if key not in data:
            ctx.out.add(FIELD_MISSING, rel, f"field '{key}' is missing", f'add "{key}" to {rel}')
        elif not data[key]:
            ctx.out.add(
                FIELD_EMPTY,
                rel,
                f"field '{key}' is empty",
                f'give "{key}" a meaningful value (e.g. "fp32", "No", "none")',
            )
    return data
