"""A scoring worker killed for real (SIGKILL from outside, as the out-of-memory killer does) while it scores
(issue 19, item 3): the inputs it held are scored again, each alone in a fresh process and scratch folder, and
keep their score; only an input whose worker is killed again is reported, with the signal that killed it."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from support.procs import children

from subtool.scoring.api import ScoreOptions, score

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers through Linux /proc")
TEAMS = ("Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Eta")


def scoring_workers() -> list[int]:
    """The processes the multiprocessing forkserver started for this test process: the scoring workers. Found
    through the children files (well under a millisecond): a scan of every process in /proc took 16 ms, and a
    culprit's input is scored in about 50, so a kill that came after the scan could land after its worker had
    already finished it (CI at 4dc3974: two kills, one attempt, the culprit scored)."""
    servers = children(os.getpid(), b"multiprocessing.forkserver")
    return [worker for server in servers for worker in children(server)]


class Killer(threading.Thread):
    """Watches the scratch folders under `out`; when an attempt at an input `targets` selects starts, SIGKILLs
    every scoring worker (the one holding that input among them)."""

    def __init__(self, out: Path, targets) -> None:
        super().__init__(daemon=True)
        self.out, self.targets = out, targets
        self.seen: set[str] = set()
        self.kills: list[tuple[str, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:  # a scratch folder removed while it is listed (score ends, or refuses, meanwhile)
                attempts = list(self.out.glob(".score-scratch-*/*"))
            except FileNotFoundError:
                continue
            for attempt in attempts:
                if attempt.name in self.seen or not self.targets(attempt.name):
                    continue
                self.seen.add(attempt.name)
                for pid in scoring_workers():
                    try:
                        os.kill(pid, signal.SIGKILL)
                        self.kills.append((attempt.name, pid))
                    except ProcessLookupError:
                        pass
            time.sleep(0.002)


def _handins(sc_handins, root: Path) -> Path:
    for team in TEAMS:
        shutil.copytree(sc_handins[team], root / team)
    return root


def _run(handins: Path, out: Path, killer: Killer):
    killer.start()
    try:
        return score(ScoreOptions(inputs=[handins], out=out, jobs=2))
    finally:
        killer.stop.set()
        killer.join()


def _ranked(doc) -> dict:
    return {
        (r["team"], c["name"]): r["total"] for c in doc["categories"] for r in c["overall"] if r["status"] == "ranked"
    }


def test_a_killed_worker_costs_no_team_its_score(sc_handins, tmp_path):
    handins = _handins(sc_handins, tmp_path / "handins")
    reference = score(ScoreOptions(inputs=[handins], out=tmp_path / "ref", jobs=1)).leaderboard

    out = tmp_path / "out"
    killer = Killer(out, targets=lambda name: not killer.kills)  # one kill, at the first input started
    result = _run(handins, out, killer)
    assert killer.kills, "no scoring worker was seen to kill"
    doc = result.leaderboard
    assert [e["error"] for e in doc["entries"]] == [None] * len(TEAMS)
    assert any(e["retried"] for e in doc["entries"]) and doc["counts"]["retried"] >= 1  # the pool broke
    assert _ranked(doc) == _ranked(reference)
    assert not list(out.glob(".score-scratch-*"))  # every scratch folder removed


# the watcher must see the culprit's attempt while it still runs, in the pool and then alone: beside a second xdist
# worker's load it once saw only the first (two kills, one attempt name), so it runs alone after the parallel pass
@pytest.mark.serial
def test_only_the_input_that_kills_its_worker_again_is_reported(sc_handins, tmp_path):
    handins = _handins(sc_handins, tmp_path / "handins")
    out = tmp_path / "out"
    culprit = sorted(TEAMS).index("Gamma")  # inputs are numbered in path order
    killer = Killer(out, targets=lambda name: name.startswith(f"{culprit:05d}-"))
    doc = _run(handins, out, killer).leaderboard
    assert len(killer.kills) >= 2 and len({name for name, _ in killer.kills}) == 2  # in the pool, then alone
    errors = {e["input"]: e["error"] for e in doc["entries"] if e["error"]}
    assert list(errors) == ["handins/Gamma/mlperf_submission_short.tar.gz"]
    error = errors["handins/Gamma/mlperf_submission_short.tar.gz"]
    assert error["rule"] == "score.worker_died" and "killed by SIGKILL" in error["message"]
    ranked = {team for team, _ in _ranked(doc)}
    assert ranked == {"Alpha", "Beta", "Delta", "Epsilon"}  # Eta: INVALID, never ranked
    assert not list(out.glob(".score-scratch-*"))


@pytest.mark.serial
def test_a_run_where_every_inputs_worker_dies_writes_no_board_and_fails(sc_handins, tmp_path):
    """Every worker dying (memory, process limits) refused every team as score.worker_died and exited 0 with a
    board of nobody; the machine failed, not the hand-ins."""
    from subtool.errors import SubtoolError

    handins = tmp_path / "handins"
    for team in TEAMS[:2]:
        shutil.copytree(sc_handins[team], handins / team)
    out = tmp_path / "out"
    killer = Killer(out, targets=lambda name: True)
    with pytest.raises(SubtoolError) as err:
        _run(handins, out, killer)
    assert err.value.rule == "score.workers_died" and "every one of the 2 inputs" in err.value.message
    assert not list(out.glob("leaderboard.*")) and not list(out.glob(".score-scratch-*"))
