"""Differential mode: run the official MLCommons checker on a copy of the tree and compare per-result verdicts.

The official checker is run from a checkout (`--official PATH`: the inference repository, its
tools/submission folder, or the submission_checker package folder) in a subprocess, on a copy of the tree
(some of its options write into the tree). Its per-result verdicts come from its closing "Results <log>" /
"NoResults <log>" lines; a traceback means it gave no verdict at all.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from subtool.errors import SubtoolError

_PERF_SUFFIX = "/performance/run_1/mlperf_log_detail.txt"
_RESULTS = re.compile(r"(?<!No)Results (\S+) (\S+)\s*$")
_NO_RESULTS = re.compile(r"NoResults (\S+)\s*$")
# Rules where subtool is stricter on purpose, and rules a user waives on purpose: explained differences.
STRICTER_RULES = frozenset(
    {
        "perf.result_invalid",
        "perf.loadgen_error",
        "summary.mismatch",
        "tree.symlink",
        "tree.bad_name",
        "value.not_finite",
    }
)


@dataclass
class OfficialDiff:
    command: list[str]
    returncode: int
    seconds: float
    crashed: bool
    crash: str  # last lines of the traceback when it crashed
    verdicts: dict[str, bool] = field(default_factory=dict)  # result id → official pass
    errors: dict[str, list[str]] = field(default_factory=dict)  # result id → official error lines
    disagreements: list[dict] = field(default_factory=list)
    summary_csv: str = ""  # its summary.csv, paths as given

    @property
    def agrees(self) -> bool:
        return not self.disagreements

    def to_dict(self) -> dict:
        return {
            "command": self.command,
            "returncode": self.returncode,
            "seconds": round(self.seconds, 3),
            "crashed": self.crashed,
            "crash": self.crash,
            "verdicts": self.verdicts,
            "errors": self.errors,
            "disagreements": self.disagreements,
        }


def locate_checker(path: Path) -> Path:
    """The folder to run `python -m submission_checker.main` from."""
    path = Path(path)
    for candidate in (path / "tools" / "submission", path, path.parent):
        if (candidate / "submission_checker" / "main.py").is_file():
            return candidate
    raise SubtoolError(
        "no official submission checker found here",
        path=path,
        rule="cli.official",
        hint="pass a checkout of github.com/mlcommons/inference (or its tools/submission folder)",
    )


def run_official(
    checkout: Path,
    tree: Path,
    version: str,
    *,
    submitter: str | None = None,
    skip_compliance: bool = False,
    timeout: float = 3600,
    python: str | None = None,
) -> OfficialDiff:
    """Run the official checker on a copy of `tree`; verdicts keyed by subtool result ids."""
    cwd = locate_checker(checkout)
    with tempfile.TemporaryDirectory(prefix="subtool-official-") as tmp:
        copy = Path(tmp) / "tree"
        shutil.copytree(tree, copy, symlinks=True)
        cmd = [
            python or sys.executable,
            "-m",
            "submission_checker.main",
            "--input",
            str(copy),
            "--version",
            version,
            "--csv",
            str(Path(tmp) / "summary.csv"),
        ]
        if submitter:
            cmd += ["--submitter", submitter]
        if skip_compliance:
            cmd.append("--skip_compliance")
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SubtoolError(
                f"the official checker did not finish within {timeout:.0f} s", path=cwd, rule="cli.official"
            ) from None
        except OSError as exc:
            raise SubtoolError(f"cannot run the official checker: {exc}", path=cwd, rule="cli.official") from None
        seconds = time.perf_counter() - start
        output = (proc.stdout or "") + "\n" + (proc.stderr or "")
        shown = ["python", "-m", "submission_checker.main", "--input", str(tree), *cmd[5:7]]
        diff = parse_official_output(output, str(copy), proc.returncode, seconds, shown)
        csv_path = Path(tmp) / "summary.csv"
        if csv_path.is_file():
            diff.summary_csv = csv_path.read_text(errors="replace").replace(str(copy), str(tree))
        return diff


def parse_official_output(output: str, root: str, returncode: int, seconds: float, command: list[str]) -> OfficialDiff:
    crashed = "Traceback (most recent call last)" in output
    crash = ""
    if crashed:
        tail = output[output.rindex("Traceback (most recent call last)") :].strip().splitlines()
        crash = "\n".join(tail[-3:])
    diff = OfficialDiff(command=command, returncode=returncode, seconds=seconds, crashed=crashed, crash=crash)
    prefix = root.rstrip("/") + "/"

    def result_id(log_path: str) -> str | None:
        if not log_path.startswith(prefix) or not log_path.endswith(_PERF_SUFFIX):
            return None
        return log_path[len(prefix) : -len(_PERF_SUFFIX)]

    for line in output.splitlines():
        m = _NO_RESULTS.search(line)
        if m and (rid := result_id(m.group(1))):
            diff.verdicts[rid] = False
            continue
        m = _RESULTS.search(line)
        if m and (rid := result_id(m.group(1))):
            diff.verdicts[rid] = True
            continue
        if "ERROR" in line and prefix in line:
            rel = line[line.index(prefix) + len(prefix) :]
            parts = rel.split("/")
            if len(parts) >= 6:
                rid = "/".join(parts[:6])
                message = line.split("ERROR", 1)[1].lstrip("]: ").replace(prefix, "")
                diff.errors.setdefault(rid, [])
                if len(diff.errors[rid]) < 8:
                    diff.errors[rid].append(message)
    return diff


def compare(report, diff: OfficialDiff) -> list[dict]:
    """Per-result disagreements, each with the reason when it is an intended one."""
    rows = []
    ours = {r.result: r for r in report.results}
    for rid, verdict in sorted(ours.items()):
        official = None if diff.crashed else diff.verdicts.get(rid)
        if official is not None and official == verdict.passed:
            continue
        if official is None:
            official_text = "crashed (no verdict)" if diff.crashed else "not reported"
        else:
            official_text = "pass" if official else "fail"
        explained = ""
        if diff.crashed or official is None:
            explained = "the official checker gave no verdict"
        elif verdict.passed and not official and verdict.waived:
            explained = f"waived by request: {', '.join(verdict.waived)}"
        elif not verdict.passed and official and set(verdict.failed) <= STRICTER_RULES:
            explained = f"subtool is stricter: {', '.join(verdict.failed)}"
        rows.append(
            {
                "result": rid,
                "subtool": "pass" if verdict.passed else "fail",
                "official": official_text,
                "subtool_failed_rules": verdict.failed,
                "official_errors": diff.errors.get(rid, []),
                "explained": explained,
            }
        )
    for rid, official in sorted(diff.verdicts.items()):
        if rid not in ours:
            rows.append(
                {
                    "result": rid,
                    "subtool": "not checked",
                    "official": "pass" if official else "fail",
                    "subtool_failed_rules": [],
                    "official_errors": diff.errors.get(rid, []),
                    "explained": "",
                }
            )
    return rows or _whole_tree(report, diff)


def _whole_tree(report, diff: OfficialDiff) -> list[dict]:
    """The two exit codes, where they differ though every result agrees (a tree with no result at all, a finding
    of the tree itself): "same verdict for every result" hid that one failed the tree and the other passed it."""
    ours, theirs = report.ok, diff.returncode == 0
    if ours == theirs or diff.crashed:
        return []
    return [
        {
            "result": "(the tree as a whole)",
            "subtool": "pass" if ours else "fail",
            "official": f"{'pass' if theirs else 'fail'} (exit {diff.returncode})",
            "subtool_failed_rules": sorted({f.rule for f in report.findings if f.severity == "error" and not f.result}),
            "official_errors": [],
            "explained": "",
        }
    ]


def diff_with_official(tree: Path, opts, report) -> OfficialDiff:
    diff = run_official(
        opts.official, tree, opts.version, submitter=opts.submitter, skip_compliance=opts.skip_compliance
    )
    diff.disagreements = compare(report, diff)
    return diff


def print_official_diff(diff: OfficialDiff, console) -> None:
    from subtool.errors import safe_markup as escape

    console.print(f"[bold]official checker[/] ({diff.seconds:.1f} s, exit {diff.returncode})", highlight=False)
    if diff.crashed:
        console.print(
            f"  [red]crashed with a traceback:[/] {escape(diff.crash.splitlines()[-1] if diff.crash else '')}",
            highlight=False,
        )
    if diff.agrees:
        console.print("  [green]same verdict for every result[/]", highlight=False)
        return
    for row in diff.disagreements:
        why = f"  ({escape(row['explained'])})" if row["explained"] else ""
        console.print(
            f"  [yellow]differs[/] {escape(row['result'])}: subtool {row['subtool']}, official {row['official']}{why}",
            highlight=False,
        )
        for message in row["official_errors"][:3]:
            console.print(f"      official: {escape(message)}", highlight=False)
