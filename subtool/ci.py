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

from subtool.checker.api import Finding
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
    kind: str = "dir"  # what HEAD holds there: dir, link, file, submodule, or absent

    @property
    def rel(self) -> str:
        return f"{self.division}/{self.submitter}"


@dataclass
class ChangeSet:
    merge_base: str
    head: str
    submitters: list[ChangedSubmitter]
    other_paths: list[str]  # changed paths outside any submitter directory
    findings: list[Finding] = field(default_factory=list)  # what ci itself refuses (links, submodules, …)


@dataclass
class CiOutcome:
    changes: ChangeSet
    reports: dict[str, Any] = field(default_factory=dict)  # submitter name → CheckReport
    markdown: str = ""
    annotations: list[str] = field(default_factory=list)
    own: list[Finding] = field(default_factory=list)  # ci's findings after the check (a submitter with no result)

    @property
    def findings(self) -> list[Any]:
        return [*self.changes.findings, *self.own, *(f for rep in self.reports.values() for f in rep.findings)]

    @property
    def errors(self) -> int:
        return sum(f.severity == "error" for f in self.findings)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_CHECK_FAILED

    def to_dict(self) -> dict:
        return {
            "schema": "subtool.ci/1",
            "ok": self.ok,
            "merge_base": self.changes.merge_base,
            "head": self.changes.head,
            "checked": [s.rel for s in self.changes.submitters if s.kind == "dir"],
            "removed": [s.rel for s in self.changes.submitters if not s.exists],
            "other_paths": self.changes.other_paths,
            "results": [r.to_dict() for rep in self.reports.values() for r in rep.results],
            "findings": [f.to_dict() for f in self.findings],
        }


# --------------------------------------------------------------------------------------------- changes
_KINDS = {"040000": "dir", "120000": "link", "160000": "submodule", "100644": "file", "100755": "file"}


def _git(checkout: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True)


def changed_submitters(checkout: Path, base_ref: str) -> ChangeSet:
    """The submitter directories that differ between the merge base of `base_ref` and HEAD.

    What changed and what HEAD holds come from git, never from the files on disk: a partial checkout cannot make
    a submitter look removed, and a link or a submodule where a submitter folder belongs is a finding."""
    checkout = Path(checkout)
    _require_worktree_root(checkout)
    merge_base, head = _resolve_base(checkout, base_ref)
    changed = _changed_paths(checkout, merge_base)
    found: dict[tuple[str, str], None] = {}
    divisions: set[str] = set()
    other: list[str] = []
    findings: list[Finding] = []
    for path, mode in changed:
        parts = path.split("/")
        if parts[0] not in DIVISIONS:
            other.append(path)
            continue
        if len(parts) == 1:
            divisions.add(path)
            continue
        found[(parts[0], parts[1])] = None
        if mode == "160000" and len(parts) > 2:
            findings.append(
                _own("ci.submodule", path, "is a git submodule: its files are not part of the pull request")
            )
    kinds = _head_kinds(checkout, [*divisions, *(f"{d}/{s}" for d, s in found)])
    for division in sorted(divisions):
        if kinds.get(division, "absent") not in ("dir", "absent"):
            findings.append(_own("ci.not_a_folder", division, f"is a {kinds[division]}, not a division folder"))
    submitters = [
        ChangedSubmitter(d, s, kinds.get(f"{d}/{s}", "absent") != "absent", kinds.get(f"{d}/{s}", "absent"))
        for d, s in sorted(found)
    ]
    for sub in submitters:
        if sub.kind not in ("dir", "absent"):
            findings.append(_own("ci.not_a_folder", sub.rel, f"is a {sub.kind}, not a submitter folder"))
        elif sub.kind == "dir":
            _require_on_disk(checkout, sub.rel)
    return ChangeSet(merge_base, head, submitters, other, findings)


def _own(rule: str, path: str, message: str) -> Finding:
    hints = {
        "ci.not_a_folder": "put the results themselves in the pull request: a folder of files, no link",
        "ci.submodule": "commit the files themselves instead of a submodule",
        "ci.no_results": "add the results under results/<system>/<model>/<scenario>/, or remove the folder",
    }
    return Finding(rule, "error", path, f"{path}: {message}", hints[rule], None)


def _require_worktree_root(checkout: Path) -> None:
    top = _git(checkout, "rev-parse", "--show-toplevel") if checkout.is_dir() else None
    if top is None or top.returncode != 0:
        raise SubtoolError(
            "not a git checkout (or a .git folder, not its work tree)",
            path=checkout,
            rule="ci.checkout",
            exit_code=EXIT_USAGE,
            hint="run subtool ci in (or on) the results repository checked out at the PR's head",
        )
    root = Path(top.stdout.decode("utf-8", "surrogateescape").strip())
    if root.resolve() != checkout.resolve():
        raise SubtoolError(
            f"is inside the repository at {root}, not its root: the divisions are looked for at the root",
            path=checkout,
            rule="ci.checkout",
            exit_code=EXIT_USAGE,
            hint=f"pass the repository's root ({root})",
        )


