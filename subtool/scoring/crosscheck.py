"""Checks across entries: who handed in whose results.

- Impersonation: several inputs hold results under one submitter's folder (compared case- and punctuation-blind,
  so `alpha/` is Alpha's), and the place the organisers filed some of them in names that submitter (the folders
  above a tarball, or a tree's own folder) while the others' does not: the others are refused
  (`entry.impersonation`) and the owner is left alone. A tarball's own name is not evidence: the team chose it,
  and a copy named after its victim would otherwise get the victim refused.
- Duplicates: otherwise, two inputs with results of the same submitter (compared case- and punctuation-blind),
  whatever systems they name, are both flagged (`entry.duplicate`): one team handed in twice (under a second
  system name it would take a second place), or two teams chose the same name, and nothing says which. The
  default rules disqualify on it, so that one team never takes two places.
- Several places from one hand-in: a hand-in is one team's, so one that holds results under several submitters
  is flagged (`entry.several_teams`: a second team nobody filed would otherwise be ranked), and so is one whose
  team has several systems in one hardware category (`entry.several_systems`: each would take a place there).
  The default rules disqualify on both.
- Copies: LoadGen stamps every run with its own times and latencies, so two inputs holding the same performance
  log, byte for byte or by those stamps (a line added or repeated changes the bytes, not the stamps the checker
  reads), hold one run twice, whatever names they put on it: both are flagged (`entry.copied_logs`).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from subtool.scoring.entry import EntryRecord
from subtool.scoring.integrity import Flag
from subtool.scoring.rules import UNKNOWN_CATEGORY

_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def _norm(text: str) -> str:
    return _NOT_ALNUM.sub("", text.lower())


def handin_names(entry: EntryRecord) -> set[str]:
    """What the organisers' filing says about whose a hand-in is: the folders above a tarball (not its name,
    which the team chose), or a tree's folders including its own, each whole and normalised. A folder is never
    split into words: `Alpha_Centauri/` would then name Alpha too, and its team could pass for Alpha."""
    parts = list(PurePosixPath(entry.input).parts)
    if parts and entry.kind == "tarball":
        parts = parts[:-1]
    return {_norm(p) for p in parts if _norm(p)}


def _claims(entry: EntryRecord, submitter: str) -> bool:
    return _norm(submitter) in handin_names(entry)


def refuse_impersonators(entries: list[EntryRecord]) -> None:
    holders: dict[str, list[EntryRecord]] = {}
    spelled: dict[str, str] = {}  # normalised submitter → its first spelling
    for entry in entries:
        if entry.error:
            continue
        for submitter in sorted({_norm(r.submitter) for r in entry.results}):
            holders.setdefault(submitter, []).append(entry)
        for r in entry.results:
            spelled.setdefault(_norm(r.submitter), r.submitter)
    for key, group in sorted(holders.items()):
        submitter = spelled[key]
        owners = [e for e in group if _claims(e, submitter)]
        if not owners or len(owners) == len(group):
            continue
        for entry in group:
            if entry in owners or entry.error:
                continue
            own = next(r for r in entry.results if _norm(r.submitter) == key)
            entry.error = {
                "rule": "entry.impersonation",
                "message": f"holds results under {own.division}/{own.submitter}/, which is "
                f"{submitter}'s and which "
                f"{', '.join(e.input for e in owners)} handed in; this hand-in's place "
                f"({entry.input}) does not name {submitter}",
            }
            entry.results, entry.systems = [], []


def mark_duplicates(entries: list[EntryRecord]) -> None:
    """Two inputs with results of one submitter, whatever their systems: flag both (one team handed in twice,
    or a name clash). Each flag names the entry's own submitter/system and the other inputs."""
    owners: dict[str, list[tuple[EntryRecord, str]]] = {}
    for entry in entries:
        held: dict[str, str] = {}
        for submitter, system in sorted({(r.submitter, r.system) for r in entry.results}):
            held.setdefault(_norm(submitter), f"{submitter}/{system}")
        for key, name in held.items():
            owners.setdefault(key, []).append((entry, name))
    for group in owners.values():
        if len(group) > 1:
            for entry, name in group:
                others = ", ".join(e.input for e, _ in group if e is not entry)
                entry.flags.append(Flag("entry.duplicate", f"{name} is also in {others}"))


