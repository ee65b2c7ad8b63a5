"""Whether a tree holds DEMO or short-run results, and how publishing says so.

The marks are read from what `subtool package` writes into the tree, never from anything outside it: the
LoadGen detail log's effective_min_duration_ms (below the official 600 s is a short run, the checker's
perf.min_duration), the result README's run-style line, and the DEMO marks of the system description
(system_name "(DEMO)", hw/sw notes starting with DEMO, a system folder named `…-demo`) and of the READMEs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from subtool.errors import EXIT_USAGE, SubtoolError
from subtool.mlperf.logs import read_file, read_json_object, read_loadgen_log
from subtool.mlperf.round import MIN_DURATION_MS

_README_LIMIT = 1 << 20
_DEMO_TEXT = re.compile(rb"\*\*DEMO\*\*")
_SHORT_TEXT = re.compile(rb"Run style: short")
MESSAGE_PREFIX = "Not submittable"
_MESSAGE_LINE = re.compile(rf"^{MESSAGE_PREFIX} \((?P<why>[^)]*)\): (?P<result>\S.*)$")


@dataclass
class Marks:
    demo: set[str] = field(default_factory=set)  # result ids (division/submitter/results/system/model/scenario)
    short: set[str] = field(default_factory=set)
    reasons: dict[str, str] = field(default_factory=dict)  # result id → why it is short (first found)

    def __bool__(self) -> bool:
        return bool(self.demo or self.short)

    @property
    def label(self) -> str:
        return " / ".join(w for w, on in (("DEMO", self.demo), ("short run", self.short)) if on)

    @property
    def results(self) -> list[str]:
        return sorted(self.demo | self.short)

    def why(self, result: str) -> str:
        return ", ".join(w for w, on in (("DEMO", result in self.demo), ("short run", result in self.short)) if on)

    def merge(self, other: Marks, keep: set[str]) -> Marks:
        """These marks plus `other`'s for the results in `keep`."""
        return Marks(
            self.demo | (other.demo & keep),
            self.short | (other.short & keep),
            {**{k: v for k, v in other.reasons.items() if k in keep}, **self.reasons},
        )


def read_marks(tree: Path, results: list[tuple[str, str, str, str, str]]) -> Marks:
    marks = Marks()
    for division, submitter, system, model, scenario in results:
        rid = f"{division}/{submitter}/results/{system}/{model}/{scenario}"
        folder = tree / rid
        reason = _short_reason(folder)
        if reason:
            marks.short.add(rid)
            marks.reasons[rid] = reason
        if _system_is_demo(tree / division / submitter, system) or _says(folder / "README.md", _DEMO_TEXT):
            marks.demo.add(rid)
    return marks


def refuse_short_ahead(*, demo: bool, run_style: str, min_duration_ms: int | None) -> None:
    """`subtool all --fork` without --allow-short: a run that will be DEMO or short is refused before it starts,
    as publish would refuse its tree, but only after the run, package, check and pack stages."""
    short = min_duration_ms is not None and min_duration_ms < MIN_DURATION_MS
    why = [
        w
        for w, on in (
            ("DEMO (the embedded demo)", demo),
            ("a short run (--run-style short, the default)", run_style == "short"),
            (f"a short run (--min-duration-ms {min_duration_ms} < {MIN_DURATION_MS})", short),
        )
        if on
    ]
    if why:
        raise SubtoolError(
            f"--fork: this run will be {' and '.join(why)}, which publish refuses (not submittable)",
            rule="publish.short_run",
            exit_code=EXIT_USAGE,
            hint="pass --allow-short to publish it marked as such, or leave --fork out"
            + ("" if demo else ", or run with --run-style valid"),
        )


def _short_reason(folder: Path) -> str | None:
    for log_path in sorted(folder.glob("performance/run_*/mlperf_log_detail.txt")):
        found = read_loadgen_log(log_path).get("effective_min_duration_ms")
        if isinstance(found, (int, float)) and not isinstance(found, bool) and found < MIN_DURATION_MS:
            return f"min_duration {found:g} ms < {MIN_DURATION_MS} ms"
    if _says(folder / "README.md", _SHORT_TEXT):
        return "its README says short run"
    return None


def _system_is_demo(submitter_dir: Path, system: str) -> bool:
    if system.lower().endswith("-demo"):
        return True
    try:
        data, _problem = read_json_object(submitter_dir / "systems" / f"{system}.json")
    except RecursionError:  # JSON nested deeper than Python's parser goes: not a description
        return False
    if data is None:
        return False
    if "(DEMO)" in str(data.get("system_name", "")).upper():
        return True
    return any(str(data.get(k, "")).lstrip().upper().startswith("DEMO") for k in ("hw_notes", "sw_notes"))


def _says(path: Path, pattern: re.Pattern[bytes]) -> bool:
    try:
        return bool(pattern.search(read_file(path, _README_LIMIT)))
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------- words
def title_with(title: str, marks: Marks) -> str:
    tag = f"[{marks.label}]"
    return title if not marks or title.startswith(tag) else f"{tag} {title}"


def body_with(body: str, marks: Marks) -> str:
    if not marks:
        return body
    lines = [
        f"> **{marks.label}: not submittable.** Published with `--allow-short`; these results are a "
        "demonstration or a short run, not an MLPerf result:",
        ">",
    ]
    lines += [
        f"> - `{r}` ({marks.why(r)}{': ' + marks.reasons[r] if r in marks.reasons else ''})" for r in marks.results
    ]
    return "\n".join(lines) + "\n\n" + body


def message_with(message: str, marks: Marks) -> str:
    """The commit message with one line per marked result (read back by marks_from_message)."""
    if not marks:
        return message
    head, _, rest = message.partition("\n")
    lines = [f"{MESSAGE_PREFIX} ({marks.why(r)}): {r}" for r in marks.results]
    return f"{title_with(head, marks)}\n" + rest.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"


def marks_from_message(message: str) -> Marks:
    marks = Marks()
    for line in message.splitlines():
        m = _MESSAGE_LINE.match(line.strip())
        if m:
            if "DEMO" in m["why"]:
                marks.demo.add(m["result"])
            if "short" in m["why"]:
                marks.short.add(m["result"])
    return marks
