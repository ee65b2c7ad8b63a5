"""`subtool package`: imported results → the official submission tree, all or nothing.

Plan first (import and check every input, resolve names, build and validate system descriptions, measurements
and accuracy lines), then write: each `<division>/<submitter>` directory is rebuilt in a staging directory at
the tree root (a hard-linked copy of what is there, plus the new results) and swapped in with two renames. A
failure or an interruption leaves the previous tree as it was; an existing result is replaced only with
`--force` (or after a yes at the terminal).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from subtool.errors import EXIT_USAGE, SubtoolError
from subtool.fsutil import one_writer, remove_leftovers, within
from subtool.mlperf.benchmarks import accuracy_line_ok, format_accuracy_line
from subtool.mlperf.layout import WRITABLE_DIVISIONS, Layout, ResultKey, check_name, layout_for
from subtool.mlperf.round import round_of_seeds
from subtool.mlperf.round_choice import filed_as
from subtool.package.group import Group, stage_group
from subtool.package.importers import ImportedResult, discover, import_loose
from subtool.package.records import PackageResult, Planned
from subtool.package.staging import write_staged
from subtool.package.system import (
    SystemDescription,
    apply_overrides,
    default_system_name,
    detect_system,
    load_overrides,
    split_overrides,
    validation_errors,
)
from subtool.package.system_merge import existing_system, merged_fields, with_recorded_nodes
from subtool.package.text_files import read_conf

FULL_LOGS_DIR = ".full_logs"  # default home of the untruncated accuracy logs, inside --out
_USER_CONF_KEYS = (
    ("target_qps", "target_qps"),
    ("target_latency_ns", None),
    ("min_duration_ms", "min_duration"),
    ("min_query_count", "min_query_count"),
    ("max_query_count", "max_query_count"),
    ("samples_per_query", None),
)

AccuracyScorer = Callable[[ImportedResult], "str | None"]


@dataclass
class PackageOptions:
    from_dirs: list[Path]
    perf: Path | None
    acc: Path | None
    compliance: list[str]
    model: str | None
    scenario: str | None
    submitter: str
    division: str | None
    system: str | None
    system_file: Path | None
    out: Path
    version: str | None = "v6.1"  # None: package_results decides from the inputs' benchmarks
    full_logs: Path | None = None
    force: bool = False


# ------------------------------------------------------------------------------------------- inputs
def _gather(opts: PackageOptions) -> list[ImportedResult]:
    imported: list[ImportedResult] = []
    for d in opts.from_dirs:
        imported += discover(Path(d))
    if opts.perf is not None or opts.acc is not None:
        if opts.perf is None:
            raise SubtoolError(
                "--acc needs --perf", rule="cli.usage", hint="loose logs: --perf DIR --acc DIR --model M [--scenario S]"
            )
        imported.append(
            import_loose(
                opts.perf, opts.acc, model=opts.model, scenario=opts.scenario, compliance=list(opts.compliance)
            )
        )
    elif opts.compliance:
        raise SubtoolError("--compliance goes with --perf/--acc (loose logs)", rule="cli.usage")
    if not imported:
        raise SubtoolError(
            "nothing to package", rule="cli.usage", hint="give --from RUN_OR_MLC_DIR, or --perf DIR --acc DIR --model M"
        )
    if opts.from_dirs and (opts.model or opts.scenario) and opts.perf is None:
        # with --from, --model/--scenario pick among the results found (and must match at least one)
        found = [f"{i.model}/{i.scenario}" for i in imported]
        imported = [
            i
            for i in imported
            if (not opts.model or opts.model in (i.model, i.bench.name))
            and (not opts.scenario or i.scenario == opts.scenario)
        ]
        if not imported:
            raise SubtoolError(
                f"no result matches --model {opts.model or '*'} --scenario {opts.scenario or '*'}; "
                f"found {', '.join(found)}",
                rule="import.model_mismatch",
                hint="drop --model/--scenario to package everything found",
            )
    return imported


def check_request(system_file: Path | None, division: str | None, demo: bool) -> None:
    """What `subtool all` asks of packaging, checked before it runs the benchmark: a system file that reads, and
    no demo result for the closed division (packaging itself checks both again)."""
    if system_file is not None:
        load_overrides(system_file)
    if demo and division == "closed":
        raise SubtoolError(
            "a demo run cannot go to the closed division",
            rule="package.demo_closed",
            hint="drop --division closed, or give --model-path/--dataset-path for a closed result",
        )


def _division(opts: PackageOptions, imp: ImportedResult) -> str:
    if opts.division is not None and opts.division not in WRITABLE_DIVISIONS:
        raise SubtoolError(f"unknown division {opts.division!r}", rule="cli.usage", hint="use open or closed")
    if imp.demo:
        if opts.division == "closed":
            raise SubtoolError(
                "a demo run cannot go to the closed division",
                path=imp.source,
                rule="package.demo_closed",
                hint="demo results are packaged as open; run with --model-path/--dataset-path for a closed result",
            )
        return "open"
    division = opts.division or imp.division_hint or "open"
    if division == "closed" and imp.custom_model:
        raise SubtoolError(
            f"custom model name {imp.model!r} is only allowed in the open division",
            path=imp.source,
            rule="package.custom_model_closed",
            hint=f"use the benchmark name {imp.bench.name} or --division open",
        )
    return division


def _system_name(opts: PackageOptions, imp: ImportedResult, detected: SystemDescription, sys_overrides: dict) -> str:
    if opts.system:
        name = check_name(opts.system, "system name", flag="--system")
    elif imp.system_hint:
        name = check_name(imp.system_hint, "system directory name")
    else:
        name = default_system_name({**detected.fields, **sys_overrides}, demo=imp.demo)
        name = check_name(name, "detected system name", flag="--system")
    if imp.demo and "demo" not in name.lower():
        name = f"{name}-demo"
    return name


def _user_conf_text(imp: ImportedResult) -> str:
    if imp.user_conf is not None:
        text = read_conf(imp.user_conf, "user.conf").text
        if text.strip():
            return text
    # The detail log says what LoadGen applied; write that back as the conf the run used.
    s = imp.perf_log.settings()
    conf = imp.bench.conf_name
    lines = [
        "# user.conf reconstructed by subtool from performance/run_1/mlperf_log_detail.txt",
        "# (the harness's own user.conf was not given)",
    ]
    if imp.scenario in ("Offline", "Server") and "target_qps" in s:
        lines.append(f"{conf}.{imp.scenario}.target_qps = {s['target_qps']}")
    if imp.scenario in ("SingleStream", "MultiStream") and s.get("target_latency_ns"):
        lines.append(f"{conf}.{imp.scenario}.target_latency = {int(s['target_latency_ns']) / 1e6:g}")
    if s.get("min_duration_ms") is not None:
        lines.append(f"{conf}.{imp.scenario}.min_duration = {s['min_duration_ms']}")
    if s.get("min_query_count") is not None:
        lines.append(f"{conf}.{imp.scenario}.min_query_count = {s['min_query_count']}")
    return "\n".join(lines) + "\n"


def _accuracy(imp: ImportedResult, scorer: AccuracyScorer | None) -> tuple[str, str | None]:
    """(accuracy.txt text without the hash, the accuracy line) — found, computed, or a clear error."""
    text = imp.accuracy_txt
    if text is None and imp.accuracy_metrics:
        text = format_accuracy_line(imp.bench, imp.accuracy_metrics) + "\n"
    if text is None and scorer is not None:
        text = scorer(imp)
    if text is None:
        path = imp.acc_dir / "accuracy.txt"
        known = imp.bench.accuracy_style in ("json", "pydict")
        hint = (
            f"run {imp.bench.name}'s accuracy script on {imp.acc_dir / 'mlperf_log_accuracy.json'} and save "
            f"its output as accuracy.txt (bert: language/bert/accuracy-squad.py; LLMs: the evaluation "
            f"script of the reference implementation), then package again"
            if known
            else f"subtool does not know {imp.bench.name}'s output format; write accuracy.txt with the "
            f"benchmark's accuracy script"
        )
        raise SubtoolError(
            "accuracy.txt is missing and subtool cannot compute it here",
            path=path,
            rule="import.accuracy_missing",
            hint=hint,
        )
    line = next((ln for ln in text.splitlines() if accuracy_line_ok(imp.bench, ln)), None)
    if line is None:
        imp.notes.append(f"accuracy.txt has no line the checker reads for {imp.bench.name}")
    return text, line


def _note_other_round(imp: ImportedResult, version: str) -> None:
    """A performance run made with another round's LoadGen seeds fails the checker's perf.seeds in a tree of this
    round (`subtool package --version v5.1` of a run made for v6.1): said here, not only by check."""
    seeds = (imp.perf_log.get(f"effective_{k}") for k in ("qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed"))
    ran_for = round_of_seeds(*seeds)
    if ran_for and ran_for != version:
        imp.notes.append(
            f"the performance run used the {ran_for} seeds, so a {version} check fails it (perf.seeds): package it "
            f"with --version {ran_for}, or run it again with --version {version}"
        )


def _measurements(imp: ImportedResult, overrides: dict) -> dict:
    from jsonschema import Draft202012Validator

    from subtool.schemas import load_schema

    m = {**imp.bench.measurements, **imp.measurements, **overrides}
    if "starting_weights_filename" not in {**imp.measurements, **overrides} and imp.bench.measurements:
        imp.notes.append(
            f"measurements.json names the reference weights ({m.get('starting_weights_filename')}): "
            "nothing beside the logs said which weights ran; set starting_weights_filename in a "
            "measurements.json beside them, or in --system-file's [measurements]"
        )
    if (
        imp.run
        and imp.run.get("precision")
        and "weight_data_types" not in imp.measurements
        and "weight_data_types" not in overrides
    ):
        m["weight_data_types"] = str(imp.run["precision"])
    schema = load_schema("measurements")
    bad = sorted(
        {(e.path[0] if e.path else e.message.split("'")[1]) for e in Draft202012Validator(schema).iter_errors(m)}
    )
    if bad:
        raise SubtoolError(
            f"measurements.json for {imp.model} {imp.scenario} lacks a value for {', '.join(map(str, bad))}",
            path=imp.source,
            rule="package.measurements_incomplete",
            hint="put a measurements.json beside the logs, or a [measurements] table with these "
            "fields in --system-file",
        )
    return m


# ------------------------------------------------------------------------------------------- plan
class _Planner:
    """Plan every result before anything is written: names, systems, measurements, accuracy."""

    def __init__(self, opts: PackageOptions, layout: Layout, submitter: str, scorer: AccuracyScorer | None):
        self.opts, self.layout, self.submitter, self.scorer = opts, layout, submitter, scorer
        self.sys_overrides, self.meas_overrides = (
            split_overrides(load_overrides(opts.system_file)) if opts.system_file else ({}, {})
        )
        self.planned: list[Planned] = []
        self.systems: dict[tuple[str, str], dict] = {}
        self.system_inputs: dict[tuple[str, str], list[ImportedResult]] = {}
        self.seen: dict[ResultKey, ImportedResult] = {}

    def add(self, imp: ImportedResult) -> None:
        opts, layout, submitter = self.opts, self.layout, self.submitter
        division = _division(opts, imp)
        filed = filed_as(imp.bench, layout.version, division, path=imp.source)
        if filed is not imp.bench:  # the folder keeps its name; model_mapping.json files it as the round's
            imp = dataclasses.replace(imp, bench=filed)
        _note_other_round(imp, layout.version)
        versions = (imp.run or {}).get("versions") or {}
        if not versions.get("loadgen") and imp.perf_log.loadgen_version:
            versions = {**versions, "loadgen": imp.perf_log.loadgen_version}
        detected = detect_system(submitter=submitter, division=division, versions=versions, demo=imp.demo)
        detected = with_recorded_nodes(detected, [imp])  # a multi-node run: its nodes, not this machine
        system = _system_name(opts, imp, detected, self.sys_overrides)
        key = ResultKey(division, submitter, system, check_name(imp.model, "model name"), imp.scenario)
        if key in self.seen:
            raise SubtoolError(
                f"two inputs are the same result {key.label()}: {self.seen[key].source} and {imp.source}",
                path=imp.source,
                rule="package.duplicate_result",
                hint="package one of them, or give them different --system names",
            )
        self.seen[key] = imp
        text, line = _accuracy(imp, self.scorer)
        measurements = _measurements(imp, self.meas_overrides)
        self.planned.append(Planned(key, imp, text, line, measurements, _user_conf_text(imp)))
        self._add_system(division, system, imp, detected)

    def _add_system(self, division: str, system: str, imp: ImportedResult, detected: SystemDescription) -> None:
        skey = (division, system)
        self.system_inputs.setdefault(skey, []).append(imp)
        if skey not in self.systems:
            self.systems[skey] = {"detected": detected, "meta": imp.system_meta, "demo": imp.demo}
        elif imp.system_meta and self.systems[skey]["meta"] and imp.system_meta != self.systems[skey]["meta"]:
            raise SubtoolError(
                f"two different system_meta.json describe system {system}",
                path=imp.source,
                rule="package.system_conflict",
                hint="give the results different --system names",
            )

    def descriptions(self, out: Path) -> dict[tuple[str, str], SystemDescription]:
        """Each system's description: detected, widened for the tree's results, then the user's values; valid."""
        return {skey: self._describe(out, *skey, info) for skey, info in self.systems.items()}

    def _describe(self, out: Path, division: str, system: str, info: dict) -> SystemDescription:
        opts, layout, submitter, sys_overrides = self.opts, self.layout, self.submitter, self.sys_overrides
        desc = info["detected"]
        current = existing_system(out / layout.system_json(division, submitter, system))
        desc = apply_overrides(desc, merged_fields(current, self.system_inputs[(division, system)]))
        if info["meta"]:
            desc = apply_overrides(desc, {k: v for k, v in info["meta"].items() if v not in (None, "")})
        desc = apply_overrides(desc, sys_overrides)
        forced = {"division": division, "submitter": submitter}
        if not sys_overrides.get("system_name") and not (info["meta"] or {}).get("system_name"):
            forced["system_name"] = system
        if info["demo"] and "demo" not in str(desc.fields.get("system_name", "")).lower():
            forced["system_name"] = f"{desc.fields.get('system_name') or system} (DEMO)"
        desc = apply_overrides(desc, forced)
        errors = validation_errors(desc.fields, division=division, submitter=submitter)
        if errors:
            raise SubtoolError(
                "invalid system description: " + "; ".join(errors),
                path=opts.system_file or layout.system_json(division, submitter, system),
                rule="system.invalid",
                hint="set the fields in --system-file (TOML/JSON) or check them with `subtool system --validate FILE`",
            )
        return desc


