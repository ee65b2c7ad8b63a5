"""Score one input (runs in a worker process): unpack it safely, check it, read its systems, cross-check the
files handed in beside it. Whatever goes wrong becomes the entry's error; nothing is raised to the caller, so
one bad tarball never stops the others. The scratch folder is removed before returning.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from subtool.scoring.extract import ExtractStats, Refused, check_tree_files, extract_tarball, file_hashes
from subtool.scoring.inputs import COMPANIONS, REQUIRED_COMPANIONS, InputJob, is_tree
from subtool.scoring.integrity import (
    Flag,
    check_accelerators,
    check_manifest,
    check_summary,
    check_tstamps,
    sha256_of,
)
from subtool.scoring.rules import Rules

# With require_accuracy these fail a result's accuracy even where the open division only notes them.
ACCURACY_GATES = ("acc.below_threshold", "acc.above_upper_limit", "acc.metric_missing", "acc.metric_unparseable")
_COMPLIANCE_PATH = re.compile(r"/TEST\d\d(/|$)")
_FIELD_CAP = 200
NON_FINITE = "score.non_finite"
_MAX_REASONS = 4
_STAMP_TIMES = ("test_datetime", "power_begin", "power_end")
_LATENCY_NS = re.compile(r"^result_.*_ns$")


@dataclass
class SystemRecord:
    division: str
    submitter: str
    system: str
    category: str
    fields: dict


@dataclass
class ResultRecord:
    result_id: str
    division: str
    submitter: str
    system: str
    model: str
    mlperf_model: str
    scenario: str
    value: float | None
    units: str
    accuracy: str
    run_style: str
    passed: bool  # checker verdict and (require_accuracy) the accuracy threshold
    accuracy_ok: bool
    performance_ok: bool
    failed: list[str] = field(default_factory=list)
    waived: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class EntryRecord:
    index: int
    input: str
    kind: str
    name: str
    error: dict | None = None  # {"rule", "message"} when the input could not be scored at all
    sha256: str = ""
    compressed_bytes: int = 0
    unpacked_bytes: int = 0
    members: int = 0
    seconds: float = 0.0
    systems: list[SystemRecord] = field(default_factory=list)
    results: list[ResultRecord] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)
    tree_errors: list[str] = field(default_factory=list)
    log_hashes: dict[str, str] = field(default_factory=dict)  # sha256 → path of each performance detail log
    run_stamps: dict[str, str] = field(default_factory=dict)  # LoadGen's per-run stamps (run_stamp) → that path
    retried: bool = False  # its first worker died (with others' inputs): scored again, alone

    @property
    def teams(self) -> list[str]:
        return sorted({s.submitter for s in self.systems} | {r.submitter for r in self.results})

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "input": self.input,
            "kind": self.kind,
            "teams": self.teams,
            "status": "error" if self.error else "scored",
            "error": self.error,
            "sha256": self.sha256,
            "compressed_bytes": self.compressed_bytes,
            "unpacked_bytes": self.unpacked_bytes,
            "members": self.members,
            "seconds": round(self.seconds, 3),
            "systems": [
                {
                    "division": s.division,
                    "submitter": s.submitter,
                    "system": s.system,
                    "category": s.category,
                    "accelerator_model_name": s.fields.get("accelerator_model_name", ""),
                    "accelerators_per_node": s.fields.get("accelerators_per_node", ""),
                    "host_processor_model_name": s.fields.get("host_processor_model_name", ""),
                }
                for s in self.systems
            ],
            "results": [r.to_dict() for r in self.results],
            "flags": [f.to_dict() for f in self.flags],
            "tree_errors": list(self.tree_errors),
            "retried": self.retried,
        }


def _tree_root(folder: Path) -> Path | None:
    if is_tree(folder):
        return folder
    entries = [p for p in folder.iterdir()]
    dirs = [p for p in entries if p.is_dir() and not p.is_symlink()]
    if len(dirs) == 1 and is_tree(dirs[0]):
        return dirs[0]  # a tarball made with `tar czf x.tar.gz submission_dir` (MLC's way)
    return None


def _scalar_fields(data: dict) -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, (str, int, float, bool)) and not isinstance(key, bool):
            out[str(key)[:_FIELD_CAP]] = str(value)[:_FIELD_CAP]
    return out


def _reasons(verdict, findings_by_result: dict, shared: list, gates: list) -> list[str]:
    mine = [f for f in findings_by_result.get(verdict.result, []) if f.severity == "error"]
    failed = set(verdict.failed)
    scope = verdict.result.split("/results/")[0] + "/"
    inherited = [
        f
        for f in shared
        if f.severity == "error" and f.rule in failed and (f.path.startswith(scope) or f.path == scope.rstrip("/"))
    ]
    grouped: dict[tuple[str, str], list[str]] = {}
    for f in [*mine, *inherited, *gates]:
        messages = grouped.setdefault((f.rule, f.path), [])
        if f.message not in messages:
            messages.append(f.message)
    out = [f"{rule}: {'; '.join(messages)} ({path})" for (rule, path), messages in grouped.items()]
    listed = {rule for rule, _ in grouped}
    out += [rule for rule in verdict.failed if rule not in listed]
    return out[:_MAX_REASONS]


def _finite(value: object) -> tuple[float | None, str]:
    """(the value, "") for a usable number; (None, how it read) for NaN or ±Infinity, which no rank may use."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return (None, "") if value is None else (None, repr(value)[:40])
    try:
        number = float(value)
    except OverflowError:  # an int too big for a float
        return None, "too large"
    if not math.isfinite(number):
        return None, str(number)
    return value, ""


