"""How a system description joins the one already in the tree: the fields a joining result may widen
(`system_type`, `number_of_nodes`), and the rule that an existing description is never silently overwritten;
and how a multi-node run's nodes, each described by itself in run.json (`sut.nodes`), make one description."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from subtool.errors import SubtoolError
from subtool.mlperf.json_strict import parse_json
from subtool.mlperf.logs import read_bounded
from subtool.package.importers import ImportedResult
from subtool.package.staging import write_text
from subtool.package.system import NOT_DETECTED, SystemDescription

_SUITES = ("datacenter", "edge")
# Fields a joining result may widen in a system description already in the tree (never narrow).
MERGED_SYSTEM_FIELDS = ("system_type", "number_of_nodes")
# What each node of a multi-node run describes of itself (subtool.hostinfo.fields.describe_node).
PER_NODE_FIELDS = (
    "host_processor_model_name",
    "host_processors_per_node",
    "host_processor_core_count",
    "host_processor_frequency",
    "host_processor_caches",
    "host_processor_interconnect",
    "host_memory_capacity",
    "host_memory_configuration",
    "host_storage_capacity",
    "host_storage_type",
    "host_networking",
    "host_network_card_count",
    "operating_system",
    "accelerators_per_node",
    "accelerator_model_name",
    "accelerator_memory_capacity",
    "accelerator_memory_configuration",
    "accelerator_frequency",
    "accelerator_host_interconnect",
    "accelerator_interconnect",
    "accelerator_interconnect_topology",
    "accelerator_on-chip_memories",
)
MAX_NODE_VALUE = 300  # characters of a recorded node's value, host name or source


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


def _answering_addresses(sut: dict) -> set[str]:
    workers = sut.get("per_worker")
    return {
        str(w.get("node_ip") or "")
        for w in (workers if isinstance(workers, list) else [])
        if isinstance(w, dict) and w.get("node") and not _answered_none(w.get("samples"))
    }


def _node_value(value: object) -> bool:
    """What a node's field may hold: text or a whole number, short (run.json is the user's file)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and len(value) <= MAX_NODE_VALUE)


def recorded_nodes(imps: list[ImportedResult]) -> list[dict]:
    """The nodes the runs described (run.json `sut.nodes`), one per address, of those that answered samples;
    each as {"where": address or host name, "fields": {per-node field: value}, "sources": {…}}."""
    found: dict[str, dict] = {}
    for imp in imps:
        sut = (imp.run or {}).get("sut")
        nodes = sut.get("nodes") if isinstance(sut, dict) else None
        if not isinstance(nodes, list):
            continue
        answered = _answering_addresses(sut)
        for node in nodes:
            fields = node.get("fields") if isinstance(node, dict) else None
            if not isinstance(fields, dict) or (answered and str(node.get("node_ip") or "") not in answered):
                continue
            where = str(node.get("node_ip") or node.get("host") or f"node {len(found) + 1}")[:MAX_NODE_VALUE]
            sources = node.get("sources") if isinstance(node.get("sources"), dict) else {}
            kept = {k: v for k, v in fields.items() if k in PER_NODE_FIELDS and _node_value(v)}
            found.setdefault(where, {"where": where, "fields": kept, "sources": sources})
    return [found[k] for k in sorted(found)]


def _merge_field(name: str, nodes: list[dict]) -> tuple[object, str, bool] | None:
    """(value, source, nodes disagree) of one per-node field; None when no node recorded it."""
    values = [(n["where"], n["fields"][name]) for n in nodes if name in n["fields"]]
    if not values:
        return None
    counts: dict = {}
    for _, v in values:
        counts[v] = counts.get(v, 0) + 1
    if len(counts) == 1:
        first = next(n for n in nodes if name in n["fields"])
        origin = str(first["sources"].get(name, "?"))[:MAX_NODE_VALUE]
        return values[0][1], f"run.json: {len(values)} node(s) agree ({origin})", False
    most = max(counts, key=lambda v: counts[v])  # ties: the first node's, nodes being sorted by address
    spread = "; ".join(f"{v!r} on {where}" for where, v in values)
    return most, f"guessed (the nodes differ: {spread})", True


def with_recorded_nodes(desc: SystemDescription, imps: list[ImportedResult]) -> SystemDescription:
    """The description with the per-node fields of the nodes the run described (a Ray run records each node's
    own hardware: the packaging machine may be none of them); a field the nodes disagree on takes the most
    common value and is listed among the guessed fields, for the user to settle."""
    nodes = recorded_nodes(imps)
    if not nodes:
        return desc
    fields, sources, guessed = dict(desc.fields), dict(desc.sources), list(desc.guessed)
    for name in PER_NODE_FIELDS:
        merged = _merge_field(name, nodes)
        if merged is None:
            continue
        fields[name], sources[name], differ = merged
        if (differ or fields[name] == NOT_DETECTED) and name not in guessed:
            guessed.append(name)
        elif not differ and fields[name] != NOT_DETECTED and name in guessed:
            guessed.remove(name)
    return SystemDescription(fields=fields, guessed=guessed, sources=sources)


def _answered_none(samples: object) -> bool:
    return isinstance(samples, (int, float)) and not isinstance(samples, bool) and samples <= 0


def _as_count(value: object) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        return 0


SYSTEM_JSON_LIMIT = 16 << 20  # a description is a few kB; what a tree holds past this is read no further


def _read_json(path: Path) -> Any:
    """The JSON value of a system file in the tree; None when it is no regular file of at most 16 MiB holding
    JSON (a FIFO would block the read for ever, a link to /dev/zero never end, `[[[…` 100,000 deep raise
    RecursionError): such a file is left as it is, for the checker to name."""
    try:
        data = read_bounded(path, SYSTEM_JSON_LIMIT)
    except OSError:
        return None
    value, problem = parse_json(data)
    return value if problem is None else None


def existing_system(path: Path) -> dict:
    data = _read_json(path)
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
    current = _read_json(target)
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
