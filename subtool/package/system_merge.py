"""How a system description joins the one already in the tree: the fields a joining result may widen
(`system_type`, `number_of_nodes`), and the rule that an existing description is never silently overwritten."""

from __future__ import annotations

import json
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.package.importers import ImportedResult
from subtool.package.staging import write_text
from subtool.package.system import SystemDescription

_SUITES = ("datacenter", "edge")
# Fields a joining result may widen in a system description already in the tree (never narrow).
MERGED_SYSTEM_FIELDS = ("system_type", "number_of_nodes")


def _system_type(benches) -> str:
    suites = [set(b.suites) for b in benches]
    if all(s == {"edge"} for s in suites):
        return "edge"
    if all(s == {"datacenter"} for s in suites):
        return "datacenter"
    if all("edge" in s for s in suites):
        return "edge"
    if all("datacenter" in s for s in suites):
        return "datacenter"
    return "datacenter,edge"


def _suites_of(system_type: object) -> set[str]:
    return {p.strip() for p in str(system_type or "").lower().split(",") if p.strip() in _SUITES}


def merged_system_type(current: object, benches) -> str:
    """The type that lists every benchmark: the current one when it already does, else widened to
    `datacenter,edge` (the official checker's form for a system in both suites)."""
    suites = _suites_of(current)
    if not suites:
        return _system_type(benches)
    for bench in benches:
        if not suites & set(bench.suites):
            suites.add(bench.suites[0])
    return "datacenter,edge" if suites == set(_SUITES) else suites.pop()


def run_nodes(imp: ImportedResult) -> int:
    """Nodes that answered the run, from run.json's SUT record (Ray: the node of each worker, told apart by its
    host name and its address, since two hosts may share a name); a worker that answered no sample (lost before
    its first answer) adds no node. 1 when the record says none."""
    sut = (imp.run or {}).get("sut")
    workers = sut.get("per_worker") if isinstance(sut, dict) else None
    nodes = {
        (str(w["node"]), str(w.get("node_ip") or ""))
        for w in (workers if isinstance(workers, list) else [])
        if isinstance(w, dict) and w.get("node") and not _answered_none(w.get("samples"))
    }
    return max(1, len(nodes))


def _answered_none(samples: object) -> bool:
    return isinstance(samples, (int, float)) and not isinstance(samples, bool) and samples <= 0


def _as_count(value: object) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        return 0


def existing_system(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def merged_fields(current: dict, imps: list[ImportedResult]) -> dict:
    """system_type and number_of_nodes that hold the results already described and the joining ones."""
    nodes = max([_as_count(current.get("number_of_nodes")), *(run_nodes(i) for i in imps)])
    return {
        "system_type": merged_system_type(current.get("system_type"), [i.bench for i in imps]),
        "number_of_nodes": nodes,
    }


def _only_merged_fields_differ(current: dict, fields: dict, *, replace: bool) -> bool:
    """The description in the tree is the one these results would get, but for the fields they widen."""
    rest = [k for k in set(current) | set(fields) if k not in MERGED_SYSTEM_FIELDS]
    return (
        any(current.get(k) != fields.get(k) for k in MERGED_SYSTEM_FIELDS)
        and all(current.get(k) == fields.get(k) for k in rest)
        and not replace
    )


def _widened_note(rel: Path, current: dict, fields: dict) -> str:
    changes = [f"{k} {current.get(k)!r} → {fields[k]!r}" for k in MERGED_SYSTEM_FIELDS if current.get(k) != fields[k]]
    return f"updated {rel} for the results joining it: {', '.join(changes)}"


def _write_json(target: Path, data: dict) -> None:
    write_text(target, json.dumps(data, indent=2) + "\n")


def stage_system(
    root: Path, rel: Path, desc: SystemDescription, *, out: Path, system_file: Path | None, force: bool
) -> list[str]:
    """Write the description at `root/rel` (staging) unless one is there; return the notes for the user."""
    target = root / rel
    if not target.exists():
        write_text(target, desc.to_json())
        guessed = ", ".join(desc.guessed)
        return [f"{rel}: check {guessed} (not detected; set them with --system-file)"] if desc.guessed else []
    try:
        current = json.loads(target.read_text(encoding="utf-8"))
    except ValueError:
        current = None
    replace = system_file is not None and force
    if isinstance(current, dict) and _only_merged_fields_differ(current, desc.fields, replace=replace):
        _write_json(target, {**current, **{k: desc.fields[k] for k in MERGED_SYSTEM_FIELDS}})
        return [_widened_note(rel, current, desc.fields)]
    if current == desc.fields:
        return []
    if replace:
        write_text(target, desc.to_json())
        return [f"replaced {rel} (--force with --system-file)"]
    if system_file is not None:
        raise SubtoolError(
            f"{rel} is already in the tree and differs from --system-file; nothing was changed",
            path=out / rel,
            rule="package.system_exists",
            hint="pass --force to replace it, or edit the file in the tree",
        )
    notes = [f"kept the existing {rel} (detected values not applied)"]
    if not isinstance(current, dict):
        return notes  # not JSON, or not an object: not ours to repair, the checker says what is wrong with it
    widened = {k: desc.fields[k] for k in MERGED_SYSTEM_FIELDS if current.get(k) != desc.fields[k]}
    if widened:
        _write_json(target, {**current, **widened})
        notes.append(_widened_note(rel, current, desc.fields))
    return notes
