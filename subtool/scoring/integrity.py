"""Do the files a team handed in beside its tarball tell the truth about it?

- `<name>_summary.json` (MLC's transposed summary.csv, plus subtool's block when subtool packed it): each row
  must name a result that is in the tarball, with the result and accuracy the logs give; every result the
  checker accepts must have its row; subtool's recorded tarball hash must be the tarball's.
- `<name>.tstamps` (`date -u` before and after each run): LoadGen's own run times (power_begin/power_end in the
  detail logs, UTC) must fall inside one of the pairs.
- the system descriptions: a count of 0 accelerators with an accelerator named, or a positive count with none
  named (empty, N/A, none), says nothing about which hardware category the system belongs in.
- `<name>.sha256` (subtool's manifest, when present): the tarball, every member and the companions must have
  the hashes recorded at pack time.
A mismatch is a Flag; the rules decide which flags disqualify.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from subtool.mlperf.json_strict import parse_json

FLAG_IDS = {
    "handin.missing_file": "a file the competition asks for is not beside the tarball",
    "handin.linked_file": "a file beside the tarball is a symbolic link (not followed, not read)",
    "summary.unreadable": "the summary JSON is not the checker's summary (not JSON, or no result rows)",
    "summary.unknown_result": "a summary row names a result the tarball does not hold",
    "summary.missing_result": "a result the checker accepts has no row in the summary",
    "summary.result_mismatch": "a summary row's result differs from the tarball's logs",
    "summary.accuracy_mismatch": "a summary row's accuracy differs from the tarball's accuracy.txt",
    "summary.tarball_hash": "the tarball's sha256 differs from the one recorded in the summary",
    "tstamps.unreadable": "the .tstamps file is not pairs of `date -u` lines",
    "tstamps.implausible": "a .tstamps time lies over a day after the scoring, or one pair spans more than a week",
    "tstamps.outside": "a LoadGen run in the tarball ran outside every .tstamps pair",
    "manifest.unreadable": "the .sha256 manifest cannot be read",
    "manifest.tarball_mismatch": "the tarball's sha256 differs from the manifest",
    "manifest.member_mismatch": "a file inside the tarball differs from the manifest (or is missing or extra)",
    "manifest.artifact_mismatch": "a companion file differs from the manifest",
    "entry.duplicate": "two inputs hold the same submitter and system",
    "entry.several_teams": "one input holds results under several submitters",
    "entry.several_systems": "one input holds one team's several systems in one hardware category",
    "entry.copied_logs": "two inputs hold the same LoadGen performance log (byte for byte, or the same run's stamps)",
    "system.accelerators_contradict": "a system description's accelerator count and name contradict each other",
}
_REL_TOL = 1e-4
_NUMBER_PAIR = re.compile(r"([A-Za-z][A-Za-z0-9_]*)\s*[:=]\s*(-?[0-9][0-9.eE+-]*)")
_MAX_COMPANION_BYTES = 16 << 20


@dataclass(frozen=True)
class Flag:
    rule: str
    message: str

    def to_dict(self) -> dict:
        return {"rule": self.rule, "message": self.message}


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_small(path: str, what: str) -> tuple[str | None, Flag | None]:
    try:
        if os.path.getsize(path) > _MAX_COMPANION_BYTES:
            return None, Flag(what, f"{Path(path).name} is larger than {_MAX_COMPANION_BYTES >> 20} MiB")
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(), None
    except OSError as exc:
        return None, Flag(what, f"{Path(path).name} cannot be read ({exc.strerror or exc})")


# ------------------------------------------------------------------------------------------- summary JSON
def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_REL_TOL, abs_tol=1e-9)


def _as_float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _accuracy_numbers(text: str) -> dict[str, float]:
    out = {}
    for name, number in _NUMBER_PAIR.findall(text or ""):
        try:
            out[name.lower()] = float(number)
        except ValueError:
            continue
    return out


def _accuracy_differs(claimed: str, actual: str) -> bool:
    a, b = _accuracy_numbers(claimed), _accuracy_numbers(actual)
    common = set(a) & set(b)
    if common:
        return any(not _close(a[k], b[k]) for k in common)
    return " ".join(str(claimed).split()).lower() != " ".join(str(actual).split()).lower()


def check_summary(path: str, results: list, tarball_sha256: str | None, tarball_name: str | None) -> list[Flag]:
    """`results` are ResultRecords (division, submitter, system, model, scenario, value, accuracy, ranked)."""
    name = Path(path).name
    data = _load_summary(path, name)
    if isinstance(data, Flag):
        return [data]
    rows = [v for k, v in data.items() if str(k).isdigit() and isinstance(v, dict)]
    flags: list[Flag] = []
    by_key = {(r.division, r.submitter, r.system, r.model, r.scenario): r for r in results}
    by_key_loose = {(r.submitter, r.system, r.model, r.scenario): r for r in results}
    claimed: set[tuple] = set()
    for row in rows:
        key = tuple(str(row.get(c, "")) for c in ("Division", "Organization", "Platform", "Model", "Scenario"))
        result = by_key.get(key) or by_key_loose.get(key[1:])
        label = "/".join(key[1:])
        if result is None:
            flags.append(Flag("summary.unknown_result", f"{name} lists {label}, which the tarball does not hold"))
            continue
        claimed.add((result.submitter, result.system, result.model, result.scenario))
        flags += _row_flags(name, label, row, result)
    for r in results:
        if r.passed and (r.submitter, r.system, r.model, r.scenario) not in claimed:
            flags.append(
                Flag(
                    "summary.missing_result",
                    f"{name} has no row for {r.submitter}/{r.system}/{r.model}/{r.scenario}, which the checker accepts",
                )
            )
    if not rows and not results:
        flags.append(Flag("summary.unreadable", f"{name} has no result rows"))
    flags += _tarball_hash_flags(name, data.get("subtool"), tarball_sha256, tarball_name)
    return flags


def _load_summary(path: str, name: str) -> dict | Flag:
    """The summary's JSON object, or the flag that says why there is none."""
    text, problem = _read_small(path, "summary.unreadable")
    if problem:
        return problem
    # strict: a key given twice (the last value winning in json.loads) could hide a lie behind the row read
    data, problem = parse_json(text, unique_keys=True)
    if problem is not None:
        return Flag("summary.unreadable", f"{name} {problem}")
    if not isinstance(data, dict):
        return Flag("summary.unreadable", f"{name} is not a JSON object")
    return data


