"""`subtool ci`: the check a results repository runs on each pull request.

Given a checkout of the pull request and its base ref, find the `<division>/<submitter>/` directories the
pull request changes, run the checker on those submitters only, append a Markdown report to
`$GITHUB_STEP_SUMMARY`, print GitHub error/warning annotations, and exit 1 when there are errors.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subtool.errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE, SubtoolError
from subtool.md_table import markdown_table
from subtool.mlperf.layout import DIVISIONS
from subtool.mlperf.rounds import check_version

MAX_TABLE_ROWS = 300  # the step summary is capped at 1 MiB; the JSON report carries everything


@dataclass
class CiOptions:
    checkout: Path
    base_ref: str
    version: str = "v6.1"
    waive: frozenset[str] = frozenset()
    skip_compliance: bool = False
    summary: Path | None = None  # Markdown appended here (the CLI passes $GITHUB_STEP_SUMMARY)


@dataclass(frozen=True)
class ChangedSubmitter:
    division: str
    submitter: str
    exists: bool  # False when the pull request deletes the directory

    @property
    def rel(self) -> str:
        return f"{self.division}/{self.submitter}"


@dataclass
class ChangeSet:
    merge_base: str
    head: str
    submitters: list[ChangedSubmitter]
    other_paths: list[str]  # changed paths outside any submitter directory


@dataclass
class CiOutcome:
    changes: ChangeSet
    reports: dict[str, Any] = field(default_factory=dict)  # submitter name → CheckReport
    markdown: str = ""
    annotations: list[str] = field(default_factory=list)

    @property
    def findings(self) -> list[Any]:
        return [f for rep in self.reports.values() for f in rep.findings]

    @property
    def errors(self) -> int:
        return sum(f.severity == "error" for f in self.findings)

    @property
    def ok(self) -> bool:
        return all(rep.ok for rep in self.reports.values())

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_CHECK_FAILED

    def to_dict(self) -> dict:
        return {
            "schema": "subtool.ci/1",
            "ok": self.ok,
            "merge_base": self.changes.merge_base,
            "head": self.changes.head,
            "checked": [s.rel for s in self.changes.submitters if s.exists],
            "removed": [s.rel for s in self.changes.submitters if not s.exists],
            "other_paths": self.changes.other_paths,
            "results": [r.to_dict() for rep in self.reports.values() for r in rep.results],
            "findings": [f.to_dict() for f in self.findings],
        }


# --------------------------------------------------------------------------------------------- changes
def _git(checkout: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True)


def changed_submitters(checkout: Path, base_ref: str) -> ChangeSet:
    """The submitter directories that differ between the merge base of `base_ref` and HEAD."""
    checkout = Path(checkout)
    if not checkout.is_dir() or _git(checkout, "rev-parse", "--git-dir").returncode != 0:
        raise SubtoolError(
            "not a git checkout",
            path=checkout,
            rule="ci.checkout",
            exit_code=EXIT_USAGE,
            hint="run subtool ci in (or on) the results repository checked out at the PR's head",
        )
    if _git(checkout, "rev-parse", "--verify", "-q", f"{base_ref}^{{commit}}").returncode != 0:
        raise SubtoolError(
            f"the base ref '{base_ref}' is not in the checkout",
            path=checkout,
            rule="ci.base_ref",
            exit_code=EXIT_USAGE,
            hint="fetch it (actions/checkout with fetch-depth: 0), then pass e.g. origin/main",
        )
    head = _git(checkout, "rev-parse", "HEAD").stdout.decode().strip()
    base = _git(checkout, "merge-base", base_ref, "HEAD")
    if base.returncode != 0:
        raise SubtoolError(
            f"HEAD and '{base_ref}' share no history in this checkout",
            path=checkout,
            rule="ci.base_ref",
            exit_code=EXIT_USAGE,
            hint="the checkout is probably shallow: use actions/checkout with fetch-depth: 0",
        )
    merge_base = base.stdout.decode().strip()
    diff = _git(checkout, "diff", "--name-only", "-z", "--no-renames", merge_base, "HEAD")
    if diff.returncode != 0:
        raise SubtoolError(
            f"git diff failed: {diff.stderr.decode().strip()}", path=checkout, rule="ci.git", exit_code=EXIT_USAGE
        )
    paths = [p.decode("utf-8", "surrogateescape") for p in diff.stdout.split(b"\0") if p]
    found: dict[tuple[str, str], None] = {}
    other: list[str] = []
    for path in paths:
        parts = path.split("/")
        if len(parts) >= 3 and parts[0] in DIVISIONS:
            found[(parts[0], parts[1])] = None
        else:
            other.append(path)
    submitters = [ChangedSubmitter(div, sub, (checkout / div / sub).is_dir()) for div, sub in sorted(found)]
    return ChangeSet(merge_base, head, submitters, other)


# ------------------------------------------------------------------------------------------------- run
def run_ci(opts: CiOptions, console: Any = None) -> CiOutcome:
    from subtool.checker.api import CheckOptions, check_tree

    check_version(opts.version)  # before git: a typo in --version is the user's first error to hear about
    changes = changed_submitters(opts.checkout, opts.base_ref)
    outcome = CiOutcome(changes)
    names = sorted({s.submitter for s in changes.submitters if s.exists})
    for name in names:
        check_opts = CheckOptions(
            version=opts.version,
            submitter=name,
            waive=frozenset(opts.waive),
            skip_compliance=opts.skip_compliance,
            official=None,
        )
        outcome.reports[name] = _only_changed(check_tree(Path(opts.checkout), check_opts), changes)
    outcome.markdown = render_markdown(outcome, opts)
    outcome.annotations = list(annotations(outcome.findings))
    if opts.summary is not None:
        _append_summary(opts.summary, outcome.markdown)
    if console is not None:
        _print_human(outcome, console)
    return outcome


def _only_changed(report: Any, changes: ChangeSet) -> Any:
    """The report cut to the submitter directories the pull request changes.

    The checker looks at the whole checkout: the repository's own folders (`.git`, `.github`, tools, docs) are
    not divisions, and a same-named submitter in another division is not part of this pull request.
    """
    dirs = [s.rel for s in changes.submitters if s.exists]

    def ours(path: str) -> bool:
        return any(path == d or path.startswith(d + "/") for d in dirs)

    return dataclasses.replace(
        report,
        findings=[f for f in report.findings if ours(f.path)],
        results=[r for r in report.results if ours(r.result)],
    )


# Characters that end a line for GitHub's runner or for a terminal, or that a terminal interprets.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: object) -> str:
    """Text from the pull request (folder names, messages quoting them) made safe for a log line: no control
    character survives, so no name can start a line of its own and be read as a workflow command."""
    return _UNPRINTABLE.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", str(text)
    )


def _append_summary(path: Path, markdown: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:  # appended: other steps write to it as well
            fh.write(markdown)
    except OSError as exc:
        raise SubtoolError(
            f"cannot append the report to the step summary ({exc.strerror or exc})",
            path=path,
            rule="ci.summary",
            exit_code=EXIT_USAGE,
            hint="give --summary (or $GITHUB_STEP_SUMMARY) a writable file",
        ) from None


def _print_human(outcome: CiOutcome, console: Any) -> None:
    changes = outcome.changes
    say = lambda text: console.print(printable(text), markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    if not changes.submitters:
        say("no submitter directory changed; nothing to check")
        return
    for sub in changes.submitters:
        if not sub.exists:
            say(f"{sub.rel}: removed by this pull request (not checked)")
    for rep in outcome.reports.values():
        for res in rep.results:
            verdict = "PASS" if res.passed else "FAIL"
            say(f"{verdict} {res.result}" + (f"  waived: {', '.join(res.waived)}" if res.waived else ""))
        for f in rep.findings:
            if f.severity in ("error", "warning"):
                say(f"  {f.severity}: {f.path}: {f.message} [{f.rule}]")
    say(f"{outcome.errors} error(s) in {len(outcome.reports)} submitter(s)")


# ---------------------------------------------------------------------------------------------- output
def _cell(text: object) -> str:
    text = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ").strip()
    return printable(text)


def _value(res: Any) -> str:
    if res.value is None:
        return "-"
    return f"{res.value:.6g} {res.units}".strip()


def render_markdown(outcome: CiOutcome, opts: CiOptions) -> str:
    changes = outcome.changes
    lines = [f"## MLPerf results check ({_cell(opts.version)})", ""]
    if not changes.submitters:
        lines += ["No submitter directory changed in this pull request; nothing to check.", ""]
        return "\n".join(lines) + "\n"
    checked = [s for s in changes.submitters if s.exists]
    removed = [s for s in changes.submitters if not s.exists]
    status = "**passed**" if outcome.ok else f"**failed** with {outcome.errors} error(s)"
    lines.append(
        f"Checked {len(checked)} submitter director{'y' if len(checked) == 1 else 'ies'} changed against "
        f"`{_cell(opts.base_ref)}` (merge base `{changes.merge_base[:12]}`): {status}."
    )
    if removed:
        lines.append(f"Removed (not checked): {', '.join(f'`{_cell(s.rel)}`' for s in removed)}.")
    if opts.waive:
        lines.append(f"Waived rules: {', '.join(f'`{_cell(r)}`' for r in sorted(opts.waive))}.")
    lines.append("")
    results = [r for rep in outcome.reports.values() for r in rep.results]
    if results:
        rows = [
            [
                f"`{_cell(res.result)}`",
                "✅ pass" if res.passed else "❌ fail",
                _cell(_value(res)),
                _cell(res.accuracy or "-"),
                _cell(res.run_style),
                _cell(", ".join(res.waived) or "-"),
                _cell(", ".join(res.failed) or "-"),
            ]
            for res in results[:MAX_TABLE_ROWS]
        ]
        if len(results) > MAX_TABLE_ROWS:
            rows.append([f"… {len(results) - MAX_TABLE_ROWS} more results"])
        header = ["Result", "Verdict", "Performance", "Accuracy", "Run", "Waived", "Failing rules"]
        lines += markdown_table(header, rows)
        lines.append("")
    elif checked:
        lines += ["No result directory found under the changed submitters.", ""]
    shown = [f for f in outcome.findings if f.severity in ("error", "warning")]
    if shown:
        rows = [
            [f.severity, f"`{_cell(f.rule)}`", f"`{_cell(f.path)}`", _cell(f.message), _cell(f.hint or "")]
            for f in shown[:MAX_TABLE_ROWS]
        ]
        if len(shown) > MAX_TABLE_ROWS:
            rows.append([f"… {len(shown) - MAX_TABLE_ROWS} more"])
        lines += markdown_table(["Severity", "Rule", "Path", "Message", "Fix"], rows)
        lines.append("")
    if changes.other_paths:
        lines.append(f"{len(changes.other_paths)} changed path(s) outside submitter directories were not checked.")
        lines.append("")
    return "\n".join(lines) + "\n"


def _escape_data(text: str) -> str:
    """GitHub's escaping for a workflow command's message; other control characters are spelled out as well."""
    return printable(text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A"))


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotations(findings: Iterable[Any]) -> Iterable[str]:
    """GitHub workflow commands (`::error file=…,title=…::message`) for errors and warnings."""
    for f in findings:
        if f.severity not in ("error", "warning"):
            continue
        message = f.message + (f" — {f.hint}" if f.hint else "")
        yield (
            f"::{f.severity} file={_escape_property(f.path)},title={_escape_property(f.rule)}::{_escape_data(message)}"
        )
