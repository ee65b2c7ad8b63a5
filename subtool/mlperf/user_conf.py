"""user.conf as LoadGen reads it, and what LoadGen would do with each line without a word.

LoadGen's parser (TestSettings::FromConfig) splits each line on whitespace into `key = value`: a `#` token ends
the line unless it is where a value belongs; every token after the `=` must be a whole C number (strtoul or
strtod: `nan` and `inf` pass), the last one wins. It then looks each setting up as `model.scenario.setting`, with
`*` for either part. So LoadGen itself rejects only a line whose second token is not `=` or whose value is not a
number; a key written `key=value` without spaces, a key with no value, a misspelt setting, a scenario that does
not exist, a non-finite or negative value, or a file with no setting for the run's model and scenario all pass
LoadGen and change nothing. `check_user_conf` refuses each of them, naming the line.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.mlperf.logs import describe_os_error, read_bounded

LIMIT_BYTES = 1 << 20  # a user.conf is a few lines

# the settings LoadGen looks up (loadgen/test_settings_internal.cc, FromConfig)
SETTINGS = frozenset(
    {
        "accuracy_log_probability",
        "accuracy_log_rng_seed",
        "accuracy_log_sampling_target",
        "accuracy_sample_count_override",
        "coalesce_queries",
        "infer_token_latencies",
        "max_async_queries",
        "max_duration",
        "max_query_count",
        "min_duration",
        "min_query_count",
        "mode",
        "performance_issue_same",
        "performance_issue_same_index",
        "performance_issue_unique",
        "performance_sample_count_override",
        "print_timestamps",
        "qsl_rng_seed",
        "sample_concatenate_permutation",
        "sample_index_rng_seed",
        "samples_per_query",
        "schedule_rng_seed",
        "target_latency",
        "target_latency_percentile",
        "target_qps",
        "test05",
        "test05_qsl_rng_seed",
        "test05_sample_index_rng_seed",
        "test05_schedule_rng_seed",
        "token_latency_scaling_factor",
        "tpot_latency",
        "ttft_latency",
        "use_token_latencies",
    }
)
SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")
# LoadGen lays out a run's whole schedule before it starts: target_qps x min_duration samples (Offline's one query)
# or queries (Server), at least min_query_count; 10 minutes at the largest target_qps is 6 x 10^9. Past these a
# run allocates more than a machine holds (1e15 queries/s: std::bad_alloc, then a crash) or never ends.
MOST_SCHEDULED = 6e9
DEFAULT_MIN_DURATION_MS = 600_000
MOST = {
    "target_qps": 1e7,  # the fastest published systems serve ~10^6 samples/s
    "target_latency": 86_400_000,  # ms: a day
    "min_duration": 604_800_000,  # ms: a week
    "max_duration": 604_800_000,
    "min_query_count": MOST_SCHEDULED,
    "samples_per_query": MOST_SCHEDULED,
    "performance_sample_count_override": MOST_SCHEDULED,
    "accuracy_sample_count_override": MOST_SCHEDULED,
    "ttft_latency": 86_400e9,  # ns: a day
    "tpot_latency": 86_400e9,
}
# and the smallest: LoadGen divides by these (0 ran a machine out of memory in std::bad_alloc), and a Server run
# paced slower than one query a 100 s never ends
LEAST = {"target_qps": 0.01, "target_latency": 0.001}  # queries/s; ms

_C_SPACE = re.compile(r"[ \t\n\v\f\r]+")  # C's isspace in the C locale
# what C's strtoul(s, &end, 0) and strtod(s, &end) consume whole
_STRTOUL = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_STRTOD = re.compile(
    r"[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)([pP][+-]?\d+)?"
    r"|nan(\([0-9A-Za-z_]*\))?|inf(inity)?)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Setting:
    line: int
    model: str
    scenario: str
    name: str
    value: str


@dataclass(frozen=True)
class Problem:
    line: int  # 0: the file as a whole
    message: str


def _number(token: str) -> float | None:
    """The value LoadGen would read from `token`, or None where LoadGen refuses it."""
    if _STRTOUL.fullmatch(token):
        return float(int(token, 0) if not re.fullmatch(r"[+-]?0[0-7]+", token) else int(token, 8))
    if _STRTOD.fullmatch(token):
        low = token.lower().lstrip("+-")
        if low.startswith("nan"):
            return math.nan
        if low.startswith("inf"):
            return -math.inf if token.startswith("-") else math.inf
        return float.fromhex(token) if "x" in low else float(token)
    return None


def _line(number: int, raw: str) -> tuple[Setting | None, Problem | None]:
    """One line the way LoadGen tokenizes it: (the setting it makes, or what is wrong with it). Its `>>` splits at
    C's isspace only: a no-break space or U+2028 is part of a token there, not a separator."""
    tokens = [t for t in _C_SPACE.sub(" ", raw).split(" ") if t]
    odd = next((c for c in raw if c.isspace() and not _C_SPACE.match(c)), None)
    if odd is not None and tokens and tokens[0] != "#":
        return None, Problem(number, f"holds U+{ord(odd):04X}, a space LoadGen reads as part of a word: write ' '")
    if not tokens or tokens[0] == "#":
        return None, None
    key = tokens[0]
    if len(tokens) == 1 or tokens[1] == "#":
        glued = "=" in key
        why = "key=value needs spaces around '=' (LoadGen reads it as a key)" if glued else "a key with no value"
        return None, Problem(number, f"{why}: LoadGen ignores the line")
    if tokens[1] != "=":
        return None, Problem(number, "expected 'key = value': LoadGen refuses the file")
    values = tokens[2:]
    if not values:
        return None, Problem(number, "no value after '=': LoadGen ignores the line")
    for token in values:
        if _number(token) is None:
            return None, Problem(number, f"value {token!r} is not a number: LoadGen refuses the file")
    parts = key.rsplit(".", 2)
    if len(parts) != 3:
        return None, Problem(number, f"{key!r} is not model.scenario.setting: LoadGen never reads it")
    return Setting(number, parts[0], parts[1], parts[2], values[-1]), None


