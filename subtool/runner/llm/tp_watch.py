"""A tensor-parallel launch's load watch: every rank's stage and a count of what it has read, in shared memory (each
rank writes its own, rank 0's watcher thread reads them all), and the bound on a rank that makes no progress.

A rank that dies is seen at once (tp_launch.Launch._watch, on its process). One that hangs is alive and silent: a
read of the checkpoint that never returns (a shared filesystem that stopped answering), an import stuck on it. The
other ranks wait for it in the load report, a collective with no timeout worth the name, because a 70B shard read
from a slow shared disk may take an hour. So the bound is on silence, not on the load's length: each rank counts
one beat per tensor it reads and per layer it builds, and a rank whose count has not moved for SUBTOOL_TP_STALL_S
(default 1800 s) while it starts, prepares, loads or sizes its cache stops the launch with one line naming it and
its stage. A slow disk still delivers a tensor every few minutes; 1800 s is the largest tensor of a 70B checkpoint
(Llama-3's 2.1 GB embedding) at about 1.2 MB/s. A rank waiting for the others (joining the group: bounded by the
store's SUBTOOL_TP_TIMEOUT_S; reporting its load) is not silent, it is waiting, and is not counted as stalled.
"""

from __future__ import annotations

import time

from subtool.errors import SubtoolError
from subtool.runner.stall import seconds_from_env

STALL_ENV = "SUBTOOL_TP_STALL_S"
STALL_DEFAULT_S = 1800.0
STAGES = (
    "starting (importing torch)",
    "joining the group",
    "preparing its load",
    "loading its shard",
    "sizing its KV cache",
    "reporting its load",
    "loaded",
)
STARTING, JOINING, PREPARING, LOADING, SIZING, REPORTING, LOADED = range(len(STAGES))
WATCHED = (STARTING, PREPARING, LOADING, SIZING)  # a rank's own work; the rest is waiting for the others


def stall_s() -> float:
    """SUBTOOL_TP_STALL_S: seconds a loading rank may go without progress (at least 1; unreadable: the default)."""
    return seconds_from_env(STALL_ENV, STALL_DEFAULT_S)


class Board:
    """Per rank: (stage, beats), in memory the spawned ranks share with rank 0 (passed to them when they start)."""

    def __init__(self, ctx, size: int):
        self.size = size
        self.cells = ctx.RawArray("q", 2 * size)  # zeros: every rank starting

    def stage(self, rank: int, stage: int) -> None:
        self.cells[2 * rank] = stage
        self.beat(rank)

    def beat(self, rank: int) -> None:
        self.cells[2 * rank + 1] += 1

    def read(self) -> list[tuple[int, int]]:
        return [(self.cells[2 * r], self.cells[2 * r + 1]) for r in range(self.size)]

    def loaded(self) -> bool:
        return all(stage == LOADED for stage, _ in self.read())

    def late(self) -> list[tuple[int, str]]:
        """(rank, stage) of the ranks that have not reached the group yet."""
        return [(r, STAGES[stage]) for r, (stage, _) in enumerate(self.read()) if stage == STARTING]


class StallWatch:
    """Rank 0's watcher asks it, every half second, which ranks have been silent in a stage of their own work."""

    def __init__(self, board: Board, bound: float):
        self.board, self.bound = board, bound
        self.seen = board.read()
        self.since = [time.monotonic()] * board.size

    def stalled(self) -> list[tuple[int, str]]:
        now, out = time.monotonic(), []
        for rank, cell in enumerate(self.board.read()):
            if cell != self.seen[rank]:
                self.seen[rank], self.since[rank] = cell, now
            elif cell[0] in WATCHED and now - self.since[rank] >= self.bound:
                out.append((rank, STAGES[cell[0]]))
        return out

    def error(self, stalled: list[tuple[int, str]], model_path) -> SubtoolError:
        ranks = ", ".join(f"rank {rank} while {stage}" for rank, stage in stalled)
        return SubtoolError(
            f"tensor-parallel {ranks}: no progress for {self.bound:g} s ({STALL_ENV}); every rank was stopped",
            path=model_path,
            rule="run.tensor_parallel",
            hint=f"a read of the checkpoint that never returns (a hung shared filesystem?); if the disk is only this "
            f"slow, raise {STALL_ENV}",
        )