def mark_several_places(entries: list[EntryRecord]) -> None:
    """Flag a hand-in that would take several places: results under several submitters, or one submitter's
    several systems in one hardware category (names compared case- and punctuation-blind)."""
    for entry in entries:
        if entry.error:
            continue
        held = sorted({(r.submitter, r.system) for r in entry.results})
        teams: dict[str, str] = {}  # normalised submitter → its first spelling
        for submitter, _ in held:
            teams.setdefault(_norm(submitter), submitter)
        if len(teams) > 1:
            names = ", ".join(sorted(teams.values()))
            message = f"holds results under {len(teams)} submitters ({names}): one hand-in is one team's"
            entry.flags.append(Flag("entry.several_teams", message))
        entry.flags += _several_systems(entry, held, teams)


def _several_systems(entry: EntryRecord, held: list[tuple[str, str]], teams: dict[str, str]) -> list[Flag]:
    category = {(_norm(s.submitter), _norm(s.system)): s.category for s in entry.systems}
    places: dict[tuple[str, str], set[str]] = {}
    for submitter, system in held:
        where = category.get((_norm(submitter), _norm(system)), UNKNOWN_CATEGORY)
        places.setdefault((teams[_norm(submitter)], where), set()).add(system)
    return [
        Flag(
            "entry.several_systems",
            f"{team} has {len(systems)} systems in {where} ({', '.join(sorted(systems))}): "
            "each would take a place there; hand in one",
        )
        for (team, where), systems in sorted(places.items())
        if len({_norm(s) for s in systems}) > 1
    ]


def mark_copies(entries: list[EntryRecord]) -> None:
    """One flag per entry that shares a performance log with other inputs, byte for byte or by LoadGen's own
    stamps of the run (run_stamp: a copy with a line added still has them), naming them (a few, then a count)."""
    holders: dict[tuple[str, str], list[EntryRecord]] = {}
    for entry in entries:
        if not entry.error:
            for key in _copy_keys(entry):
                holders.setdefault(key, []).append(entry)
    for entry in entries:
        if entry.error:
            continue
        shared: dict[str, tuple[str, list[EntryRecord]]] = {}  # path → (how, the others holding it)
        for key, path in sorted(_copy_keys(entry).items(), key=lambda kv: (kv[1], kv[0])):
            others = [o for o in holders[key] if o is not entry]
            if others and path not in shared:  # "bytes" sorts first: a byte copy is said as one
                shared[path] = (key[0], others)
        if shared:
            entry.flags.append(_copy_flag(shared))


def _copy_keys(entry: EntryRecord) -> dict[tuple[str, str], str]:
    return {
        **{("bytes", digest): path for digest, path in entry.log_hashes.items()},
        **{("stamps", stamp): path for stamp, path in entry.run_stamps.items()},
    }


def _copy_flag(shared: dict[str, tuple[str, list[EntryRecord]]]) -> Flag:
    path, (how, _) = next(iter(shared.items()))
    others = sorted({o.input for _, group in shared.values() for o in group})
    more = f" and {len(others) - 3} more" if len(others) > 3 else ""
    logs = f" (and {len(shared) - 1} more log(s))" if len(shared) > 1 else ""
    where = (
        "is byte for byte in"
        if how == "bytes"
        else "holds the same LoadGen run (its start and end times and its latencies to the nanosecond) as"
    )
    return Flag(
        "entry.copied_logs",
        f"{path}{logs} {where} {', '.join(others[:3])}{more} too: one LoadGen run handed in twice",
    )


def cross_check(entries: list[EntryRecord]) -> None:
    refuse_impersonators(entries)
    mark_duplicates(entries)
    mark_several_places(entries)
    mark_copies(entries)