def _resolve_base(checkout: Path, base_ref: str) -> tuple[str, str]:
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
    if merge_base == head:
        raise SubtoolError(
            f"the base ref '{base_ref}' is HEAD or ahead of it: the pull request would compare with itself",
            path=checkout,
            rule="ci.base_ref",
            exit_code=EXIT_USAGE,
            hint="pass the branch the pull request merges into (github.base_ref, e.g. origin/main), checked out at "
            "the PR's head or its merge commit",
        )
    return merge_base, head


def _changed_paths(checkout: Path, merge_base: str) -> list[tuple[str, str]]:
    """(path, mode at HEAD) of every path the pull request changes; a deleted path has mode 000000."""
    diff = _git(checkout, "diff", "--raw", "-z", "--no-renames", "--no-abbrev", merge_base, "HEAD")
    if diff.returncode != 0:
        raise SubtoolError(
            f"git diff failed: {diff.stderr.decode().strip()}", path=checkout, rule="ci.git", exit_code=EXIT_USAGE
        )
    fields = diff.stdout.split(b"\0")
    out = []
    for meta, path in zip(fields[0::2], fields[1::2]):  # ":old_mode new_mode old new status" then the path
        if meta.startswith(b":"):
            out.append((path.decode("utf-8", "surrogateescape"), meta[1:].split(b" ")[1].decode()))
    return out


def _head_kinds(checkout: Path, rels: list[str]) -> dict[str, str]:
    """What HEAD holds at each of `rels` (dir, link, submodule, file); a path HEAD lacks is not in the map."""
    kinds: dict[str, str] = {}
    for at in range(0, len(rels), 200):
        listed = _git(checkout, "ls-tree", "-z", "HEAD", "--", *rels[at : at + 200])
        for row in listed.stdout.split(b"\0"):
            meta, _, name = row.partition(b"\t")
            if meta:
                kinds[name.decode("utf-8", "surrogateescape")] = _KINDS.get(meta.split(b" ")[0].decode(), "file")
    return kinds


def _require_on_disk(checkout: Path, rel: str) -> None:
    here = checkout / rel
    if here.is_symlink() or not here.is_dir():
        raise SubtoolError(
            f"HEAD holds {rel}/ but the checkout does not: a sparse or partial checkout cannot be checked",
            path=here,
            rule="ci.checkout",
            exit_code=EXIT_USAGE,
            hint="check out the whole pull request (actions/checkout without sparse-checkout)",
        )


# ------------------------------------------------------------------------------------------------- run
def run_ci(opts: CiOptions, console: Any = None) -> CiOutcome:
    from subtool.checker.api import CheckOptions, check_tree

    check_version(opts.version)  # before git: a typo in --version is the user's first error to hear about
    changes = changed_submitters(opts.checkout, opts.base_ref)
    outcome = CiOutcome(changes)
    names = sorted({s.submitter for s in changes.submitters if s.kind == "dir"})
    for name in names:
        check_opts = CheckOptions(
            version=opts.version,
            submitter=name,
            waive=frozenset(opts.waive),
            skip_compliance=opts.skip_compliance,
            official=None,
        )
        outcome.reports[name] = _only_changed(check_tree(Path(opts.checkout), check_opts), changes)
    outcome.own = _without_results(outcome)
    outcome.markdown = render_markdown(outcome, opts)
    outcome.annotations = list(annotations(outcome.findings))
    if opts.summary is not None:
        _append_summary(opts.summary, outcome.markdown)
    if console is not None:
        _print_human(outcome, console)
    return outcome


def _without_results(outcome: CiOutcome) -> list[Finding]:
    """A changed submitter folder that holds no result passes nothing: the checker says so for the whole tree
    (at '.'), which the cut to the changed folders drops, so ci says it per folder."""
    found = []
    for sub in outcome.changes.submitters:
        rep = outcome.reports.get(sub.submitter)
        if sub.kind == "dir" and rep is not None and not any(r.result.startswith(sub.rel + "/") for r in rep.results):
            found.append(_own("ci.no_results", sub.rel, "holds no result: nothing in it was checked"))
    return found


def _only_changed(report: Any, changes: ChangeSet) -> Any:
    """The report cut to the submitter directories the pull request changes.

    The checker looks at the whole checkout: the repository's own folders (`.git`, `.github`, tools, docs) are
    not divisions, and a same-named submitter in another division is not part of this pull request.
    """
    dirs = [s.rel for s in changes.submitters if s.kind == "dir"]

    def ours(path: str) -> bool:
        return any(path == d or path.startswith(d + "/") for d in dirs)

    return dataclasses.replace(
        report,
        findings=[f for f in report.findings if ours(f.path)],
        results=[r for r in report.results if ours(r.result)],
    )


# Characters that end a line for GitHub's runner or for a terminal, or that a terminal interprets; the
# direction overrides that make a name read as another; and the bytes of a name that is not UTF-8.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ud800-\udfff]")


