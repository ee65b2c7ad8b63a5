"""The stall watches' bounds from the environment (runner/stall.py's seconds_from_env and its three readers): a
value a user mistyped or set to NaN, infinity or a huge number gives a sane bound, never a 1-second timeout or an
overflow inside torch's timedelta."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from subtool.runner import loadgen_watch
from subtool.runner.llm import tp_launch, tp_watch
from subtool.runner.stall import seconds_from_env

NAME = "SUBTOOL_TEST_STALL_BOUND_S"


@pytest.mark.parametrize(
    "value, seconds",
    [(None, 30.0), ("12", 12.0), ("0.25", 1.0), ("-3", 1.0), ("ten", 30.0), ("", 30.0), ("nan", 30.0)]
    + [("inf", math.inf)],
)
def test_seconds_from_env(monkeypatch, value, seconds):
    if value is None:
        monkeypatch.delenv(NAME, raising=False)
    else:
        monkeypatch.setenv(NAME, value)
    assert seconds_from_env(NAME, 30.0) == seconds


WEEK = 7 * 24 * 3600.0


@pytest.mark.parametrize(
    "value, seconds",
    [
        (None, 600.0),
        ("45", 45.0),
        ("0", 1.0),
        ("later", 600.0),
        ("nan", 600.0),  # was max(1, nan) = 1.0: every join timed out after a second
        ("inf", WEEK),  # was an OverflowError from timedelta, a traceback instead of a launch
        ("1e30", WEEK),
        ("-inf", 1.0),
    ],
)
def test_the_tensor_parallel_timeout_is_one_torch_can_take(monkeypatch, value, seconds):
    if value is None:
        monkeypatch.delenv(tp_launch.TIMEOUT_ENV, raising=False)
    else:
        monkeypatch.setenv(tp_launch.TIMEOUT_ENV, value)
    assert tp_launch.timeout_s() == seconds
    assert timedelta(seconds=tp_launch.timeout_s()).total_seconds() == seconds


def test_each_watch_reads_its_own_variable(monkeypatch):
    monkeypatch.setenv(tp_watch.STALL_ENV, "7")
    monkeypatch.setenv(loadgen_watch.STALL_ENV, "9")
    monkeypatch.setenv(tp_launch.TIMEOUT_ENV, "11")
    assert (tp_watch.stall_s(), loadgen_watch.stall_s(), tp_launch.timeout_s()) == (7.0, 9.0, 11.0)
