"""Which run directories produced the results a pack holds, so that `.run` and `.tstamps` cover every one.

`--runs` takes run directories (each recorded as given) and folders of run directories (`OUT/runs`, as `subtool
all` leaves them): from a folder, a run directory is recorded when one of its LoadGen logs is, byte for byte, a
log of a result in the tree. A result no run directory produced keeps its place through its own LoadGen times.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.mlperf.run_record import parse_date_u
from subtool.pack.inputs import ResultInfo, RunInfo, TreeInfo, read_run_dir

_DETAIL = "mlperf_log_detail.txt"
_RUN_JSON_DEPTHS = ("*/run.json", "*/*/run.json", "*/*/*/run.json")
_MAX_LOG_BYTES = 64 << 20  # a detail log larger than this is not LoadGen's; never hashed


@dataclass
class PackedRuns:
    runs: list[RunInfo]  # oldest first
    produced: dict[Path, list[ResultInfo]] = field(default_factory=dict)  # run path → results it produced
    orphans: list[ResultInfo] = field(default_factory=list)  # results no run directory produced

    def results_of(self, run: RunInfo) -> list[ResultInfo]:
        return self.produced.get(run.path, [])


def _digest(path: Path) -> str | None:
    try:
        if path.stat().st_size > _MAX_LOG_BYTES:
            return None
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _detail_digests(folder: Path) -> set[str]:
    found = set()
    for log in sorted(folder.rglob(_DETAIL)):
        if log.is_file() and not log.is_symlink() and (digest := _digest(log)) is not None:
            found.add(digest)
    return found


def _tree_digests(tree: TreeInfo) -> dict[str, ResultInfo]:
    """The performance log of each result (its own; compliance runs are not what produced it)."""
    out = {}
    for result in tree.results:
        for log in sorted((tree.root / result.rel_dir / "performance").glob(f"run_*/{_DETAIL}")):
            if (digest := _digest(log)) is not None:
                out[digest] = result
    return out


def _candidates(path: Path) -> tuple[list[Path], bool]:
    """(run directories, explicit): a run directory itself, or the run directories below a folder."""
    if (path / "run.json").is_file():
        return [path], True
    if path.is_dir():
        found = sorted(
            {
                p.parent
                for depth in _RUN_JSON_DEPTHS
                for p in path.glob(depth)
                if not any(part.startswith(".") for part in p.relative_to(path).parts)
            }
        )
        if found:
            return found, False
    raise SubtoolError(
        "no run.json here or below: not a subtool run directory",
        path=path,
        rule="pack.run_dir",
        hint="--runs takes the directories `subtool run` wrote (e.g. OUT/runs/bert-99/Offline) "
        "or the folder that holds them (OUT/runs)",
    )


def first_moment(pair: list[str]) -> datetime:
    moment = parse_date_u(pair[0]) if pair else None
    return moment or datetime.max.replace(tzinfo=timezone.utc)  # unreadable: after the readable ones


def collect_runs(paths: list[Path], tree: TreeInfo) -> PackedRuns:
    by_digest = _tree_digests(tree)
    runs: list[RunInfo] = []
    produced: dict[Path, list[ResultInfo]] = {}
    seen: set[Path] = set()
    for given in paths:
        dirs, explicit = _candidates(Path(given))
        for run_dir in dirs:
            key = Path(run_dir).resolve()
            if key in seen:
                continue
            results = [by_digest[d] for d in sorted(_detail_digests(run_dir)) if d in by_digest]
            if not explicit and not results:
                continue  # a run whose results are not in this tree
            seen.add(key)
            run = read_run_dir(run_dir)
            runs.append(run)
            produced[run.path] = sorted({r.rel_dir: r for r in results}.values(), key=lambda r: r.rel_dir)
    runs.sort(key=lambda r: first_moment(r.tstamps))
    claimed = {r.rel_dir for results in produced.values() for r in results}
    return PackedRuns(runs=runs, produced=produced, orphans=[r for r in tree.results if r.rel_dir not in claimed])


def covered(result: ResultInfo, pairs: list[list[str]], slack_s: float = 0.0) -> bool:
    """A pair of `date -u` lines (whole seconds) holds the result's LoadGen run times, as the scorer reads them;
    `slack_s` forgives the fraction of a second `date -u` cuts off the run's own closing stamp."""
    if result.window is None:
        return True
    for pair in pairs:
        if len(pair) != 2:
            continue
        begin, end = parse_date_u(pair[0]), parse_date_u(pair[1])
        if begin and end and begin <= result.window.begin and result.window.end <= end + timedelta(seconds=slack_s):
            return True
    return False


def uncovered(packed: PackedRuns, results: list[ResultInfo], pairs: list[list[str]]) -> list[ResultInfo]:
    """Results no pair holds: a run's own results within its pair (to the second), any other within any pair."""
    own = {r.rel_dir: run.tstamps for run in packed.runs for r in packed.results_of(run)}
    return [
        r
        for r in results
        if not ((r.rel_dir in own and covered(r, [own[r.rel_dir]], slack_s=1.0)) or covered(r, pairs))
    ]