def _row_flags(name: str, label: str, row: dict, result) -> list[Flag]:
    """A summary row against the result the tarball holds: the value and the accuracy it claims."""
    flags: list[Flag] = []
    said, real = _as_float(row.get("Result")), result.value
    if said is not None and real is not None and not _close(said, real):
        flags.append(
            Flag("summary.result_mismatch", f"{name} says {label} = {said:g}, the tarball's log says {real:g}")
        )
    elif said is None or real is None:
        if not (said is None and real is None):
            flags.append(
                Flag(
                    "summary.result_mismatch",
                    f"{name} says {label} = {row.get('Result')!r}, the tarball's log says {real!r}",
                )
            )
    acc = row.get("Accuracy")
    if acc is not None and result.accuracy and _accuracy_differs(str(acc), result.accuracy):
        flags.append(
            Flag(
                "summary.accuracy_mismatch",
                f"{name} says {label} accuracy {acc}, the tarball's accuracy.txt gives {result.accuracy}",
            )
        )
    return flags


def _tarball_hash_flags(name: str, block, tarball_sha256: str | None, tarball_name: str | None) -> list[Flag]:
    if not (isinstance(block, dict) and tarball_sha256 and tarball_name):
        return []
    recorded = (block.get("artifacts") or {}).get(tarball_name) if isinstance(block.get("artifacts"), dict) else None
    if isinstance(recorded, str) and recorded != tarball_sha256:
        return [
            Flag(
                "summary.tarball_hash",
                f"{name} records sha256 {recorded[:12]}… for {tarball_name}, the tarball is {tarball_sha256[:12]}…",
            )
        ]
    return []


# ------------------------------------------------------------------------------------------ accelerators
# "N/A", "none", "CPU", each maybe with a remark in brackets: "N/A (CPU only)" is what `subtool system` writes
_NO_ACCELERATOR = re.compile(r"^\s*(n/?a|none|null|-|cpu( only)?)?\s*(\([^()]*\))?\s*$", re.IGNORECASE)


def named_accelerator(fields: dict) -> str:
    """The accelerator_model_name when it names an accelerator; "" when it is empty, N/A, none or CPU (with a
    remark in brackets or without)."""
    name = str(fields.get("accelerator_model_name", ""))
    return "" if _NO_ACCELERATOR.match(name) else name.strip()


def check_accelerators(systems: list) -> list[Flag]:
    """`systems` are SystemRecords: one flag per system whose accelerators_per_node (a whole number) and
    accelerator_model_name contradict each other (0 of a named one, or some of an unnamed one)."""
    flags = []
    for s in systems:
        count = str(s.fields.get("accelerators_per_node", "")).strip()
        if not count.isdigit():
            continue
        name, said = named_accelerator(s.fields), s.fields.get("accelerator_model_name", "")
        if (int(count) == 0) == (not name):
            continue
        flags.append(
            Flag(
                "system.accelerators_contradict",
                f"{s.submitter}/{s.system} says accelerators_per_node {count} and accelerator_model_name "
                f"{said!r}: a named accelerator needs a count, a count needs a name (its hardware category is unknown)",
            )
        )
    return flags


# ------------------------------------------------------------------------------------------------ tstamps
_TSTAMP_FORMATS = (
    "%a %b %d %H:%M:%S UTC %Y",
    "%a %b %d %H:%M:%S GMT %Y",
    "%a %d %b %Y %H:%M:%S UTC",
    "%a %d %b %Y %I:%M:%S %p UTC",
)


_FIRST_YEAR, _LAST_YEAR = 1970, 9998


