"""run.json: the record `subtool run` leaves in each run directory, beside its LoadGen logs.

Its fields are subtool/schemas/run.schema.json. One writer (`write_run_record`, called by the runner once the
benchmark finished) and one reader: `load_run_record` parses strict JSON (no NaN, no Infinity, at most
MAX_BYTES) and never raises; `read_run_record` adds the schema and turns any problem into one SubtoolError that
names the file, with the caller's rule. Package, pack, the pipeline and the round choice all read through here.
The timestamps it keeps are `date -u` lines (`date_u`, `parse_date_u`), the form `.tstamps` files hold.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone
from functools import cache
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.fsutil import atomic_write_text
from subtool.mlperf.logs import describe_os_error, parse_json, read_bounded

RUN_SCHEMA = "subtool.run/1"
FILE_NAME = "run.json"
MAX_BYTES = 16 << 20  # a run record is a few kB; Ray's per-worker counters make it tens of kB at most


# ------------------------------------------------------------------------------------------------ timestamps
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def date_u(moment: float | datetime | None = None) -> str:
    """`date -u` output in the C locale, e.g. `Fri Nov  6 01:52:06 UTC 2026` (day padded with a space), for a
    datetime, a POSIX time or now; whole seconds, as date prints them."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(time.time() if moment is None else moment, tz=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    return (
        f"{_WEEKDAYS[moment.weekday()]} {_MONTHS[moment.month - 1]} {moment.day:2d} {moment:%H:%M:%S} UTC {moment.year}"
    )


def parse_date_u(line: object) -> datetime | None:
    """A `date -u` line in the C locale (`Thu Nov 26 01:52:06 UTC 2026`), as run.json and .tstamps hold them."""
    try:
        return datetime.strptime(" ".join(str(line).split()), "%a %b %d %H:%M:%S UTC %Y").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------------ the schema
@cache
def _validator():
    from jsonschema import Draft202012Validator

    from subtool.schemas import load_schema

    return Draft202012Validator(load_schema("run"))


def schema_problems(record: object) -> list[str]:
    """What in `record` the run.json schema refuses, one phrase each ("modes.accuracy: ... "); [] when valid."""
    out = []
    for err in sorted(_validator().iter_errors(record), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in err.absolute_path)
        message = err.message if len(err.message) <= 160 else err.message[:157] + "..."
        out.append(f"{where}: {message}" if where else message)
    return out


@cache
def _asset_validator():
    from jsonschema import Draft202012Validator

    from subtool.schemas import load_schema

    return Draft202012Validator({"$defs": load_schema("run")["$defs"], "$ref": "#/$defs/asset"})


NOT_VERIFIED = "not verified by subtool"  # run.json "assets": a checkpoint the user gave (never hashed)


def run_assets(record: object) -> list[dict]:
    """The checkpoint and data set files a run read (run.json "assets"), each entry one the schema accepts (any
    other is left out: a reader of an untrusted record never raises). A record of an older version, without the
    field, gives the paths it names: the data set with the run's sha256, the checkpoint unverified."""
    if not isinstance(record, dict):
        return []
    entries = record.get("assets")
    if "assets" not in record and not record.get("demo"):
        entries = _legacy_assets(record)
    if not isinstance(entries, list):
        return []
    return [e for e in entries if _asset_validator().is_valid(e)]


def _legacy_assets(record: dict) -> list[dict]:
    out = []
    for kind, key in (("model", "model_path"), ("dataset", "dataset_path")):
        path = record.get(key)
        if isinstance(path, str) and path:
            entry = {"kind": kind, "name": Path(path).name or path, "path": path, "origin": "given"}
            digest = record.get("dataset_sha256") if kind == "dataset" else None
            entry.update({"sha256": digest} if digest else {"note": NOT_VERIFIED})
            out.append(entry)
    return out


# ---------------------------------------------------------------------------------------- writing and reading
def _finite(value: object) -> object:
    """`value` with every NaN or infinity (a SUT counter divided by zero) as null: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_run_record(run_dir: Path, record: dict) -> list[str]:
    """Write `run_dir`/run.json atomically, as strict JSON (a non-finite number becomes null). Returns what the
    schema refuses in it ([] for every record subtool builds): such a record is still written, so that a bug in
    one field never costs the run its logs, and every reader then names the field."""
    record = _finite(record)
    atomic_write_text(Path(run_dir) / FILE_NAME, json.dumps(record, indent=2, allow_nan=False) + "\n")
    return schema_problems(record)


def load_run_record(path: Path | str) -> tuple[dict | None, str | None]:
    """(record, None), or (None, why) when run.json is missing, unreadable, too large, not strict JSON or not an
    object. Never raises; the schema is not applied (see read_run_record)."""
    try:
        data = read_bounded(path, MAX_BYTES)
    except FileNotFoundError:
        return None, "is missing"
    except OSError as exc:
        return None, describe_os_error(exc)
    if not data.strip():
        return None, "is empty"
    record, problem = parse_json(data)
    if problem is not None:
        return None, str(problem)
    if not isinstance(record, dict):
        return None, f"must hold a JSON object, found {type(record).__name__}"
    return record, None


def read_run_record(path: Path | str, *, rule: str, missing_rule: str | None = None, hint: str | None = None) -> dict:
    """The run record at `path`, valid against the schema; else one SubtoolError naming the file (`rule`;
    `missing_rule` when there is no file at all)."""
    record, problem = load_run_record(path)
    if record is None:
        raise SubtoolError(
            f"run.json {problem}",
            path=path,
            rule=missing_rule if problem == "is missing" and missing_rule else rule,
            hint=hint,
        )
    bad = schema_problems(record)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise SubtoolError(f"run.json is not a subtool run record: {bad[0]}{more}", path=path, rule=rule, hint=hint)
    return record