def _results(report, rules: Rules) -> tuple[list[ResultRecord], list[str]]:
    by_result: dict[str, list] = {}
    shared = []
    for f in report.findings:
        if f.result is None:
            shared.append(f)
        else:
            by_result.setdefault(f.result, []).append(f)
    records = []
    for v in report.results:
        own = by_result.get(v.result, [])
        gates = [
            f
            for f in own
            if f.rule in ACCURACY_GATES
            and f.severity != "waived"
            and rules.check.require_accuracy
            and f.severity != "error"
        ]
        # The two VirtualClient-style modes describe the result's own runs, not its compliance runs (TEST0x).
        main_runs = [f for f in own if f.severity == "error" and not _COMPLIANCE_PATH.search(f.path)]
        acc_errors = [f for f in main_runs if f.rule.startswith("acc.")]
        perf_errors = [f for f in main_runs if f.rule.startswith("perf.")]
        accuracy_ok = not acc_errors and not gates
        value, not_finite = _finite(v.value)
        passed = bool(v.passed) and accuracy_ok and not not_finite
        reasons = [] if passed else _reasons(v, by_result, shared, gates)
        if not_finite:
            reasons = [f"{NON_FINITE}: the result is {not_finite}, not a finite number", *reasons][:_MAX_REASONS]
        records.append(
            ResultRecord(
                result_id=v.result,
                division=v.division,
                submitter=v.submitter,
                system=v.system,
                model=v.model,
                mlperf_model=v.mlperf_model,
                scenario=v.scenario,
                value=value,
                units=v.units,
                accuracy=v.accuracy,
                run_style=v.run_style,
                passed=passed,
                accuracy_ok=accuracy_ok,
                performance_ok=not perf_errors and not not_finite,
                failed=sorted(set(v.failed) | {f.rule for f in gates} | ({NON_FINITE} if not_finite else set())),
                waived=list(v.waived),
                reasons=reasons,
            )
        )
    tree_errors = [f"{f.rule}: {f.message} ({f.path})" for f in shared if f.severity == "error"]
    return records, tree_errors


def _systems(root: Path, rules: Rules) -> tuple[list[SystemRecord], list[tuple[str, object, object]]]:
    from subtool.pack.inputs import scan_tree

    info = scan_tree(root)
    systems = []
    for s in info.systems:
        fields = _scalar_fields(s.fields)
        fields.update(division=s.division, submitter=s.submitter, system=s.name)
        systems.append(SystemRecord(s.division, s.submitter, s.name, rules.category_of(fields), fields))
    windows = [
        (f"{r.submitter}/{r.system}/{r.model}/{r.scenario}", r.window.begin, r.window.end)
        for r in info.results
        if r.window is not None
    ]
    return systems, windows


