"""What packaging demands of a LoadGen detail log: read by the one reader (subtool.mlperf.logs), refused with
the file, the line and an `import.*` rule when it is missing, foreign, damaged, cut short or of the wrong mode.

Packaging trusts the logs over the user: scenario, test mode, sample counts and settings come from here.
"""

from __future__ import annotations

from pathlib import Path

from subtool.errors import SubtoolError
from subtool.mlperf.json_strict import Unreadable
from subtool.mlperf.logs import ALL_KEYS, LoadgenLog, Missing, NotALog, read_loadgen_log, read_summary
from subtool.mlperf.round import RESULT_FIELDS
from subtool.mlperf.summary_match import disagreements
from subtool.package.text_files import read_text

# Keys LoadGen writes at the very end of a run; a performance log without them was cut short.
_END_KEYS_PERFORMANCE = ("result_validity",)


def read_detail_log(path: Path, *, expect_mode: str | None = None) -> LoadgenLog:
    """Every key of a detail log; SubtoolError for a missing, foreign, damaged, cut-short or wrong-mode log."""
    path = Path(path)
    log = read_loadgen_log(path, ALL_KEYS, follow_links=True)
    log.decode_all()  # every value now, so that a damaged one is refused here rather than read as None later
    _refuse_problems(log)
    for key in ("effective_scenario", "effective_test_mode"):
        if not log.has(key):
            raise SubtoolError(f"log has no '{key}' entry: it is cut short", path=path, rule="import.truncated_log")
    if log.mode == "performance":
        for key in _END_KEYS_PERFORMANCE:
            if not log.has(key):
                raise SubtoolError(
                    f"performance log has no '{key}' entry: the run did not finish or the log is cut short",
                    path=path,
                    rule="import.truncated_log",
                )
    if log.mode == "performance":
        _refuse_unusable_result(log)
    if expect_mode and log.mode != expect_mode:
        article = "an" if str(log.mode)[:1].lower() in "aeiou" else "a"
        raise SubtoolError(
            f"this is {article} {log.mode} log (effective_test_mode={log.get('effective_test_mode')}), "
            f"but it was given as the {expect_mode} log",
            path=path,
            rule="import.wrong_mode",
            hint="--perf takes the PerformanceOnly run, --acc the AccuracyOnly run",
        )
    return log


def _refuse_unusable_result(log: LoadgenLog) -> None:
    """The scenario's result, where the log has it, is a positive number (the checker fails -5 and 0, and LoadGen
    never writes text; a missing field is the checker's to judge, as older LoadGen versions named some
    differently)."""
    key = RESULT_FIELDS.get(str(log.scenario))
    if key is None or not log.has(key):
        return
    value = log.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return
    raise SubtoolError(
        f"the log's result {key} is {str(value)[:40]!r}: not a positive number",
        path=log.path,
        rule="import.bad_result",
        hint="copy the log again from the machine that ran it; never edit it",
    )


def check_summary_log(run_dir: Path, *, accuracy: bool = False, detail: LoadgenLog | None = None) -> None:
    """A run's mlperf_log_summary.txt (performance, accuracy or a compliance test's), when there is one, must be
    LoadGen's summary: an empty, binary or cut-short one would be copied into the tree, where the checker can only
    warn about it. A performance run's must tell the story of its `detail` log (scenario, verdict, result): one of
    another run, or edited, was laid out and failed `check` (summary.mismatch). An accuracy run's summary has no
    results (only LoadGen's warnings and errors): it must be text."""
    path = Path(run_dir) / "mlperf_log_summary.txt"
    if not path.is_file():
        return
    if accuracy:
        read_text(path, "LoadGen summary log", "import.summary_unreadable")
        return
    summary = read_summary(path, follow_links=True)  # as the detail log beside it is read
    hint = "copy mlperf_log_summary.txt again from the run directory (LoadGen writes it beside the detail log)"
    if summary.problem:
        raise SubtoolError(
            f"LoadGen summary log {summary.problem}", path=path, rule="import.summary_unreadable", hint=hint
        )
    if detail is None:
        return
    scenario = str(detail.scenario)
    for said in disagreements(summary, detail, scenario, RESULT_FIELDS.get(scenario)):
        if said.kind == "mismatch":
            raise SubtoolError(
                f"LoadGen summary log disagrees with the detail log beside it: {said.message}",
                path=path,
                rule="import.summary_mismatch",
                hint=hint + "; never edit it",
            )


def _refuse_problems(log: LoadgenLog) -> None:
    if not log.problems and not log.non_finite:
        return
    problem = log.problems[0] if log.problems else None
    if isinstance(problem, Missing):
        raise SubtoolError(
            "LoadGen detail log is missing",
            path=log.path,
            rule="import.missing_log",
            hint="each performance/accuracy directory needs mlperf_log_detail.txt and "
            "mlperf_log_summary.txt as LoadGen wrote them",
        )
    if isinstance(problem, NotALog) and problem != "is empty":
        raise SubtoolError(f"LoadGen detail log {problem}", path=log.path, rule="import.not_loadgen_log")
    if isinstance(problem, Unreadable):  # a FIFO, /dev/zero, 4 GiB
        raise SubtoolError(
            f"LoadGen detail log {problem}",
            path=log.path,
            rule="import.unreadable_log",
            hint="give the mlperf_log_detail.txt LoadGen wrote: a regular file of a few MB",
        )
    if problem is None:  # only values that are not finite numbers
        raise SubtoolError(
            f"LoadGen detail log holds values that are not finite numbers: {log.non_finite_text()}",
            path=log.path,
            rule="import.not_finite",
            hint="copy the log again from the machine that ran it",
        )
    raise SubtoolError(
        f"LoadGen detail log: {problem}",
        path=log.path,
        rule="import.truncated_log",
        hint="copy the log again from the machine that ran it",
    )
