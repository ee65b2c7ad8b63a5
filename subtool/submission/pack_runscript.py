"""`<name>.run` (the commands, as a shell script someone can re-run) and `<name>.tstamps` (`date -u` lines).

The competitions ask teams to write `date -u` into the .tstamps file just before the benchmark run and to append
it just after; the .run script does the same around each run command, so re-running it records a fresh pair.
"""

from __future__ import annotations

import platform
import shlex
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from subtool import __version__
from subtool.submission.pack_inputs import RunInfo, TimeWindow, TreeInfo, is_secret


@dataclass
class PackCommand:
    """The `subtool pack` invocation that made the artifacts, rebuilt from its options (paths as given)."""

    tree: Path
    out: Path
    name: str
    runs: list[Path]
    version: str
    waive: tuple[str, ...]

    def argv(self) -> list[str]:
        args = ["subtool", "pack", str(self.tree), "--out", str(self.out)]
        if self.name != "mlperf_submission_short":
            args += ["--name", self.name]
        for run in self.runs:
            args += ["--runs", str(run)]
        if self.version != "v6.1":
            args += ["--version", self.version]
        for rule in self.waive:
            args += ["--waive", rule]
        return args


def _versions_line(runs: list[RunInfo], tree: TreeInfo) -> str:
    versions: dict[str, set[str]] = {}
    for run in runs:
        for key, value in run.versions.items():
            versions.setdefault(key, set()).add(value)
    if "loadgen" not in versions and tree.loadgen_versions():
        versions["loadgen"] = {v.split(" @")[0] for v in tree.loadgen_versions()}
    versions.setdefault("subtool", set()).add(__version__)
    return ", ".join(f"{k} {'/'.join(sorted(v))}" for k, v in sorted(versions.items()))


def _accelerator_lines(tree: TreeInfo) -> list[str]:
    lines = []
    for system in tree.systems:
        f = system.fields
        host = f"{f.get('host_processors_per_node', '?')} x {f.get('host_processor_model_name', '?')}"
        accel = f"{f.get('accelerators_per_node', '?')} x {f.get('accelerator_model_name', '?')}"
        lines.append(f"#   system {system.name}: host {host}; accelerators {accel} ({system.rel_path})")
    return lines


def _export_lines(env: dict[str, str]) -> list[str]:
    return [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items()) if k.isidentifier() and not is_secret(k, v)]


def _common_env(runs: list[RunInfo]) -> dict[str, str]:
    if not runs:
        return {}
    common = dict(runs[0].env)
    for run in runs[1:]:
        common = {k: v for k, v in common.items() if run.env.get(k) == v}
    return common


def render_run_script(name: str, runs: list[RunInfo], tree: TreeInfo, pack: PackCommand, run_style: str) -> str:
    lines = [
        "#!/usr/bin/env bash",
        f"# {name}.run: the commands that produced {name}.tar.gz, written by `subtool pack` (subtool {__version__}).",
        "# Re-run it from the folder the commands were first run in; relative paths are relative to it.",
        "#",
        "# Environment",
        f"#   versions: {_versions_line(runs, tree)}",
        f"#   packed with python {platform.python_version()}",
        *_accelerator_lines(tree),
        f"#   run style: {run_style}",
        "set -euo pipefail",
        "",
    ]
    commands = [run.command for run in runs if run.command]
    if not commands:
        lines += [
            "# The benchmark commands are unknown: this tree was not made from subtool run directories",
            "# (pass `--runs RUN_DIR` to `subtool pack` to record them). The LoadGen settings in the tree:",
        ]
        for result in tree.results:
            lines.append(f"#   {result.rel_dir}/user.conf:")
            conf = [ln.strip() for ln in result.user_conf.splitlines() if ln.strip() and not ln.startswith("#")]
            lines += [f"#     {ln}" for ln in conf] or ["#     (none)"]
        lines += ["", "# The command that made these artifacts:", shlex.join(pack.argv()), ""]
        return "\n".join(lines)

    common = _common_env(runs)
    if common:
        lines += ["# Environment variables the runs used (no secrets)", *_export_lines(common), ""]
    made_by_all = any(len(c) > 1 and c[1] == "all" for c in commands)
    previous: list[str] | None = None
    for index, run in enumerate(runs, start=1):
        if not run.command or run.command == previous:
            continue
        previous = run.command
        label = " ".join(x for x in (run.model, run.scenario) if x) or run.path.name
        style = f", {run.run_style} run" if run.run_style else ""
        demo = ", embedded demo (random weights)" if run.demo else ""
        lines.append(f"# {index}. {label}{style}{demo}")
        lines += _export_lines({k: v for k, v in run.env.items() if common.get(k) != v})
        lines += [f"date -u >> {shlex.quote(name + '.tstamps')}", shlex.join(run.command),
                  f"date -u >> {shlex.quote(name + '.tstamps')}", ""]
    if made_by_all:
        lines += ["# `subtool all` above also packs; these artifacts were made by:", "# " + shlex.join(pack.argv()), ""]
    else:
        lines += [*_package_lines(runs, tree, pack), "# Pack the artifacts", shlex.join(pack.argv()), ""]
    return "\n".join(lines)


def _package_lines(runs: list[RunInfo], tree: TreeInfo, pack: PackCommand) -> list[str]:
    """`subtool package` is not recorded in run directories; rebuild it from the tree, and say so."""
    lines = ["# Lay the runs out as the submission tree (rebuilt from the tree: run directories do not record",
             "# this command; pass the system JSON below with --system-file to get the same description)"]
    for system in tree.systems:
        args = ["subtool", "package"]
        for run in runs:
            args += ["--from", str(run.path)]
        args += ["--submitter", system.submitter, "--division", system.division, "--system", system.name]
        if pack.version != "v6.1":
            args += ["--version", pack.version]
        args += ["--out", str(pack.tree)]
        lines += [f"#   system description: {system.rel_path}", shlex.join(args)]
    return lines + [""]


def _first_moment(pair: list[str]) -> datetime:
    try:
        return datetime.strptime(" ".join(pair[0].split()), "%a %b %d %H:%M:%S UTC %Y")
    except ValueError:
        return datetime.max   # an unreadable stamp keeps its place after the readable ones


def render_tstamps(runs: list[RunInfo], tree: TreeInfo) -> str:
    """One `date -u` pair per run directory, oldest first (from run.json, else its logs); without run directories,
    one pair around all LoadGen runs in the tree (their power_begin/power_end, which LoadGen writes in UTC)."""
    pairs: list[list[str]] = sorted((run.tstamps for run in runs if run.tstamps), key=_first_moment)
    if not pairs:
        # Without run directories nobody knows how the runs were grouped: one pair spans all LoadGen runs.
        windows = [r.window for r in tree.results if r.window]
        if windows:
            pairs = [TimeWindow(min(w.begin for w in windows), max(w.end for w in windows)).lines()]
    lines = [line for pair in pairs for line in pair]
    return "\n".join(lines) + ("\n" if lines else "")