def _performance_logs(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """sha256 → path, and run_stamp → path, of every performance detail log: LoadGen stamps each run with its
    own times and latencies, so two hand-ins that share one hold a copy of someone's run."""
    found, stamps = {}, {}
    for current, dirs, files in os.walk(root):
        dirs.sort()
        here = Path(current)
        if "mlperf_log_detail.txt" in files and "performance" in here.relative_to(root).parts:
            path = here / "mlperf_log_detail.txt"
            rel = path.relative_to(root).as_posix()
            found.setdefault(sha256_of(path), rel)
            if stamp := run_stamp(path):
                stamps.setdefault(stamp, rel)
    return found, stamps


def run_stamp(path: Path) -> str | None:
    """What tells one LoadGen run from every other, as LoadGen logged it (the first value of each key, as the
    checker reads them): when it started and ended (test_datetime, power_begin, power_end, to the millisecond)
    and its latencies to the nanosecond. A copy that adds, repeats or reorders lines keeps them; None for a log
    without both kinds of values."""
    from subtool.mlperf.logs import ALL_KEYS, read_loadgen_log

    values = read_loadgen_log(path, ALL_KEYS).decode_all()
    times = [str(values.get(k)) for k in _STAMP_TIMES if values.get(k) is not None]
    latencies = sorted(
        f"{k}={v if isinstance(v, int) or not v.is_integer() else int(v)}"  # 208738990.0 is 208738990
        for k, v in values.items()
        if _LATENCY_NS.match(k) and isinstance(v, (int, float)) and not isinstance(v, bool)
    )
    if not times or not latencies:
        return None
    return hashlib.sha256("\n".join([*times, *latencies]).encode("utf-8", "replace")).hexdigest()


def _check(root: Path, rules: Rules):
    from subtool.checker.api import CheckOptions, check_tree

    opts = CheckOptions(
        version=rules.check.version, waive=frozenset(rules.check.waive), skip_compliance=rules.check.skip_compliance
    )
    return check_tree(root, opts)


def _score(job: InputJob, rules: Rules, scratch: Path, entry: EntryRecord) -> None:
    tarball = Path(job.path) if job.kind == "tarball" else None
    members: dict[str, str] = {}
    if tarball is not None:
        entry.compressed_bytes = tarball.stat().st_size
        unpacked = scratch / "x"
        unpacked.mkdir(mode=0o700)
        stats: ExtractStats = extract_tarball(tarball, unpacked, rules.limits)
        entry.sha256 = sha256_of(tarball)  # after the limits: a huge file is refused before it is read
        entry.members, entry.unpacked_bytes = stats.members, stats.unpacked_bytes
        root = _tree_root(unpacked)
        if root is None:
            raise Refused(
                "extract.no_tree",
                "the archive holds no closed/, open/ or network/ folder at its top: not a submission tree",
            )
        if "manifest" in job.companions:
            members = file_hashes(unpacked)
        for fname in job.linked:
            entry.flags.append(Flag("handin.linked_file", f"{fname} is a symbolic link: handed-in files must be files"))
        for kind in REQUIRED_COMPANIONS:
            if kind not in job.companions and COMPANIONS[kind].format(job.name) not in job.linked:
                entry.flags.append(
                    Flag("handin.missing_file", f"no {COMPANIONS[kind].format(job.name)} beside the tarball")
                )
    else:
        root = Path(job.path)
        stats = check_tree_files(root, rules.limits)
        entry.members, entry.unpacked_bytes = stats.members, stats.unpacked_bytes

    report = _check(root, rules)
    entry.results, entry.tree_errors = _results(report, rules)
    entry.log_hashes, entry.run_stamps = _performance_logs(root)
    entry.systems, windows = _systems(root, rules)
    entry.flags += check_accelerators(entry.systems)

    if "summary_json" in job.companions:
        entry.flags += check_summary(
            job.companions["summary_json"],
            entry.results,
            entry.sha256 or None,
            tarball.name if tarball is not None else None,
        )
    if "tstamps" in job.companions:
        entry.flags += check_tstamps(job.companions["tstamps"], windows, rules.integrity.tstamps_slack_s)
    if tarball is not None and "manifest" in job.companions:
        entry.flags += check_manifest(job.companions["manifest"], tarball, entry.sha256, members)


def remove_scratch(scratch: Path) -> None:
    shutil.rmtree(scratch, ignore_errors=True)
    if scratch.exists():  # read-only folders from the archive: make them writable, then retry
        for current, dirs, _files in os.walk(scratch):
            for d in dirs:
                os.chmod(os.path.join(current, d), 0o700)
        shutil.rmtree(scratch, ignore_errors=True)


def scratch_folders(scratch_root: str, job: InputJob) -> list[Path]:
    """The scratch folders of `job`'s attempts (a killed worker leaves its own behind)."""
    return sorted(Path(scratch_root).glob(f"{job.index:05d}-*"))


def score_input(job: InputJob, rules: Rules, scratch_root: str) -> EntryRecord:
    from subtool.errors import SubtoolError

    start = time.perf_counter()
    entry = EntryRecord(index=job.index, input=job.display, kind=job.kind, name=job.name)
    scratch = None
    try:
        # A fresh folder for every attempt: a retry never meets what a killed worker left behind.
        scratch = Path(tempfile.mkdtemp(prefix=f"{job.index:05d}-", dir=scratch_root))
        _score(job, rules, scratch, entry)
    except Refused as exc:
        entry.error = {"rule": exc.rule, "message": f"refused: {exc.message}"}
    except SubtoolError as err:
        entry.error = {"rule": err.rule or "score.check", "message": err.message}
    except MemoryError:
        entry.error = {"rule": "score.memory", "message": "ran out of memory while scoring this input"}
    except Exception as exc:  # noqa: BLE001 - a stranger's input must never stop the other teams' scoring
        entry.error = {"rule": "score.internal", "message": f"{type(exc).__name__}: {exc}"[:500]}
    finally:
        if scratch is not None:
            remove_scratch(scratch)
    entry.seconds = time.perf_counter() - start
    if entry.error:
        entry.results, entry.systems = [], []
    return entry


__all__ = ["EntryRecord", "ResultRecord", "SystemRecord", "remove_scratch", "score_input", "scratch_folders"]
