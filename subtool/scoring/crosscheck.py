"""Checks across entries: who handed in whose results.

- Impersonation: several inputs hold results under one submitter's folder, and the hand-in of some of them
  names that submitter (the folder the organisers filed it in, or the tarball's name) while the others' does
  not: the others are refused (`entry.impersonation`) and the owner is left alone.
- Duplicates: otherwise, two inputs with the same submitter/system are both flagged (`entry.duplicate`): one
  team handed in twice, or two teams chose the same name, and nothing says which.
- Copies: LoadGen stamps every run with its own times and seeds, so two inputs holding the same performance log
  byte for byte hold one run twice, whatever names they put on it: both are flagged (`entry.copied_logs`).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from subtool.scoring.entry import EntryRecord
from subtool.scoring.inputs import TARBALL_SUFFIXES
from subtool.scoring.integrity import Flag

_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def _norm(text: str) -> str:
    return _NOT_ALNUM.sub("", text.lower())


def handin_names(entry: EntryRecord) -> set[str]:
    """What the hand-in's own place says about whose it is: the folders above it and its name, normalised."""
    parts = list(PurePosixPath(entry.input).parts)
    if parts:
        for suffix in TARBALL_SUFFIXES:
            if parts[-1].endswith(suffix):
                parts[-1] = parts[-1][: -len(suffix)]
    tokens = [t for p in parts for t in (p, *re.split(r"[_.\-\s]+", p))]
    return {_norm(t) for t in tokens if _norm(t)}


def _claims(entry: EntryRecord, submitter: str) -> bool:
    return _norm(submitter) in handin_names(entry)


def refuse_impersonators(entries: list[EntryRecord]) -> None:
    holders: dict[str, list[EntryRecord]] = {}
    for entry in entries:
        if entry.error:
            continue
        for submitter in sorted({r.submitter for r in entry.results}):
            holders.setdefault(submitter, []).append(entry)
    for submitter, group in sorted(holders.items()):
        owners = [e for e in group if _claims(e, submitter)]
        if not owners or len(owners) == len(group):
            continue
        for entry in group:
            if entry in owners or entry.error:
                continue
            division = next((r.division for r in entry.results if r.submitter == submitter), "open")
            entry.error = {
                "rule": "entry.impersonation",
                "message": f"holds results under {division}/{submitter}/, which "
                f"{', '.join(e.input for e in owners)} handed in; this hand-in's place "
                f"({entry.input}) does not name {submitter}",
            }
            entry.results, entry.systems = [], []


def mark_duplicates(entries: list[EntryRecord]) -> None:
    """Two inputs with the same submitter/system: flag both (one team handed in twice, or a name clash)."""
    owners: dict[tuple, list[EntryRecord]] = {}
    for entry in entries:
        for key in sorted({(r.submitter, r.system) for r in entry.results}):
            owners.setdefault(key, []).append(entry)
    for (submitter, system), group in owners.items():
        if len(group) > 1:
            for entry in group:
                others = ", ".join(e.input for e in group if e is not entry)
                entry.flags.append(Flag("entry.duplicate", f"{submitter}/{system} is also in {others}"))


def mark_copies(entries: list[EntryRecord]) -> None:
    """One flag per entry that shares a performance log with other inputs, naming them (a few, then a count)."""
    holders: dict[str, list[EntryRecord]] = {}
    for entry in entries:
        if not entry.error:
            for digest in entry.log_hashes:
                holders.setdefault(digest, []).append(entry)
    for entry in entries:
        if entry.error:
            continue
        shared = [
            (path, [o for o in holders[d] if o is not entry])
            for d, path in sorted(entry.log_hashes.items(), key=lambda kv: kv[1])
        ]
        shared = [(path, others) for path, others in shared if others]
        if not shared:
            continue
        others = sorted({o.input for _, group in shared for o in group})
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        logs = f" (and {len(shared) - 1} more log(s))" if len(shared) > 1 else ""
        entry.flags.append(
            Flag(
                "entry.copied_logs",
                f"{shared[0][0]}{logs} is byte for byte in "
                f"{', '.join(others[:3])}{more} too: one LoadGen run handed "
                "in twice",
            )
        )


def cross_check(entries: list[EntryRecord]) -> None:
    refuse_impersonators(entries)
    mark_duplicates(entries)
    mark_copies(entries)