# ------------------------------------------------------------------------------------------- package
def package_results(
    opts: PackageOptions,
    console=None,
    *,
    accuracy_scorer: AccuracyScorer | None = None,
    confirm: Callable[[str], bool] | None = None,
) -> PackageResult:
    """Import every input, then lay the results out under `opts.out` in one all-or-nothing step."""
    opts = _with_round(opts, console)
    layout = layout_for(opts.version)
    submitter = check_name(opts.submitter, "submitter", flag="--submitter")
    if opts.division is not None and opts.division not in WRITABLE_DIVISIONS:
        raise SubtoolError(f"unknown division {opts.division!r}", rule="cli.usage", hint="use open or closed")
    if opts.system is not None:
        check_name(opts.system, "system name", flag="--system")
    out = Path(opts.out).expanduser()
    _refuse_out_inside_inputs(opts, out)
    # inside what the user named (hidden: not part of the tree, never packed or published), or where they chose
    full_logs = Path(opts.full_logs).expanduser() if opts.full_logs else out / FULL_LOGS_DIR
    _refuse_full_logs_in_tree(out, full_logs)
    _refuse_files_where_folders_go(out)
    imported = _gather(opts)
    result = PackageResult(tree=out, version=layout.version, full_logs=full_logs)

    def waiting() -> None:
        if console is not None:
            console.print(f"waiting for another subtool writing to {out}", markup=False, highlight=False)

    # one writer per tree: a second package into it waits, then plans against what the first one wrote
    with one_writer(out, on_wait=waiting):
        if full_logs.is_dir():  # a full log a killed package was copying: its pid is gone
            remove_leftovers(full_logs, within=[full_logs])
        planner = _Planner(opts, layout, submitter, accuracy_scorer)
        for imp in imported:
            planner.add(imp)
        _write(planner, out, layout, submitter, full_logs, result, confirm)
    if console is not None:
        _print_summary(console, result)
    return result


