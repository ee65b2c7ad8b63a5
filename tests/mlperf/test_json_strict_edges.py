"""parse_json's strictness, on its own: a repeated key refused where asked for (at any depth) and kept last-wins
where not, numbers past any float refused at the edge of float range, and never an exception."""

from __future__ import annotations

import sys

import pytest

from subtool.mlperf.json_strict import NonFinite, parse_json


@pytest.mark.parametrize(
    "text",
    ['{"a": 1, "a": 2}', '{"x": {"a": 1, "b": 2, "a": 1}}', '[{"a": 1}, {"b": 1, "b": 1}]'],
)
def test_a_repeated_key_is_refused_when_keys_must_be_unique(text):
    value, problem = parse_json(text, unique_keys=True)
    assert value is None and problem.startswith("repeats the key")
    assert parse_json(text)[1] is None  # the checker's reading: the last value wins, as the official one does


def test_unique_keys_keep_every_distinct_key():
    assert parse_json('{"a": {"b": 1, "c": [1, {"b": 2}]}, "b": 3}', unique_keys=True) == (
        {"a": {"b": 1, "c": [1, {"b": 2}]}, "b": 3},
        None,
    )


@pytest.mark.parametrize(
    "text",
    [str(int(sys.float_info.max) + 1), "-" + str(int(sys.float_info.max) * 2), "9" * 309, "1.8e308", "-1e309"],
)
def test_a_number_just_past_the_largest_float_is_not_finite(text):
    value, problem = parse_json(f'{{"v": {text}}}')
    assert value is None and isinstance(problem, NonFinite)


def test_the_largest_float_itself_is_a_number():
    biggest = int(sys.float_info.max)
    assert parse_json(str(biggest)) == (biggest, None)
    assert parse_json(repr(sys.float_info.max)) == (sys.float_info.max, None)
