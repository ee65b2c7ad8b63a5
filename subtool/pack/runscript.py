"""`<name>.run` (the commands, as a shell script someone can re-run) and `<name>.tstamps` (`date -u` lines).

The competitions ask teams to write `date -u` into the .tstamps file just before the benchmark run and to append
it just after; the .run script does the same around each run command, so re-running it records a fresh pair.
"""

from __future__ import annotations

import platform
import shlex
from dataclasses import dataclass
from pathlib import Path

from subtool import __version__
from subtool.errors import printable
from subtool.pack.inputs import ResultInfo, RunInfo, TimeWindow, TreeInfo, is_secret
from subtool.pack.runs import PackedRuns, covered, first_moment, uncovered


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


def _flag(command: list[str], name: str) -> str | None:
    """The value of `--name X` / `--name=X` in an argv, if given."""
    for i, arg in enumerate(command):
        if arg == name and i + 1 < len(command):
            return command[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def made_by_all(run: RunInfo, results: list[ResultInfo]) -> bool:
    """`subtool all` laid these results out itself: its submitter (and division, when given) are theirs (a run
    none of whose logs the tree holds is taken at its word)."""
    command = run.command
    if len(command) < 2 or command[1] != "all":
        return False
    submitter, division = _flag(command, "--submitter"), _flag(command, "--division")
    return all(r.submitter == submitter and (division is None or r.division == division) for r in results)


def _source_lines(tree: TreeInfo) -> list[str]:
    """Where the tree keeps the subtool that ran, and how to install it from there (no index needed)."""
    for division in tree.divisions:
        for submitter in tree.submitters:
            for folder in ("src", "code"):
                base = tree.root / division / submitter / folder
                copies = sorted(base.glob("subtool-*/pyproject.toml")) if base.is_dir() else []
                if copies:
                    rel = copies[-1].parent.relative_to(tree.root).as_posix()
                    return [
                        "# Install the subtool that ran from its copy in the tarball (no package index needed):",
                        f"#   pip install {shlex.quote('./' + rel + '[run]')}   # from the unpacked tree's root",
                    ]
    return []


def render_run_script(name: str, packed: PackedRuns, tree: TreeInfo, pack: PackCommand, run_style: str) -> str:
    runs = packed.runs
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
        *_source_lines(tree),
        "set -euo pipefail",
        "",
    ]
    commands = [run.command for run in runs if run.command]
    if not commands:
        lines += [
            "# The benchmark commands are unknown: this tree was not made from subtool run directories",
            "# (pass `--runs RUN_DIR` to `subtool pack` to record them). The LoadGen settings in the tree:",
        ]
        lines += _conf_lines(tree.results)
        lines += ["", "# The command that made these artifacts:", shlex.join(pack.argv()), ""]
        return _script(lines)

    common = _common_env(runs)
    if common:
        lines += ["# Environment variables the runs used (no secrets)", *_export_lines(common), ""]
    previous: list[str] | None = None
    for index, run in enumerate(runs, start=1):
        if not run.command or run.command == previous:
            continue
        previous = run.command
        label = " ".join(x for x in (run.model, run.scenario) if x) or run.path.name
        style = f", {run.run_style} run" if run.run_style else ""
        demo = ", embedded demo (random weights)" if run.demo else ""
        lines.append(f"# {index}. {label}{style}{demo}")
        lines += [f"#    packed as {r.rel_dir}" for r in packed.results_of(run)]
        lines += _export_lines({k: v for k, v in run.env.items() if common.get(k) != v})
        lines += [
            f"date -u >> {shlex.quote(name + '.tstamps')}",
            shlex.join(run.command),
            f"date -u >> {shlex.quote(name + '.tstamps')}",
            "",
        ]
    if packed.orphans:
        lines += [
            "# Results packed from logs no run directory given to `subtool pack --runs` holds (their",
            "# commands are unknown; .tstamps has their LoadGen run times). Their LoadGen settings:",
        ]
        lines += _conf_lines(packed.orphans) + [""]
    by_package = [run for run in runs if run.command and not made_by_all(run, packed.results_of(run))]
    if not by_package:
        lines += ["# `subtool all` above also packs; these artifacts were made by:", "# " + shlex.join(pack.argv()), ""]
    else:
        lines += [*_package_lines(by_package, packed, tree, pack), "# Pack the artifacts", shlex.join(pack.argv()), ""]
    return _script(lines)


def _script(lines: list[str]) -> str:
    """The lines as one script. A comment line carries text from the tree and the runs (a system description's
    fields, paths, versions): a line break there would end the comment and run the rest as a command, so every
    character that is not printable is written as its escape instead (a newline as `\\n`)."""
    return "\n".join(printable(line) if line.startswith("#") else line for line in lines)


def _conf_lines(results: list[ResultInfo]) -> list[str]:
    lines = []
    for result in results:
        lines.append(f"#   {result.rel_dir}/user.conf:")
        conf = [ln.strip() for ln in result.user_conf.splitlines() if ln.strip() and not ln.startswith("#")]
        lines += [f"#     {ln}" for ln in conf] or ["#     (none)"]
    return lines


def _package_lines(runs: list[RunInfo], packed: PackedRuns, tree: TreeInfo, pack: PackCommand) -> list[str]:
    """`subtool package` is not recorded in run directories; rebuild it from the tree, and say so."""
    lines = [
        "# Lay the runs out as the submission tree (rebuilt from the tree: run directories do not record",
        "# this command; pass the system JSON below with --system-file to get the same description)",
    ]
    groups: dict[tuple[str, str, str], list[RunInfo]] = {}
    for run in runs:
        keys = {(r.division, r.submitter, r.system) for r in packed.results_of(run)}
        for key in keys or {(s.division, s.submitter, s.name) for s in tree.systems}:
            groups.setdefault(key, []).append(run)
    systems = {(s.division, s.submitter, s.name): s for s in tree.systems}
    for (division, submitter, system), members in sorted(groups.items()):
        args = ["subtool", "package"]
        for run in members:
            args += ["--from", str(run.path)]
        args += ["--submitter", submitter, "--division", division, "--system", system]
        if pack.version != "v6.1":
            args += ["--version", pack.version]
        args += ["--out", str(pack.tree)]
        if (division, submitter, system) in systems:
            lines.append(f"#   system description: {systems[(division, submitter, system)].rel_path}")
        lines.append(shlex.join(args))
    return lines + [""]


def render_tstamps(packed: PackedRuns, tree: TreeInfo) -> str:
    """One `date -u` pair per run directory (from run.json, else its logs), plus one pair of LoadGen times for each
    packed result no run's pair holds, oldest first; without run directories, one pair around all LoadGen runs
    in the tree (their power_begin/power_end, which LoadGen writes in UTC)."""
    pairs: list[list[str]] = [run.tstamps for run in packed.runs if run.tstamps]
    if not pairs:
        # Without run directories nobody knows how the runs were grouped: one pair spans all LoadGen runs.
        windows = [r.window for r in tree.results if r.window]
        if windows:
            pairs = [TimeWindow(min(w.begin for w in windows), max(w.end for w in windows)).lines()]
    else:
        for result in uncovered(packed, tree.results, list(pairs)):
            if not covered(result, pairs):  # an earlier orphan's pair may hold it
                pairs.append(result.window.lines())
    unique = list({tuple(p): p for p in pairs}.values())
    lines = [line for pair in sorted(unique, key=first_moment) for line in pair]
    return "\n".join(lines) + ("\n" if lines else "")
