"""support/once.py: a session fixture's result is built once however many workers ask at the same time, and a
failed build leaves nothing for the next one to read."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from support.once import once_per_session


def test_two_askers_at_once_get_one_build(tmp_path_factory):
    name, built, results = f"race-{uuid.uuid4().hex}", [], []

    def build(work):
        built.append(work)
        time.sleep(0.3)  # the second asker arrives while this one builds
        (work / "made").write_text("x")
        return {"work": str(work)}

    askers = [threading.Thread(target=lambda: results.append(once_per_session(tmp_path_factory, name, build)))]
    askers.append(threading.Thread(target=lambda: results.append(once_per_session(tmp_path_factory, name, build))))
    for t in askers:
        t.start()
    for t in askers:
        t.join()
    assert len(built) == 1 and len(results) == 2 and results[0] == results[1]
    assert (built[0] / "made").read_text() == "x"


def test_a_failed_build_leaves_nothing_and_the_next_asker_builds_clean(tmp_path_factory):
    name = f"fail-{uuid.uuid4().hex}"

    def broken(work):
        (work / "half").write_text("half-written")
        raise RuntimeError("the build failed")

    with pytest.raises(RuntimeError, match="the build failed"):
        once_per_session(tmp_path_factory, name, broken)
    seen = once_per_session(tmp_path_factory, name, lambda work: {"left": sorted(p.name for p in work.iterdir())})
    assert seen == {"left": []}  # the half-written build was cleared first