def parse_tstamp(line: str) -> datetime | None:
    """A `date -u` (or ISO 8601) line as a UTC moment; None for anything else, and for years no run was in
    (outside 1970-9998, where adding the slack could overflow datetime)."""
    moment = _parse_moment(" ".join(line.split()))
    return moment if moment is not None and _FIRST_YEAR <= moment.year <= _LAST_YEAR else None


def _parse_moment(text: str) -> datetime | None:
    for fmt in _TSTAMP_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):  # not a time, or one whose UTC moment is outside datetime's years
        return None


def check_tstamps(path: str, windows: list[tuple[str, datetime, datetime]], slack_s: float) -> list[Flag]:
    """`windows`: (result label, first LoadGen begin, last LoadGen end) for each result in the tarball."""
    text, problem = _read_small(path, "tstamps.unreadable")
    if problem:
        return [problem]
    name = Path(path).name
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    moments = []
    for number, line in enumerate(lines, start=1):
        moment = parse_tstamp(line)
        if moment is None:
            return [Flag("tstamps.unreadable", f"{name} line {number} is not a `date -u` time: {line[:60]!r}")]
        moments.append(moment)
    if not moments:
        return [Flag("tstamps.unreadable", f"{name} is empty")]
    if len(moments) % 2:
        return [Flag("tstamps.unreadable", f"{name} has {len(moments)} lines: not before/after pairs")]
    pairs = [(moments[i], moments[i + 1]) for i in range(0, len(moments), 2)]
    for i, (begin, end) in enumerate(pairs, start=1):
        if end < begin:
            return [Flag("tstamps.unreadable", f"{name} pair {i} ends before it begins")]
    slack = timedelta(seconds=slack_s)
    flags = _implausible(name, pairs)
    for label, begin, end in windows:
        if not any(b - slack <= begin and end <= e + slack for b, e in pairs):
            span = ", ".join(f"{b:%Y-%m-%d %H:%M:%S}–{e:%H:%M:%S}" for b, e in pairs[:3])
            flags.append(
                Flag(
                    "tstamps.outside",
                    f"{label} ran {begin:%Y-%m-%d %H:%M:%S}–{end:%H:%M:%S} UTC (LoadGen), outside {name}'s {span} UTC",
                )
            )
    return flags


MAX_PAIR = timedelta(days=7)  # one run command's before/after: the slowest full LLM run takes hours, not weeks
CLOCK_SKEW = timedelta(days=1)  # how far a team's clock may run ahead of the scoring machine's


def _implausible(name: str, pairs: list[tuple[datetime, datetime]]) -> list[Flag]:
    """A pair wide enough to hold any run (1970 to 9998) says nothing, and a time still to come is no record."""
    now = datetime.now(timezone.utc)
    for i, (begin, end) in enumerate(pairs, start=1):
        if end > now + CLOCK_SKEW:
            return [Flag("tstamps.implausible", f"{name} pair {i} ends {end:%Y-%m-%d %H:%M:%S} UTC, after the scoring")]
        if end - begin > MAX_PAIR:
            days = (end - begin).total_seconds() / 86400
            return [Flag("tstamps.implausible", f"{name} pair {i} spans {days:,.1f} days: one run takes hours")]
    return []


# ----------------------------------------------------------------------------------------------- manifest
def check_manifest(path: str, tarball: Path, tarball_sha256: str, members: dict[str, str]) -> list[Flag]:
    from subtool.errors import SubtoolError
    from subtool.pack.manifest import parse_manifest

    text, problem = _read_small(path, "manifest.unreadable")
    if problem:
        return [problem]
    try:
        manifest = parse_manifest(text, Path(path))
    except SubtoolError as err:
        return [Flag("manifest.unreadable", f"{Path(path).name}: {err.message}")]
    flags = []
    tar_entry = f"{manifest.name}.tar.gz"
    recorded = manifest.artifacts.get(tar_entry) or manifest.artifacts.get(tarball.name)
    if recorded is None:
        flags.append(Flag("manifest.tarball_mismatch", f"{Path(path).name} records no hash for {tarball.name}"))
    elif recorded != tarball_sha256:
        flags.append(
            Flag(
                "manifest.tarball_mismatch",
                f"{tarball.name} is {tarball_sha256[:12]}…, {Path(path).name} says {recorded[:12]}…",
            )
        )
    for fname, digest in sorted(manifest.artifacts.items()):
        if fname in (tar_entry, tarball.name):
            continue
        beside = tarball.parent / fname
        if beside.is_file() and not beside.is_symlink() and sha256_of(beside) != digest:
            flags.append(Flag("manifest.artifact_mismatch", f"{fname} changed after packing (sha256 differs)"))
    changed = sorted(m for m in set(members) & set(manifest.members) if members[m] != manifest.members[m])
    missing = sorted(set(manifest.members) - set(members))
    extra = sorted(set(members) - set(manifest.members))
    for what, items in (
        ("differs from the manifest", changed),
        ("is in the manifest but not in the tarball", missing),
        ("is in the tarball but not in the manifest", extra),
    ):
        if items:
            more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
            flags.append(Flag("manifest.member_mismatch", f"{items[0]} {what}{more}"))
    return flags
