"""When the network SUT sends a completion request again: which failures are worth another try and how long to
wait first (the openai SDK's back-off, 0.5 s doubling up to 8 s, or the server's Retry-After up to two minutes).
The SDK's own retries are off for completions, because they give every try the whole timeout again; sut_openai.py
runs the tries under one deadline a sample and asks this module how long to pause."""

from __future__ import annotations

import random

__all__ = ["EndpointError", "StreamDropped", "pause_before_retry", "retry_after"]

# answers worth asking again for (the SDK's own rule, with every 5xx), and its back-off: 0.5 s doubling up to 8 s,
# or the server's Retry-After up to two minutes
RETRY_STATUSES = frozenset({408, 409, 429})
BACKOFF_FIRST_S, BACKOFF_MOST_S, RETRY_AFTER_MOST_S = 0.5, 8.0, 120.0


class EndpointError(Exception):
    """A request that failed for good (every try its deadline allowed included)."""


class StreamDropped(EndpointError):
    """The stream broke after it started: the SDK would not retry that, so sut_openai sends the request again."""


def pause_before_retry(exc: Exception, tries: int, most: int) -> float | None:
    """How long to wait before sending a request again after its `tries`-th failure `exc`, or None: not again."""
    import openai

    if tries > most:
        return None
    if isinstance(exc, StreamDropped):
        return 0.25 * 2 ** (tries - 1)
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code not in RETRY_STATUSES and exc.status_code < 500:
            return None
        after = retry_after(exc.response.headers)
        if after is not None:
            return after
    elif not isinstance(exc, openai.APIConnectionError):  # timeouts included
        return None
    return min(BACKOFF_FIRST_S * 2.0 ** (tries - 1), BACKOFF_MOST_S) * (1 - 0.25 * random.random())


def retry_after(headers) -> float | None:
    """The seconds a Retry-After (or retry-after-ms) header asks for, where it asks for a plausible wait."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            seconds = float(headers.get(name) or "nan") * scale
        except ValueError:
            continue
        if 0 < seconds <= RETRY_AFTER_MOST_S:
            return seconds
    return None