def _spell(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """Text from the pull request (folder names, messages quoting them) made safe for a log line: no control
    character survives, so no name can start a line of its own and be read as a workflow command, and the text
    always encodes as UTF-8."""
    return _UNPRINTABLE.sub(lambda m: _spell(m.group()), str(text))


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
    if not changes.submitters and not outcome.findings:
        say("no submitter directory changed; nothing to check")
        return
    for sub in changes.submitters:
        if not sub.exists:
            say(f"{sub.rel}: removed by this pull request (not checked)")
    for f in [*changes.findings, *outcome.own]:
        say(f"  {f.severity}: {f.message} [{f.rule}]")
    for rep in outcome.reports.values():
        for res in rep.results:
            verdict = "PASS" if res.passed else "FAIL"
            say(f"{verdict} {res.result}" + (f"  waived: {', '.join(res.waived)}" if res.waived else ""))
        for f in rep.findings:
            if f.severity in ("error", "warning"):
                say(f"  {f.severity}: {f.path}: {f.message} [{f.rule}]")
    say(f"{outcome.errors} error(s) in {len(outcome.reports)} submitter(s)")


# ---------------------------------------------------------------------------------------------- output
TABLE_BYTES = 400_000  # each table's share of the step summary, which GitHub caps at 1 MiB for all steps together
_MARKUP = re.compile(r"([`*_\[\]<>&!~])")


def _cell(text: object) -> str:
    """One table cell: on one line, its pipes escaped, no control character."""
    text = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ").strip()
    return printable(text)


def _prose(text: object) -> str:
    """A cell of text from the pull request that Markdown must show as it is: no link, tag, emphasis or entity."""
    return _MARKUP.sub(r"\\\1", _cell(text))


def _code(text: object) -> str:
    """A code span that no backtick in the text can end early (CommonMark: a longer run of backticks fences it)."""
    body = _cell(text)
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {body} {fence}" if longest else f"`{body}`"


def _value(res: Any) -> str:
    if res.value is None:
        return "-"
    return f"{res.value:.6g} {res.units}".strip()


def _within_budget(rows: list[list[str]], what: str) -> list[list[str]]:
    """The first rows up to MAX_TABLE_ROWS and TABLE_BYTES, then one row that says how many were left out."""
    kept, size = [], 0
    for row in rows[:MAX_TABLE_ROWS]:
        size += sum(len(cell.encode("utf-8")) + 3 for cell in row)
        if size > TABLE_BYTES:
            break
        kept.append(row)
    if len(kept) < len(rows):
        kept.append([f"… {len(rows) - len(kept)} more {what} (the JSON report, --json, lists all)"])
    return kept


def render_markdown(outcome: CiOutcome, opts: CiOptions) -> str:
    changes = outcome.changes
    lines = [f"## MLPerf results check ({_prose(opts.version)})", ""]
    if not changes.submitters and not outcome.findings:
        lines += ["No submitter directory changed in this pull request; nothing to check.", ""]
        return "\n".join(lines) + "\n"
    checked = [s for s in changes.submitters if s.kind == "dir"]
    removed = [s for s in changes.submitters if not s.exists]
    status = "**passed**" if outcome.ok else f"**failed** with {outcome.errors} error(s)"
    lines.append(
        f"Checked {len(checked)} submitter director{'y' if len(checked) == 1 else 'ies'} changed against "
        f"{_code(opts.base_ref)} (merge base `{changes.merge_base[:12]}`): {status}."
    )
    if removed:
        lines.append(f"Removed (not checked): {', '.join(_code(s.rel) for s in removed)}.")
    if opts.waive:
        lines.append(f"Waived rules: {', '.join(_code(r) for r in sorted(opts.waive))}.")
    lines.append("")
    lines += _results_table(outcome, bool(checked))
    lines += _findings_table(outcome)
    if changes.other_paths:
        lines.append(f"{len(changes.other_paths)} changed path(s) outside submitter directories were not checked.")
        lines.append("")
    return "\n".join(lines) + "\n"


def _results_table(outcome: CiOutcome, checked: bool) -> list[str]:
    results = [r for rep in outcome.reports.values() for r in rep.results]
    if not results:
        return ["No result directory found under the changed submitters.", ""] if checked else []
    rows = [
        [
            _code(res.result),
            "✅ pass" if res.passed else "❌ fail",
            _prose(_value(res)),
            _prose(res.accuracy or "-"),
            _prose(res.run_style),
            _prose(", ".join(res.waived) or "-"),
            _prose(", ".join(res.failed) or "-"),
        ]
        for res in results
    ]
    header = ["Result", "Verdict", "Performance", "Accuracy", "Run", "Waived", "Failing rules"]
    return [*markdown_table(header, _within_budget(rows, "results")), ""]


def _findings_table(outcome: CiOutcome) -> list[str]:
    shown = [f for f in outcome.findings if f.severity in ("error", "warning")]
    if not shown:
        return []
    rows = [[f.severity, _code(f.rule), _code(f.path), _prose(f.message), _prose(f.hint or "")] for f in shown]
    return [*markdown_table(["Severity", "Rule", "Path", "Message", "Fix"], _within_budget(rows, "findings")), ""]


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
