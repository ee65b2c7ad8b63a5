"""A session fixture's result made once per test session, whichever xdist worker asks first.

pytest-xdist runs session fixtures once per worker, and each worker has its own base temporary directory, so a
fixture two workers need is built twice: the README's demo run, a real `subtool all` of a minute or more, was.
`once_per_session` builds into a directory all workers of the session share, under an exclusive lock; a worker
that comes second waits for the first and reads the JSON result it left. A build that fails leaves no result, so
the next worker to ask tries again (and fails in its own test too).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

__all__ = ["once_per_session"]


def shared_root(tmp_path_factory) -> Path:
    """The session's directory every worker sees: the base temporary directory's parent under xdist (the
    session's pytest-N, which holds each worker's popen-gwK), else the base temporary directory itself."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def once_per_session(tmp_path_factory, name: str, build: Callable[[Path], dict]) -> dict:
    """`build(directory)`'s JSON-able result, made once per session under `name`: paths in it that point into
    `directory` are valid in every worker."""
    root = shared_root(tmp_path_factory) / "once" / name
    root.mkdir(parents=True, exist_ok=True)
    done = root / "result.json"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when build raises
        if done.exists():
            return json.loads(done.read_text())
        work = root / "work"
        if work.exists():  # a build that failed before: start clean
            shutil.rmtree(work)
        work.mkdir()
        result = build(work)
        tmp = done.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        tmp.replace(done)
        return result