def _meaning(setting: Setting) -> str | None:
    """Why LoadGen would take this setting without a word and do nothing (or something absurd) with it."""
    if setting.name not in SETTINGS:
        near = difflib.get_close_matches(setting.name, sorted(SETTINGS), n=1, cutoff=0.6)
        guess = f"; did you mean {near[0]}?" if near else ""
        return f"LoadGen has no setting {setting.name!r}{guess}"
    if setting.scenario not in (*SCENARIOS, "*"):
        return f"{setting.scenario!r} is no LoadGen scenario ({', '.join(SCENARIOS)} or *)"
    value = _number(setting.value)
    if value is None or not math.isfinite(value):
        return f"{setting.name} = {setting.value} is not a finite number"
    if value < 0:
        return f"{setting.name} = {setting.value} is negative"
    most = MOST.get(setting.name)
    if most is not None and value > most:
        return f"{setting.name} = {setting.value} is past what a run can use (at most {most:g})"
    least = LEAST.get(setting.name)
    if least is not None and value < least:
        return f"{setting.name} = {setting.value} is below what a run can use (at least {least:g})"
    return None


def _schedule_problem(mine: list[Setting]) -> Problem | None:
    """target_qps over min_duration (mlperf.conf's 10 minutes when the file leaves it) past what LoadGen can lay out."""
    found = {s.name: s for s in mine}  # the later line wins, as in LoadGen (a model's own over `*` aside)
    qps = found.get("target_qps")
    if qps is None:
        return None
    duration = found.get("min_duration")
    seconds = (_number(duration.value) if duration else DEFAULT_MIN_DURATION_MS) / 1000
    scheduled = _number(qps.value) * seconds
    if scheduled <= MOST_SCHEDULED:
        return None
    return Problem(
        qps.line,
        f"target_qps = {qps.value} over {seconds:g} s asks LoadGen to schedule {scheduled:.3g} samples at once "
        f"(at most {MOST_SCHEDULED:g}): lower one of them",
    )


def read_settings(text: str) -> tuple[list[Setting], list[Problem]]:
    """A conf file's lines as LoadGen tokenizes them: the settings they make, and each line that makes none
    (LoadGen refuses it or skips it), comments and blank lines aside. What a setting means is not judged."""
    settings, problems = [], []
    for number, raw in enumerate(text.split("\n"), 1):  # getline: only \n ends a line
        setting, problem = _line(number, raw)
        if problem is not None:
            problems.append(problem)
        elif setting is not None:
            settings.append(setting)
    return settings, problems


def parse_user_conf(text: str) -> tuple[list[Setting], list[Problem]]:
    """read_settings, and a problem for each setting LoadGen would take and do nothing with (see _meaning)."""
    settings, problems = read_settings(text)
    kept = []
    for setting in settings:
        why = _meaning(setting)
        if why:
            problems.append(Problem(setting.line, why))
        else:
            kept.append(setting)
    problems.sort(key=lambda p: p.line)
    return kept, problems


def check_user_conf(path: Path, loadgen_model: str, scenario: str) -> list[Setting]:
    """The settings of the user.conf at `path` that apply to `loadgen_model` in `scenario`; SubtoolError
    (run.user_conf, naming the file and the line) for the first line LoadGen would refuse or silently ignore,
    and for a file that sets nothing for this run."""
    try:
        raw = read_bounded(path, LIMIT_BYTES, follow_links=True)
    except OSError as exc:
        raise SubtoolError(f"user.conf {describe_os_error(exc)}", path=path, rule="run.user_conf") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SubtoolError("is not UTF-8 text: not a user.conf", path=path, rule="run.user_conf") from None
    settings, problems = parse_user_conf(text)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more lines)" if len(problems) > 1 else ""
        raise SubtoolError(f"line {first.line}: {first.message}{more}", path=path, rule="run.user_conf")
    mine = [s for s in settings if s.model in (loadgen_model, "*") and s.scenario in (scenario, "*")]
    problem = _schedule_problem(mine)
    if problem is not None:
        raise SubtoolError(f"line {problem.line}: {problem.message}", path=path, rule="run.user_conf")
    if not mine:
        whose = f"{len(settings)} settings, none" if settings else "no setting at all, so nothing"
        raise SubtoolError(
            f"holds {whose} for {loadgen_model}.{scenario}: LoadGen would run on its defaults",
            path=path,
            rule="run.user_conf",
            hint=f"set e.g. {loadgen_model}.{scenario}.target_qps = N, or leave --user-conf out and let subtool "
            "write one",
        )
    return mine
