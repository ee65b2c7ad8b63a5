"""Hypothesis settings and input strategies for fuzzing the checker's readers (tests/checker/test_checker_fuzz.py).

The suite's one switch for fuzzing depth is HYPOTHESIS_PROFILE (tests/conftest.py): unset or `ci`, a bounded
number of examples, derandomized so that CI is repeatable and fast; `long`, many examples and random seeds:

    HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest -q tests/checker/test_checker_fuzz.py

(8 minutes on a busy 2-core machine at the default 2000 examples; raise FUZZ_EXAMPLES to go further).
Documented in subtool/checker/RULES.md, "Fuzzing the readers".
"""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from subtool.mlperf.logs import MARKER, WANTED_KEYS

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
if os.environ.get("HYPOTHESIS_PROFILE") == "long":
    FUZZ = settings(
        max_examples=int(os.environ.get("FUZZ_EXAMPLES", "2000")), deadline=None, suppress_health_check=_QUIET
    )
else:
    FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=_QUIET)


def _scale(n: int) -> int:
    """Fewer examples for the slow (whole-tree) properties, in proportion to the profile."""
    return max(8, FUZZ.max_examples // n)


SLOW = settings(FUZZ, max_examples=_scale(3))

# ----------------------------------------------------------------------------------------- JSON text
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)

# Spellings the strict reader must refuse or survive: non-finite constants, floats that overflow, integers
# over Python's digit limit, deep nesting, numbers with odd syntax.
hostile_fragments = st.sampled_from(
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "1e999",
        "-1e400",
        "9" * 5000,
        "1" + "0" * 400,
        "-" + "9" * 320,
        "nan",
        "inf",
        "1_000",
        "0x10",
        "+1",
        ".5",
        "[" * 5000 + "]" * 5000,
        "[" * 100_000,
        '{"a":' * 3000 + "1" + "}" * 3000,
        '"\\ud800"',
        "\x00",
        "",
    ]
)


@st.composite
def json_texts(draw) -> str:
    """JSON documents (Python's lenient spelling, so NaN/Infinity appear), sometimes damaged or hostile."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(hostile_fragments)
    text = json.dumps(draw(json_values), allow_nan=True)
    if kind == 1:  # cut short
        return text[: draw(st.integers(0, len(text)))]
    if kind == 2:  # a hostile value somewhere inside
        cut = draw(st.integers(0, len(text)))
        return text[:cut] + draw(hostile_fragments) + text[cut:]
    return text


json_objects = st.dictionaries(st.text(max_size=30), json_values, max_size=8)

# --------------------------------------------------------------------------------------- LoadGen logs
log_keys = st.sampled_from(sorted(WANTED_KEYS)) | st.text(max_size=20)


@st.composite
def detail_log_bytes(draw) -> bytes:
    """A :::MLLOG detail log: wanted keys with random values, error entries, garbage lines, a cut-short end."""
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 5))
        key = draw(log_keys)
        value = draw(json_texts()) if kind < 3 else json.dumps(draw(json_values), allow_nan=True)
        if kind == 4:
            lines.append(
                MARKER
                + (
                    f'{{"key": {json.dumps(key)}, "value": {value}, "time_ms": 1.0, "namespace": "mlperf::logging", '
                    '"event_type": "POINT_IN_TIME", "metadata": {"is_error": true, "is_warning": '
                    'false, "file": "x", "line_no": 1, "pid": 1, "tid": 1}}'
                ).encode("utf-8", "surrogatepass")
            )
        elif kind == 5:
            lines.append(draw(st.binary(max_size=60)))
        else:
            lines.append(
                MARKER
                + (
                    f'{{"key": {json.dumps(key)}, "value": {value}, "time_ms": 1.0, "namespace": "mlperf::logging"}}'
                ).encode("utf-8", "surrogatepass")
            )
    blob = b"\n".join(lines) + draw(st.sampled_from([b"\n", b"", b"\r\n"]))
    if draw(st.booleans()):
        blob = blob[: draw(st.integers(0, len(blob)))]
    return blob


# ----------------------------------------------------------------------------------------- summaries
SUMMARY_LABELS = [
    "Scenario",
    "Mode",
    "Result is",
    "Samples per second",
    "Tokens per second",
    "Completed samples per second",
    "Completed tokens per second",
    "Early stopping 90.0th percentile estimate",
    "Early stopping 99.0th percentile estimate",
    "SUT name",
]
summary_values = (
    st.sampled_from(
        [
            "VALID",
            "INVALID",
            "Offline",
            "Server",
            "SingleStream",
            "nan",
            "inf",
            "-inf",
            "Infinity",
            "1e999",
            "80868.5",
            "1.0439e+06",
            "",
            "9" * 400,
        ]
    )
    | st.text(max_size=20)
    | st.floats(allow_nan=True, allow_infinity=True).map(repr)
)


@st.composite
def summary_bytes(draw) -> bytes:
    lines = ["=" * 48, "MLPerf Results Summary", "=" * 48] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(0, 10))):
        label = draw(st.sampled_from(SUMMARY_LABELS) | st.text(max_size=15))
        lines.append(f"{draw(st.sampled_from(['', ' * ', '  ']))}{label} : {draw(summary_values)}")
    if draw(st.booleans()):
        lines.append(
            draw(
                st.sampled_from(
                    ["No errors encountered during test.", "2 ERRORS encountered. See detailed log.", "garbage"]
                )
            )
        )
    blob = "\n".join(lines).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        blob = blob[: draw(st.integers(0, len(blob)))]
    return blob


any_bytes = st.binary(max_size=400)
