"""systems/<system>.json: present, readable, complete, and consistent with the folder it describes."""

from __future__ import annotations

import os
from pathlib import Path

from subtool.checker.findings import Collector
from subtool.checker.registry import define
from subtool.checker.rules.inputs import NOT_FINITE
from subtool.checker.rules.layout import MISSING_FILE
from subtool.mlperf.logs import NonFinite, read_json_object
from subtool.mlperf.round import (
    AVAILABILITIES,
    SYSTEM_MEANINGFUL_FIELDS,
    SYSTEM_NETWORK_FIELDS,
    SYSTEM_REQUIRED_FIELDS,
    SYSTEM_TYPES,
)
from subtool.mlperf.system_counts import COUNT_BOUNDS, count_problem
from subtool.mlperf.system_counts import RULE as COUNT_RULE

UNREADABLE = define(
    "system.unreadable", "error", "The system description is not a readable JSON object.", "crashes with a traceback"
)
FIELD_MISSING = define(
    "system.field_missing",
    "error",
    "The system description lacks a required field.",
    "'field … is missing', fails every result of the system",
)
FIELD_EMPTY = define(
    "system.field_empty",
    "error",
    "A field that needs a meaningful value is empty. The test is truthiness, so a number 0 counts as empty: "
    'write it as a string ("0").',
    "'requires a meaningful response but is empty', fails every result of the system",
)
FIELD_NOT_INTEGER = define(
    "system.field_not_integer",
    "error",
    "number_of_nodes or accelerators_per_node is not an integer (the summary multiplies them).",
    "crashes with a traceback while writing summary.csv",
)
COUNT_IMPLAUSIBLE = define(
    COUNT_RULE,
    "warning",
    "A count no real system has: "
    + ", ".join(f"{b.field} outside {b.least} to {b.most:,}" for b in COUNT_BOUNDS)
    + ", or a fraction (mlperf/system_counts.py). The verdict stays the official one; `subtool system` refuses "
    "such a value.",
    'accepted when int() takes it (-3 nodes, "0" nodes, 10^300 accelerators, 2.5 nodes)',
)
NOTES_NOT_TEXT = define(
    "system.notes_not_text",
    "error",
    "hw_notes or sw_notes is not text where the summary joins them (sw_notes given, and either of them a number, "
    "list or object).",
    "crashes with a traceback (TypeError) while writing summary.csv",
)
STATUS = define(
    "system.status_invalid",
    "error",
    "status must be available, preview or rdi.",
    "'has invalid status', fails every result of the system",
)
SYSTEM_TYPE = define(
    "system.type_invalid",
    "error",
    "system_type must be datacenter, edge or datacenter,edge.",
    "'has invalid system type'; crashes in the closed division",
)
SUBMITTER = define(
    "system.submitter_mismatch",
    "error",
    "The submitter field differs from the submitter folder name.",
    "'has submitter …, directory has …', fails every result of the system",
)
DIVISION = define(
    "system.division_mismatch",
    "error",
    "The division field differs from the division folder.",
    "'has division …, directory has …', fails every result of the system",
)
NETWORK = define(
    "system.network_mode",
    "error",
    'is_network must be "true" exactly in the network division (and "false" or absent in closed).',
    "'incorrect network mode', fails every result of the system",
)


def system_json_rel(division: str, submitter: str, system: str) -> str:
    return f"{division}/{submitter}/systems/{system}.json"


def load_system(root: Path, division: str, submitter: str, system: str, out: Collector) -> dict | None:
    rel = system_json_rel(division, submitter, system)
    data, problem = read_json_object(os.path.join(root, rel))
    if data is None:
        if problem == "is missing":
            out.add(
                MISSING_FILE,
                rel,
                f"system description {system}.json is missing",
                "describe the machine in systems/<system>.json (subtool package writes one)",
            )
        elif isinstance(problem, NonFinite):
            out.add(
                NOT_FINITE,
                rel,
                f"system description {problem}",
                'write numbers as finite values, or as strings (e.g. "1")',
            )
        else:
            out.add(UNREADABLE, rel, f"system description {problem}", "rewrite it as one JSON object")
        return None
    return data


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def check_system(data: dict, division: str, submitter: str, rel: str, out: Collector) -> None:
    """Every rule on one system description: its kinds, its network flag, its fields, its owner."""
    _kinds(data, rel, out)
    is_network_raw = _network(data, division, rel, out)
    _fields(data, is_network_raw, rel, out)
    _owner(data, division, submitter, rel, out)


