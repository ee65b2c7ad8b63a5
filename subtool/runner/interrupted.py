"""What an interrupted run keeps: the LoadGen modes it finished, for the same command to reuse.

A run's modes (performance, then accuracy) share one staging folder that replaces the run directory only when
the whole session succeeds. A Ctrl-C, Slurm's SIGTERM or a crash in the accuracy run used to throw the finished
performance run away with it. Now the session notes each mode as it finishes (`.session-progress.json` in the
stage); when the run stops early, the finished modes' folders move to `<model>/.<scenario>.interrupted/` with
`kept.json` (their run.json entries and a fingerprint of everything that decides a result: the session's
options, the user.conf subtool wrote, the data set's and the checkpoint files' sizes and times, subtool's
version). The next run whose
fingerprint is the same copies them into its stage and runs only the other modes; a run with other settings
runs everything. The folder goes once a run directory is complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from subtool import __version__
from subtool.fsutil import atomic_write_json, file_identity
from subtool.mlperf.json_strict import parse_json

PROGRESS_NAME = ".session-progress.json"
KEPT_NAME = "kept.json"
KEPT_SCHEMA = "subtool.interrupted/1"
MODE_DIRS = {"performance": "performance", "accuracy": "accuracy"}
# what a session's options hold that does not change its results: where it writes, what it prints, which modes it
# runs (short_settings: derived from the run style and the user.conf, both fingerprinted, and set only when a
# performance run is among the modes), where its cache is (the features cached there are keyed by the data set's
# and the vocabulary's hashes, so a cache elsewhere gives the same answers; SUBTOOL_CACHE moved to scratch space
# between an accuracy run and a performance-only rerun threw the accuracy run away)
_NOT_FINGERPRINTED = {
    "stage",
    "cache_dir",
    "result_path",
    "user_conf",
    "progress_path",
    "modes",
    "compliance",
    "quiet",
    "short_settings",
    "user_conf_header",  # a comment in the user.conf, which fingerprint hashes
}


@dataclass
class Kept:
    """Modes an interrupted run finished (run.json entries), reused by this run; empty when none are."""

    modes: dict = field(default_factory=dict)
    started: str | None = None  # the interrupted session's first timestamp (the .tstamps start)
    settings: dict | None = None  # a short run's settings as sized for its performance run
    sizing: dict | None = None


def kept_dir(final_dir: Path) -> Path:
    return final_dir.parent / f".{final_dir.name}.interrupted"


def fingerprint(session, stage: Path, dataset_path: Path, model_path: Path) -> str:
    """Everything that decides a mode's result: the session's options, the user.conf in the stage (as subtool
    wrote it, before a short run sizes it), the data set's and every checkpoint file's size and modification time
    (fsutil.file_identity: weights swapped in place change it; nothing is hashed), subtool's version."""
    user_conf = hashlib.sha256((stage / "user.conf").read_bytes()).hexdigest()
    return _digest([answers_fingerprint(session, dataset_path, model_path), user_conf])


def answers_fingerprint(session, dataset_path: Path, model_path: Path) -> str:
    """What decides the answers the SUT gives, and so an accuracy run's result: fingerprint's parts but the
    user.conf (LoadGen's schedule, which decides the performance run's)."""
    options = {k: v for k, v in dataclasses.asdict(session).items() if k not in _NOT_FINGERPRINTED}
    return _digest([options, file_identity(dataset_path), file_identity(model_path), __version__])


def _digest(parts: list) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def reuse(where: Path, mark: str, stage: Path, modes: list[str], say) -> Kept:
    """Copy into `stage` the requested modes an interrupted run with the same fingerprint finished."""
    record = _read_kept(where)
    if record is None:
        return Kept()
    if record.get("fingerprint") != mark:
        say(f"{where}: an interrupted run's finished modes, run with other settings: not reused")
        return Kept()
    entries = record.get("modes") if isinstance(record.get("modes"), dict) else {}
    reused = {m: e for m, e in entries.items() if m in modes and m in MODE_DIRS and (where / MODE_DIRS[m]).is_dir()}
    for mode, entry in list(reused.items()):
        problem = _kept_problem(where, mode, entry)
        if problem:
            say(f"{where}: the kept {mode} run {problem}: not reused, it runs again")
            del reused[mode]
    if not reused:
        return Kept()
    for mode in reused:
        shutil.copytree(where / MODE_DIRS[mode], stage / MODE_DIRS[mode])
    if "performance" in reused and (where / "user.conf").is_file():
        shutil.copyfile(where / "user.conf", stage / "user.conf")  # as a short run sized it
    rest = [m for m in modes if m not in reused]
    say(
        f"reusing the {' and '.join(reused)} run an interrupted run with the same settings finished ({where}); "
        + (f"running {' and '.join(rest)}" if rest else "no LoadGen mode left to run")
    )
    perf = "performance" in reused
    return Kept(reused, record.get("started"), record.get("settings") if perf else None, record.get("sizing"))