def _refuse_out_inside_inputs(opts: PackageOptions, out: Path) -> None:
    """A tree written into a run directory (or its parent that --from scans) would be read back as input."""
    sources = [*opts.from_dirs, opts.perf, opts.acc, *(c.partition("=")[2] for c in opts.compliance)]
    for src in (s for s in sources if s):
        if within(out, src):
            raise SubtoolError(
                f"the tree would be written inside its own input {src}",
                path=out,
                rule="package.out_inside_input",
                hint="give --out a folder outside the run directories you package",
                exit_code=EXIT_USAGE,
            )


def _refuse_files_where_folders_go(out: Path) -> None:
    """A file named like a division folder in --out was found only at the final swap, after every log was read
    and hashed (io.eexist)."""
    for division in WRITABLE_DIVISIONS:
        where = out / division
        if where.exists() and not where.is_dir():
            raise SubtoolError(
                f"{division} in --out is a file, where the tree's {division}/ folder goes",
                path=where,
                rule="package.out_unwritable",
                hint="move it away, or choose another --out",
                exit_code=EXIT_USAGE,
            )


def _refuse_full_logs_in_tree(out: Path, full_logs: Path) -> None:
    """--full-logs inside --out, but for its hidden .full_logs: in a division folder the logs became part of the
    tree (check refuses it), and in the folder itself the swap of the staged tree deleted them."""
    if within(full_logs, out) and not within(full_logs, out / FULL_LOGS_DIR):
        raise SubtoolError(
            "--full-logs is inside the tree, where the logs would be packed with it or replaced by it",
            path=full_logs,
            rule="package.full_logs_in_tree",
            hint=f"leave --full-logs out (they go to {out / FULL_LOGS_DIR}) or give a folder outside --out",
            exit_code=EXIT_USAGE,
        )