def _kinds(data: dict, rel: str, out: Collector) -> None:
    status = _text(data.get("status"))
    if status is None or status.lower() not in AVAILABILITIES:
        out.add(STATUS, rel, f"status is {data.get('status')!r}", 'set "status" to available, preview or rdi')
    if data.get("system_type") not in SYSTEM_TYPES:
        out.add(
            SYSTEM_TYPE,
            rel,
            f"system_type is {data.get('system_type')!r}",
            'set "system_type" to datacenter, edge or datacenter,edge (it decides the required scenarios)',
        )


def _network(data: dict, division: str, rel: str, out: Collector) -> object:
    """is_network as written (the network fields it requires depend on it), checked against the division."""
    is_network_raw = data.get("is_network")
    if is_network_raw is not None and not isinstance(is_network_raw, str):
        out.add(
            NETWORK,
            rel,
            f"is_network is {is_network_raw!r}, not a string",
            'write is_network as the string "true" or "false"',
        )
        return is_network_raw
    is_network = (is_network_raw or "").lower() == "true"
    expected = {"network": True, "closed": False}.get(division)
    if expected is not None and expected != is_network:
        out.add(
            NETWORK,
            rel,
            f"is_network is {is_network_raw!r} in the {division} division",
            'network-division systems need "is_network": "true"; others "false" or nothing',
        )
    return is_network_raw


def _fields(data: dict, is_network_raw: object, rel: str, out: Collector) -> None:
    required = list(SYSTEM_REQUIRED_FIELDS)
    if is_network_raw:
        required += [f for f in SYSTEM_NETWORK_FIELDS if f not in required]
    for key in required:
        if key not in data:
            out.add(FIELD_MISSING, rel, f"field '{key}' is missing", f'add "{key}" to the system description')
        elif key in SYSTEM_MEANINGFUL_FIELDS and not data[key]:
            hint = (
                f'write "{key}": "0" (a string): the official checker treats the number 0 as empty'
                if data[key] == 0 and not isinstance(data[key], bool)
                else f'give "{key}" a meaningful value'
            )
            out.add(FIELD_EMPTY, rel, f"field '{key}' is empty ({data[key]!r})", hint)
    _notes(data, rel, out)
    for key in ("number_of_nodes", "accelerators_per_node"):
        if key in data and data[key] and not _is_int(data[key]):
            out.add(
                FIELD_NOT_INTEGER,
                rel,
                f"field '{key}' is {data[key]!r}, not an integer",
                f'write "{key}" as a whole number (e.g. "1")',
            )
    _counts(data, rel, out)


def _counts(data: dict, rel: str, out: Collector) -> None:
    """Counts no real system has: a warning, the official verdict kept (it accepts them)."""
    for key, value in data.items():
        problem = count_problem(key, value) if value else None  # an empty one (the number 0) is field_empty's
        if problem:
            out.add(COUNT_IMPLAUSIBLE, rel, f"field '{key}' {problem}", f'write the real count in "{key}"')


def _notes(data: dict, rel: str, out: Collector) -> None:
    """The summary joins hw_notes and sw_notes as text when sw_notes is given: a note that is not text there ends
    the official checker with a TypeError."""
    if not data.get("sw_notes"):
        return
    for key in ("hw_notes", "sw_notes"):
        value = data.get(key)
        if value and not isinstance(value, str):
            out.add(NOTES_NOT_TEXT, rel, f"field '{key}' is {value!r:.60}, not text", f'write "{key}" as a string')


def _owner(data: dict, division: str, submitter: str, rel: str, out: Collector) -> None:
    sub = _text(data.get("submitter"))
    if sub is None or sub.lower() != submitter.lower():
        out.add(
            SUBMITTER,
            rel,
            f"submitter is {data.get('submitter')!r} but the folder is '{submitter}'",
            f'set "submitter": "{submitter}" or rename the folder',
        )
    div = _text(data.get("division"))
    if div is None or div.lower() != division.lower():
        out.add(
            DIVISION,
            rel,
            f"division is {data.get('division')!r} but the folder is '{division}'",
            f'set "division": "{division}" or move the system to the right division',
        )


def _is_int(value: object) -> bool:
    """Whether int() takes it, as the summary's product does (true is 1 there)."""
    try:
        int(value)  # type: ignore[arg-type]
        return True
    except (TypeError, ValueError, OverflowError):
        return False
