"""Where a Server query's time to first token went, as the continuous engine saw it.

LoadGen reports TTFT whole. A query's TTFT is made of three parts here:
- queued: from LoadGen's issue to the engine pulling it (at most the step running when it arrived). The engine
  cannot see the issue time, so this part is left out: `arrived` is when the engine pulled the query.
- waiting: from arrival to admission into a slot (no free slot, no pages, or held back for company).
- prefilling: from admission to the first token (the prompt's chunks, and the steps they shared).

`Stamps` collects the times; `StampedCallbacks` wraps the engine's callback side (the SUT's generator) to stamp
arrivals and first tokens; the engine stamps admissions itself (`Stamps.admitted`). `summary` gives percentiles of
each part in milliseconds, the step durations the timeline shows, and how often prompts waited.
"""

from __future__ import annotations

import time

import numpy as np

QUANTILES = (50, 90, 99)


class Stamps:
    """perf_counter times by query id: arrived (pulled by the engine), admitted (given a slot), first (token)."""

    def __init__(self):
        self.arrived: dict[int, float] = {}
        self.admitted: dict[int, float] = {}
        self.first: dict[int, float] = {}

    def arrive(self, items) -> None:
        now = time.perf_counter()
        for qid, _ in items:
            self.arrived.setdefault(qid, now)

    def admit(self, qid: int) -> None:
        self.admitted[qid] = time.perf_counter()  # a prompt refused for pages is admitted again: the last counts

    def first_token(self, qid: int) -> None:
        self.first.setdefault(qid, time.perf_counter())


class StampedCallbacks:
    """The engine's callback side (prompts, first_token, complete, more_work), passed through, stamping arrivals
    and first tokens into `stamps`."""

    def __init__(self, callbacks, stamps: Stamps):
        self._callbacks = callbacks
        self._stamps = stamps

    def more_work(self) -> list:
        items = self._callbacks.more_work()
        self._stamps.arrive(items)
        return items

    def first_token(self, qid: int, token: int) -> None:
        self._stamps.first_token(qid)
        self._callbacks.first_token(qid, token)

    def __getattr__(self, name: str):
        return getattr(self._callbacks, name)


def _percentiles(values_ms: list[float]) -> dict | None:
    if not values_ms:
        return None
    out = {f"p{q}": round(float(np.percentile(values_ms, q)), 1) for q in QUANTILES}
    out["max"] = round(max(values_ms), 1)
    return out


def summary(stamps: Stamps, timeline: list) -> dict:
    """Percentiles (ms) of each TTFT part over the queries stamped from arrival to first token, with the engine
    steps' durations from the timeline and the steps that found prompts waiting. Timeline entries: (end time,
    decoding, waiting, rows, run): a step's duration is the time since the step before it in the same run() call
    (an idle engine returns from run(), and the time until the next call is no step's)."""
    done = [q for q in stamps.first if q in stamps.arrived and q in stamps.admitted]
    parts = {
        "waiting": [(stamps.admitted[q] - stamps.arrived[q]) * 1000 for q in done],
        "prefilling": [(stamps.first[q] - stamps.admitted[q]) * 1000 for q in done],
        "arrival_to_first_token": [(stamps.first[q] - stamps.arrived[q]) * 1000 for q in done],
    }
    steps_ms = [(b[0] - a[0]) * 1000 for a, b in zip(timeline, timeline[1:]) if a[4:5] == b[4:5]]
    waiting = [step[2] for step in timeline]
    return {
        "queries": len(done),
        "ms": {name: _percentiles(values) for name, values in parts.items()},
        "step_ms": _percentiles(steps_ms),
        "steps_over_1s": sum(ms > 1000 for ms in steps_ms),
        "steps_with_prompts_waiting": sum(w > 0 for w in waiting),
        "most_prompts_waiting": max(waiting, default=0),
        "most_decoding": max((step[1] for step in timeline), default=0),
        "what": "engine-side parts of TTFT: waiting = pulled by the engine to given a slot, prefilling = given a "
        "slot to first token; LoadGen's TTFT adds the time from issue to the engine pulling the query",
    }