def _write(planner, out: Path, layout, submitter: str, full_logs: Path, result: PackageResult, confirm) -> None:
    """One staging copy per division/submitter, swapped in at the end."""
    opts = planner.opts
    descriptions = planner.descriptions(out)
    groups: dict[str, list[Planned]] = {}
    for p in planner.planned:
        groups.setdefault(p.key.division, []).append(p)

    def stage(root: Path, division: str, durable: list[Path]) -> None:
        group = Group(root, layout, division, submitter, opts.out, full_logs, opts.force, opts.system_file, result)
        stage_group(group, groups[division], descriptions, confirm, durable)

    write_staged(out, layout, submitter, list(groups), stage)


def _print_summary(console, result: PackageResult) -> None:
    """One line each, never folded (a terminal may cut them; a path broken across lines cannot be copied)."""
    say = functools.partial(console.print, markup=False, highlight=False, soft_wrap=True)
    for r in result.results:
        tag = " (DEMO)" if r.demo else ""
        style = " [short run: not submittable]" if r.run_style == "short" else ""
        verb = "replaced" if r.replaced else "packaged"
        say(f"{verb} {r.division}/{r.submitter}/{r.system}/{r.model}/{r.scenario}{tag}{style}")
        for n in r.notes:  # e.g. an accuracy.txt the checker cannot read: closed refuses that tree
            say(f"  note: {n}")
    for n in result.notes:
        say(f"note: {n}")
    say(f"tree: {result.tree}   full accuracy logs: {result.full_logs}")


def _with_round(opts: PackageOptions, console) -> PackageOptions:
    """--version, else the round the inputs' benchmarks point to, of the layout the --out tree already has (said
    when subtool chose it): decided here."""
    if opts.version is not None:
        return opts
    from subtool.mlperf.round_choice import announce, choose_round_for_runs

    chosen = choose_round_for_runs(opts.from_dirs, [opts.model or ""], None, tree=Path(opts.out))
    return dataclasses.replace(opts, version=(announce(chosen, console) if console else chosen).version)
