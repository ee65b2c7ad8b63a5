"""The real mlperf_loadgen module seen through a thin wrapper that writes down which sample ids each
FirstTokenComplete and QuerySamplesComplete call carried (everything else passes through unchanged)."""

from __future__ import annotations

__all__ = ["WatchedLoadGen"]


class WatchedLoadGen:
    """The real mlperf_loadgen, with the ids each FirstTokenComplete and QuerySamplesComplete call carried."""

    def __init__(self, lg):
        self._lg, self.first, self.answered = lg, [], []

    def __getattr__(self, name):
        return getattr(self._lg, name)

    def FirstTokenComplete(self, responses):  # noqa: N802 - LoadGen's name
        self.first += [r.id for r in responses]
        self._lg.FirstTokenComplete(responses)

    def QuerySamplesComplete(self, responses):  # noqa: N802 - LoadGen's name
        self.answered += [r.id for r in responses]
        self._lg.QuerySamplesComplete(responses)
