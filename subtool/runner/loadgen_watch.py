"""A LoadGen run that never returns, ended in one line instead of waiting for ever.

LoadGen's StartTest returns once it holds a latency for every sample it issued. Once (CI at a2bf6da) it lost one
after the SUT had answered them all: the benchmark process sat in LoadGen's GetLatenciesBlocking at 0 % CPU, with
nothing left to answer, until it was killed by hand. Every SUT of subtool's meets LoadGen through `construct_sut`
and `complete` here, which count the samples LoadGen issued and the SUT answered, and every run goes through
`start_test`, whose thread watches: when every issued sample is answered and nothing has moved for the bound
(`stall_s()`; Server: also at least 50 of its mean gaps between queries), LoadGen is stuck, and the thread says so
and ends the process (stall.end_process_with), as the tensor-parallel launch's stall watch does. The modes that
finished before are kept by `subtool run` as after any failed run. A SUT that has not answered a sample yet is never
judged here: a slow model is not a stuck LoadGen.

Under token latencies (the LLMs) `complete` also gives LoadGen a first token for each sample that did not get one
through `first_token`: a sample answered empty after a failure. LoadGen's summary reads a first-token and a
per-token latency at the position of every sample of the run, and read past the end of its arrays when samples
had none: the benchmark process died of SIGSEGV in LoadGen's logging thread (about one failed openai run in eight)
instead of saying the run's own error.
"""

from __future__ import annotations

import array
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from subtool.runner.stall import end_process_with, seconds_from_env

__all__ = ["RULE", "STALL_ENV", "complete", "construct_sut", "counts", "first_token", "stall_s", "start_test"]

STALL_ENV = "SUBTOOL_LOADGEN_STALL_S"
STALL_DEFAULT_S = 300.0  # LoadGen's own end of a run (sorting latencies, writing its logs) takes seconds
SERVER_GAPS = 50  # a Poisson schedule leaves a quiet of 50 mean gaps once in e^50 gaps
RULE = "run.loadgen_stalled"
FAILPOINT_ENV = "SUBTOOL_LOADGEN_FAILPOINT"  # tests: "hang-after:<mode>" (see _failpoint)
_NO_TOKEN = array.array("i", [0])  # the first token given for a sample answered without one; lives as long as LoadGen


@dataclass(frozen=True)
class Counts:
    issued: int
    answered: int
    moved: float  # time.monotonic() of the last sample issued or answered


class _Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = Counts(0, 0, time.monotonic())

    def add(self, issued: int = 0, answered: int = 0) -> None:
        with self._lock:
            c = self._counts
            self._counts = Counts(c.issued + issued, c.answered + answered, time.monotonic())

    def read(self) -> Counts:
        with self._lock:
            return self._counts


_COUNTER = _Counter()