def _kept_problem(where: Path, mode: str, entry: object) -> str | None:
    """Why a kept mode cannot stand for this run's: its entry is not one, its detail log is gone, damaged or of
    another mode, or (performance) its result is not the log's. A kept folder edited or damaged since was reused
    as it was: a missing log failed every rerun the same way, an edited result was reported as the run's."""
    from subtool.mlperf.logs import ALL_KEYS, read_loadgen_log
    from subtool.runner.harness import result_in_units

    if not isinstance(entry, dict):
        return "has no run.json entry"
    folder = where / MODE_DIRS[mode]
    log = read_loadgen_log((folder / "run_1" if mode == "performance" else folder) / "mlperf_log_detail.txt", ALL_KEYS)
    if log.problems:
        return f"has a detail log that {log.problems[0]}"
    if log.mode != mode:
        return f"holds a {log.mode} log"
    if mode == "performance":
        field = entry.get("result_field")
        said, logged = entry.get("result"), result_in_units(str(log.scenario), log.get(field) if field else None)
        if (
            not isinstance(said, (int, float))
            or not isinstance(logged, (int, float))
            or abs(said - logged) > 1e-6 * abs(logged)
        ):
            return f"says its result is {said!r:.40}, its log {logged!r:.40}"
    return None


def keep(stage: Path, where: Path, mark: str, kept: Kept) -> list[str]:
    """After a run stopped early: move the modes it finished (and those it had reused) from `stage` into `where`,
    replacing what was there. Returns the modes kept."""
    progress = _read(stage / PROGRESS_NAME) or {}
    done = progress.get("modes") if isinstance(progress.get("modes"), dict) else {}
    finished = {**kept.modes, **{m: e for m, e in done.items() if m in MODE_DIRS}}
    finished = {m: e for m, e in finished.items() if (stage / MODE_DIRS[m]).is_dir()}
    if not finished:
        return []
    tmp = Path(tempfile.mkdtemp(prefix=f".{where.name}.{os.getpid()}.", suffix=".staging", dir=where.parent))
    for mode in finished:
        os.replace(stage / MODE_DIRS[mode], tmp / MODE_DIRS[mode])
    if (stage / "user.conf").is_file():
        shutil.copyfile(stage / "user.conf", tmp / "user.conf")
    perf_new = "performance" in done
    atomic_write_json(
        tmp / KEPT_NAME,
        {
            "schema": KEPT_SCHEMA,
            "fingerprint": mark,
            "modes": finished,
            "started": kept.started or progress.get("started"),
            "settings": progress.get("settings") if perf_new else kept.settings,
            "sizing": progress.get("sizing") if perf_new else kept.sizing,
        },
    )
    discard(where)
    os.replace(tmp, where)
    return list(finished)


def merged(outcome: dict, kept: Kept) -> dict:
    """The session's outcome with the reused modes in it, as if one session had run them all."""
    if not kept.modes:
        return outcome
    out = {**outcome, "modes": {**kept.modes, **outcome.get("modes", {})}}
    if kept.started and out.get("tstamps"):
        out["tstamps"] = [kept.started, *out["tstamps"][1:]]
    if kept.settings is not None:
        out["settings"], out["sizing"] = kept.settings, kept.sizing
    return out


def discard(where: Path) -> None:
    shutil.rmtree(where, ignore_errors=True)


def _read_kept(where: Path) -> dict | None:
    record = _read(where / KEPT_NAME)
    return record if record is not None and record.get("schema") == KEPT_SCHEMA else None


def _read(path: Path) -> dict | None:
    try:
        if not path.is_file() or path.stat().st_size > 16 << 20:
            return None
        value, problem = parse_json(path.read_bytes())
    except OSError:
        return None
    return value if problem is None and isinstance(value, dict) else None
