"""`subtool all`'s memory: OUT/state.json, stage fingerprints, and the runner that skips a finished stage.

OUT/state.json records, per stage, a fingerprint of its inputs and what it produced. A re-run skips every
finished stage whose inputs did not change, so a crash or Ctrl-C in a late stage never costs the benchmark run.
Each stage writes through temporary paths and renames, so an interrupted stage leaves nothing half-written and
is simply run again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from subtool import __version__, fsutil
from subtool.errors import SubtoolError, Terminated, interruption_explained
from subtool.fsutil import atomic_write_json

STAGES = ("run", "package", "check", "pack", "publish")
STATE_SCHEMA = "subtool.state/1"


class State:
    """OUT/state.json: `stages` holds each stage's latest status (running, done, interrupted, failed); `finished` keeps
    every finished stage by what it was for (model/scenario for run and package, the round's tree for the
    rest), so that one `--out` remembers several benchmarks and rounds, not only the last command's."""

    def __init__(self, path: Path):
        self.path = path
        self.data = {"schema": STATE_SCHEMA, "stages": {}, "finished": {}, "trees": {}}
        self.unreadable: str | None = None  # why state.json was not read, for the run to say before it starts
        if path.is_file():
            try:
                loaded = json.loads(path.read_text())
                if (
                    isinstance(loaded, dict)
                    and loaded.get("schema") == STATE_SCHEMA
                    and isinstance(loaded.get("stages"), dict)
                ):
                    self.data.update(loaded)
                else:
                    self.unreadable = f"not subtool's {STATE_SCHEMA}"
            except (ValueError, OSError, RecursionError) as exc:  # nothing is known to be finished: run everything
                self.unreadable = "cut short or damaged" if isinstance(exc, ValueError) else type(exc).__name__
        for name in ("finished", "trees"):
            if not isinstance(self.data.get(name), dict):
                self.data[name] = {}
        # an entry of the wrong shape (edited, or written by a broken tool) is not known to be finished
        self.data["stages"] = {s: e for s, e in self.data["stages"].items() if _entry_shaped(e)}
        self.data["finished"] = {
            stage: {key: e for key, e in entries.items() if _entry_shaped(e)}
            for stage, entries in self.data["finished"].items()
            if isinstance(entries, dict)
        }

    def finished(self, stage: str, fingerprint: str, key: str = "") -> dict | None:
        entry = (self.data["finished"].get(stage) or {}).get(key)
        if not isinstance(entry, dict):
            entry = self.data["stages"].get(stage)  # a state.json from before `finished` existed
        if isinstance(entry, dict) and entry.get("status") == "done" and entry.get("inputs") == fingerprint:
            return entry
        return None

    def mark(self, stage: str, status: str, fingerprint: str, outputs: dict | None = None, key: str = "") -> None:
        entry = {
            "status": status,
            "inputs": fingerprint,
            "outputs": outputs or {},
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "subtool": __version__,
        }
        if key:
            entry["for"] = key
        self.data["stages"][stage] = entry
        finished = self.data["finished"].setdefault(stage, {})
        if status == "done":
            finished[key] = entry
        else:
            finished.pop(key, None)  # being redone: its earlier outputs are no longer known to stand
        atomic_write_json(self.path, self.data)


def _entry_shaped(entry: object) -> bool:
    """An entry as mark() writes it (a stage with another shape is not known to be finished: a hand-edited one
    without its time ended `all` in an internal error)."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("outputs"), dict)
        and all(isinstance(entry.get(k), str) for k in ("status", "inputs", "at"))
    )


def file_digests(folder: Path, names: list[str]) -> dict[str, str] | None:
    """{name: sha256} of the files `names` in `folder`; None when one is missing or unreadable. What a stage
    wrote is recorded so: a later `all` tells a file damaged or replaced since from the one it wrote."""
    try:
        return {name: fsutil.sha256_file(folder / name) for name in names}
    except OSError:
        return None


def _failpoint(stage: str, point: str) -> None:
    """Fault injection for the resume tests: SUBTOOL_FAILPOINT=<stage>:<start|end>:<kill|int>.

    `start` fires after the stage is marked running, `end` after its outputs are written but before it is
    marked done — the two moments where an interruption is most likely to leave something inconsistent.
    """
    spec = os.environ.get("SUBTOOL_FAILPOINT")
    if not spec:
        return
    want_stage, want_point, action = (spec.split(":") + ["", ""])[:3]
    if (want_stage, want_point) != (stage, point):
        return
    import signal

    os.kill(os.getpid(), signal.SIGKILL if action == "kill" else signal.SIGINT)
    time.sleep(5)  # the signal is delivered before this returns


def fingerprint(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def tree_digest(root: Path) -> str:
    """sha256 over every file's relative path and content below root."""
    h = hashlib.sha256()
    if not root.exists():
        return "absent"
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + b"\0")
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def stage_runner(force: bool, state: State, selected: list[str], stages: dict[str, str], console):
    """`stage(name, fingerprint, action, key, intact)`: skip a finished stage whose inputs did not change and
    whose outputs are still intact, else run it, recording running → done (or interrupted) in state.json."""

    def stage(name: str, fingerprint: str, action, *, key: str, intact=None):
        if name not in selected:
            done = state.finished(name, fingerprint, key)
            return done["outputs"] if done else None
        index = STAGES.index(name) + 1
        done = None if force else state.finished(name, fingerprint, key)
        if done is not None and (intact is None or intact(done)):
            console.print(f"[dim][{index}/5] {name}: unchanged since {done['at']}, skipped[/]")
            stages[name] = "skipped (unchanged)"
            return done["outputs"]
        console.rule(f"[bold][{index}/5] {name}")
        state.mark(name, "running", fingerprint, key=key)
        t0 = time.time()

        def interrupted() -> None:  # also run by the signal watchdog when the main thread cannot unwind
            state.mark(name, "interrupted", fingerprint, key=key)

        fsutil.EMERGENCY_CALLBACKS.append(interrupted)
        try:
            _failpoint(name, "start")
            outputs = action()
            _failpoint(name, "end")
        except KeyboardInterrupt as exc:
            interrupted()
            why = f"terminated ({exc.name})" if isinstance(exc, Terminated) else "interrupted"
            console.print(
                f"[red]{why} in {name}[/]: nothing half-written; run the same command again: the finished stages "
                f"are kept and the {name} stage starts again",
                highlight=False,
                soft_wrap=True,
            )
            interruption_explained(True)  # the CLI prints no second line
            raise
        except SubtoolError as err:
            state.mark(name, "failed", fingerprint, key=key)  # not "running" for ever
            err.hint = err.hint or "fix this and run `all` again: the stages that finished are kept"
            raise
        except Exception:
            state.mark(name, "failed", fingerprint, key=key)
            raise
        finally:
            fsutil.EMERGENCY_CALLBACKS.remove(interrupted)
        state.mark(name, "done", fingerprint, outputs, key=key)
        stages[name] = f"done in {time.time() - t0:.1f} s"
        return outputs

    return stage