class _FirstTokens:
    """The samples of this process's current run that LoadGen has a first token for and that are not answered yet;
    nothing is kept when the run does not use token latencies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._on = False
        self._have: set[int] = set()

    def start(self, token_latencies: bool) -> None:
        with self._lock:
            self._on, self._have = bool(token_latencies), set()

    def add(self, ids: list[int]) -> None:
        with self._lock:
            if self._on:
                self._have.update(ids)

    def missing(self, ids: list[int]) -> list[int]:
        """Of the samples now answered, those without a first token (under token latencies); forgets them all."""
        with self._lock:
            if not self._on:
                return []
            lacking = [i for i in ids if i not in self._have]
            self._have.difference_update(ids)
            return lacking


_FIRST = _FirstTokens()


def counts() -> Counts:
    """The samples LoadGen issued and the SUTs answered in this process so far."""
    return _COUNTER.read()


def construct_sut(lg, issue_queries, flush_queries):
    """lg.ConstructSUT with the samples LoadGen issues counted (before the SUT sees them: it may answer at once)."""

    def issue(samples) -> None:
        _COUNTER.add(issued=len(samples))
        issue_queries(samples)

    return lg.ConstructSUT(issue, flush_queries)


def first_token(lg, responses: list) -> None:
    """lg.FirstTokenComplete, noted: `complete` gives the samples it did not cover one (see the module's text)."""
    lg.FirstTokenComplete(responses)
    _FIRST.add([r.id for r in responses])


def complete(lg, responses: list) -> None:
    """lg.QuerySamplesComplete, counted; under token latencies a sample that had no first token gets one first."""
    lacking = _FIRST.missing([r.id for r in responses])
    if lacking:
        token = _NO_TOKEN  # never logged (the accuracy log holds the answers), so no token of any model's
        lg.FirstTokenComplete([lg.QuerySampleResponse(i, token.buffer_info()[0], token.itemsize) for i in lacking])
    lg.QuerySamplesComplete(responses)
    _COUNTER.add(answered=len(responses))


def stall_s() -> float:
    """SUBTOOL_LOADGEN_STALL_S: seconds LoadGen may go on after the SUT answered everything (at least 1;
    unreadable: the default)."""
    value = seconds_from_env(STALL_ENV, STALL_DEFAULT_S)
    return value if math.isfinite(value) else STALL_DEFAULT_S  # no infinite wait: this watch exists to end one


def start_test(lg, sut_handle, qsl_handle, settings, log, audit: str) -> None:
    """lg.StartTestWithLogSettings under the watch."""
    bound = max(stall_s(), SERVER_GAPS * _mean_gap_s(lg, settings))
    done = threading.Event()
    detail = Path(log.log_output.outdir) / "mlperf_log_detail.txt"
    args = (done, bound, counts().issued, detail)
    watcher = threading.Thread(target=_watch, args=args, name="subtool-loadgen-watch", daemon=True)
    watcher.start()
    _FIRST.start(getattr(settings, "use_token_latencies", False))
    try:
        lg.StartTestWithLogSettings(sut_handle, qsl_handle, settings, log, audit)
        _failpoint(lg, settings)
    finally:
        done.set()
        watcher.join()


def _mean_gap_s(lg, settings) -> float:
    """The mean time between queries where a healthy run may be quiet with every sample answered: LoadGen's
    Server scenario (Interactive runs it too) issues on a Poisson schedule at the target QPS; the others issue
    the next query as soon as the last is answered, or all at once."""
    if settings.scenario != lg.TestScenario.Server:
        return 0.0
    qps = float(settings.server_target_qps)
    return 1.0 / qps if qps > 0 else 0.0


def _watch(done: threading.Event, bound: float, issued_before: int, detail: Path) -> None:
    while not done.wait(min(1.0, bound / 4)):
        c = counts()
        if c.issued > issued_before and c.answered >= c.issued and time.monotonic() - c.moved > bound:
            _end_stuck(c.issued - issued_before, bound, detail)


def _end_stuck(samples: int, bound: float, detail: Path) -> None:
    from subtool.errors import SubtoolError

    err = SubtoolError(
        f"LoadGen did not finish its run {bound:.0f} s after the SUT had answered all {samples} samples it was "
        "issued: LoadGen is stuck (it lost a sample's latency), so this mode has no result",
        path=detail,
        rule=RULE,
        hint="run the same command again (the modes that finished are kept); "
        f"{STALL_ENV} sets how long LoadGen may take to finish",
    )
    end_process_with(err)  # in `subtool run`'s benchmark process: the parent says it, from its result file


def _failpoint(lg, settings) -> None:
    """Fault injection for the tests: SUBTOOL_LOADGEN_FAILPOINT=hang-after:<performance|accuracy> keeps this run
    from returning once LoadGen has finished that mode, as the lost latency kept StartTest from returning."""
    mode = "accuracy" if settings.mode == lg.TestMode.AccuracyOnly else "performance"
    if os.environ.get(FAILPOINT_ENV) == f"hang-after:{mode}":
        threading.Event().wait()
