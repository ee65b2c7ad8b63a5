"""`subtool score`: many teams' hand-ins → verified, ranked leaderboards.

Inputs are scored in a process pool (one input per task, a bounded number in flight, workers recycled every
few dozen inputs) so memory stays flat however many tarballs there are; the main process only keeps each
entry's small record. Each input unpacks into its own folder inside one private scratch folder under --out,
removed when scoring ends. A worker that dies (killed, out of memory) costs only the inputs it held: they are
retried one by one, each alone in a fresh process and a fresh scratch folder, and only an input that kills that
process too becomes an error (score.worker_died, with the signal).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from subtool import __version__
from subtool.errors import SubtoolError
from subtool.fsutil import atomic_write_text
from subtool.output_set import check_replaceable
from subtool.scoring.entry import EntryRecord, remove_scratch, score_input, scratch_folders
from subtool.scoring.inputs import InputJob, Skipped, discover
from subtool.scoring.rules import Rules, load_rules

# Lone surrogates (UTF-8 cannot hold them) and control characters but tab and newline (a terminal would run
# an escape sequence from a team's system description when the CLI prints a reason)
_UNWRITABLE = re.compile("[\ud800-\udfff\x00-\x08\x0b-\x1f\x7f]")
OUTPUT_FILES = ("leaderboard.csv", "leaderboard.json", "leaderboard.md", "leaderboard.html")
MAX_DEFAULT_JOBS = 4
TASKS_PER_CHILD = 40
_PRELOAD = ["subtool.scoring.entry", "subtool.checker.api", "subtool.checker.rules", "subtool.pack.inputs"]


@dataclass
class ScoreOptions:
    inputs: list[Path]
    out: Path
    rules: Path | None = None
    metrics: Path | None = None
    jobs: int | None = None


@dataclass
class ScoreResult:
    out: Path
    files: dict[str, Path]
    counts: dict
    seconds: float
    jobs: int
    leaderboard: dict = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "out": str(self.out),
            "files": {k: str(v) for k, v in self.files.items()},
            "counts": self.counts,
            "seconds": round(self.seconds, 3),
            "jobs": self.jobs,
            "categories": [
                {
                    "name": c["name"],
                    "overall": [{k: r[k] for k in ("rank", "team", "system", "total", "status")} for r in c["overall"]],
                }
                for c in self.leaderboard.get("categories", [])
            ],
            "disqualified": self.leaderboard.get("disqualified", []),
            "skipped": self.leaderboard.get("skipped", []),
        }


# ------------------------------------------------------------------------------------------- the workers
def _context():
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    # Not fork: the main process runs the progress bar's thread, and forking a threaded process can deadlock.
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _pool(workers: int) -> ProcessPoolExecutor:
    kwargs = {"max_tasks_per_child": TASKS_PER_CHILD} if sys.version_info >= (3, 11) else {}
    return ProcessPoolExecutor(max_workers=workers, mp_context=_context(), **kwargs)


def _died(job: InputJob, why: str) -> EntryRecord:
    return EntryRecord(
        index=job.index,
        input=job.display,
        kind=job.kind,
        name=job.name,
        retried=True,
        error={"rule": "score.worker_died", "message": why},
    )


def _pool_pass(jobs: list[InputJob], rules: Rules, scratch: str, workers: int, done) -> list[InputJob]:
    """Score `jobs` in a pool; return the ones whose worker pool broke under them (they are not scored).

    When one worker dies, ProcessPoolExecutor fails every future in flight, so which input killed it is not
    known here: all of them become suspects, and a fresh pool takes the inputs not yet started.
    """
    pending = list(reversed(jobs))
    suspects: list[InputJob] = []
    pool = _pool(workers)
    running: dict = {}
    try:
        while pending or running:
            while pending and len(running) < workers * 2:
                job = pending.pop()
                running[pool.submit(score_input, job, rules, scratch)] = job
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = False
            for future in finished:
                job = running.pop(future)
                try:
                    done(future.result())
                except BrokenProcessPool:
                    suspects.append(job)
                    broken = True
            if broken:
                suspects.extend(running.values())
                running.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = _pool(workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return sorted(suspects, key=lambda j: j.index)


def _solo_main(conn, job: InputJob, rules: Rules, scratch: str) -> None:
    try:
        conn.send(score_input(job, rules, scratch))
    finally:
        conn.close()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        cause = " (the out-of-memory killer, or someone)" if name == "SIGKILL" else ""
        return f"killed by {name}{cause}"
    return f"exited with status {exitcode} before it answered"


def _solo(job: InputJob, rules: Rules, scratch: str) -> EntryRecord:
    """Score one suspect alone in a fresh process and a fresh scratch folder; a second death is its own."""
    for left in scratch_folders(scratch, job):  # what the killed worker left behind
        remove_scratch(left)
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_solo_main, args=(send, job, rules, scratch), daemon=True)
    proc.start()
    send.close()
    try:
        entry = receive.recv()
    except (EOFError, OSError):
        entry = None
    finally:
        receive.close()
        proc.join()
    for left in scratch_folders(scratch, job):
        remove_scratch(left)
    if entry is None:
        return _died(
            job,
            "the scoring worker died on this input twice (once beside other inputs, then alone): "
            + _death(proc.exitcode),
        )
    entry.retried = True
    return entry


def _run_pool(jobs: list[InputJob], rules: Rules, scratch: str, workers: int, done) -> None:
    for job in _pool_pass(jobs, rules, scratch, workers, done):
        done(_solo(job, rules, scratch))


def _score_all(jobs: list[InputJob], rules: Rules, scratch: str, workers: int, console) -> list[EntryRecord]:
    entries: list[EntryRecord] = []
    progress = None
    if console is not None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(
            TextColumn("score"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=False,
        )
        progress.start()
        bar = progress.add_task("", total=len(jobs))

    def done(entry: EntryRecord) -> None:
        entries.append(entry)
        if progress is not None:
            mark = "refused" if entry.error else "ok"
            progress.update(bar, advance=1, description=f"{entry.input} ({mark})")

    try:
        if workers <= 1:
            for job in jobs:
                done(score_input(job, rules, scratch))
        else:
            _run_pool(jobs, rules, scratch, workers, done)
    finally:
        if progress is not None:
            progress.stop()
    return sorted(entries, key=lambda e: e.index)


def _refuse_all_died(entries: list[EntryRecord]) -> None:
    """Every input's worker died, alone too: the machine failed (memory, process limits), not the hand-ins. A board
    where every team is refused for it would be published as a result; none is written."""
    if entries and all(e.error and e.error.get("rule") == "score.worker_died" for e in entries):
        raise SubtoolError(
            f"the scoring worker of every one of the {len(entries)} inputs died, each alone too "
            f"({entries[0].error['message']}): nothing was scored, so no leaderboard is written",
            rule="score.workers_died",
            hint="look at the machine's memory and process limits (dmesg), then score again",
        )


# ------------------------------------------------------------------------------------------------ outputs
def leaderboard_document(entries: list[EntryRecord], rules: Rules, skipped: list[Skipped] = ()) -> dict:
    from subtool.scoring.ranking import build_leaderboard

    board = build_leaderboard(entries, rules)
    ranked = sum(1 for c in board["categories"] for r in c["overall"] if r["status"] == "ranked")
    out_of_ranking = {(d["input"], d["team"], d["system"]) for d in board["disqualified"]}
    return {
        "schema": "subtool.score/1",
        "title": rules.title,
        "subtool_version": __version__,
        "rules": rules.summary(),
        "counts": {
            "inputs": len(entries),
            "scored": sum(1 for e in entries if not e.error),
            "errors": sum(1 for e in entries if e.error),
            "ranked": ranked,
            "disqualified": len(out_of_ranking),
            "flagged": sum(1 for e in entries if e.flags),
            "retried": sum(1 for e in entries if e.retried),
            "skipped": len(skipped),
        },
        "skipped": [{"path": s.path, "why": s.why} for s in skipped],
        "categories": board["categories"],
        "disqualified": board["disqualified"],
        "entries": [e.to_dict() for e in entries],
    }


def writable(value):
    """A copy of `value` that every output can hold: text that is not valid Unicode (a lone surrogate from a JSON
    escape or an undecodable name) or a control character gets U+FFFD in its place, and a NaN or ±Infinity
    becomes null."""
    if isinstance(value, str):
        return _UNWRITABLE.sub("\ufffd", value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {writable(k): writable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [writable(v) for v in value]
    return value


def write_outputs(doc: dict, out: Path, entries: list[EntryRecord], metrics: Path | None) -> dict[str, Path]:
    from subtool.scoring.html import leaderboard_html
    from subtool.scoring.metrics import metric_rows, metrics_format, render_metrics
    from subtool.scoring.tables import leaderboard_csv, leaderboard_md

    doc = writable(doc)
    # every destination first: one in the way (a folder named leaderboard.md) leaves the previous set whole
    check_replaceable(_destinations(out, metrics))
    files = {
        "csv": atomic_write_text(out / "leaderboard.csv", leaderboard_csv(doc)),
        # strict JSON: writable() left no NaN or Infinity, and allow_nan=False makes sure of it
        "json": atomic_write_text(out / "leaderboard.json", json.dumps(doc, indent=2, allow_nan=False) + "\n"),
        "md": atomic_write_text(out / "leaderboard.md", leaderboard_md(doc)),
        "html": atomic_write_text(out / "leaderboard.html", leaderboard_html(doc)),
    }
    if metrics is not None:
        files["metrics"] = atomic_write_text(
            metrics, render_metrics(writable(metric_rows(entries)), metrics_format(metrics))
        )
    return files


def _destinations(out: Path, metrics: Path | None) -> list[Path]:
    return [out / name for name in OUTPUT_FILES] + ([Path(metrics)] if metrics is not None else [])


def _workers(requested: int | None, count: int) -> int:
    if requested is not None and requested < 1:
        raise SubtoolError("--jobs must be at least 1", rule="cli.usage")
    if requested is None:
        requested = min(os.cpu_count() or 1, MAX_DEFAULT_JOBS)
    return max(1, min(requested, count))


def score(opts: ScoreOptions, console=None) -> ScoreResult:
    start = time.perf_counter()
    rules = load_rules(opts.rules)
    if opts.metrics is not None:
        from subtool.scoring.metrics import metrics_format

        metrics_format(opts.metrics)
    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise SubtoolError("--out exists and is not a folder", path=out, rule="score.out")
    check_replaceable(_destinations(out, opts.metrics))  # said before the scoring's minutes, and again when writing
    jobs, skipped = discover([Path(p) for p in opts.inputs], out_dir=out)
    workers = _workers(opts.jobs, len(jobs))
    out.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".score-scratch-", dir=out)
    os.chmod(scratch, 0o700)
    try:
        entries = _score_all(jobs, rules, scratch, workers, console)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _refuse_all_died(entries)
    doc = writable(leaderboard_document(entries, rules, skipped))  # the --json outcome prints it too
    files = write_outputs(doc, out, entries, opts.metrics)
    return ScoreResult(
        out=out, files=files, counts=doc["counts"], seconds=time.perf_counter() - start, jobs=workers, leaderboard=doc
    )
