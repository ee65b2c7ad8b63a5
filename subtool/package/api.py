"""`subtool package`: imported results → the official submission tree, all or nothing.

Plan first (import and check every input, resolve names, build and validate system descriptions, measurements
and accuracy lines), then write: each `<division>/<submitter>` directory is rebuilt in a staging directory at
the tree root (a hard-linked copy of what is there, plus the new results) and swapped in with two renames. A
failure or an interruption leaves the previous tree as it was; an existing result is replaced only with
`--force` (or after a yes at the terminal).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subtool.errors import SubtoolError
from subtool.mlperf.benchmarks import accuracy_line_ok, format_accuracy_line
from subtool.mlperf.layout import DIVISIONS, Layout, ResultKey, check_name, layout_for
from subtool.mlperf.round_choice import filed_as
from subtool.package import documents
from subtool.package.importers import ImportedResult, discover, import_loose
from subtool.package.results import write_result
from subtool.package.system import (
    SystemDescription,
    apply_overrides,
    default_system_name,
    detect_system,
    load_overrides,
    split_overrides,
    validation_errors,
)
from subtool.package.truncate import make_durable

STAGING_PREFIX = ".subtool-staging-"
FILE_SIZE_LIMIT = 50 * 1024 * 1024  # the official checker's per-file limit
MAX_PARALLEL_RESULTS = 4
ASIDE_PREFIX = ".subtool-old-"
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


@dataclass
class PackagedResult:
    division: str
    submitter: str
    system: str
    model: str
    scenario: str
    path: Path
    run_style: str
    demo: bool
    benchmark: str = ""
    source: str = ""
    replaced: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "division": self.division,
            "submitter": self.submitter,
            "system": self.system,
            "model": self.model,
            "benchmark": self.benchmark,
            "scenario": self.scenario,
            "path": str(self.path),
            "run_style": self.run_style,
            "demo": self.demo,
            "source": self.source,
            "replaced": self.replaced,
            "notes": list(self.notes),
        }


@dataclass
class PackageResult:
    tree: Path
    version: str
    full_logs: Path
    results: list[PackagedResult] = field(default_factory=list)
    systems: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tree": str(self.tree),
            "version": self.version,
            "full_logs": str(self.full_logs),
            "results": [r.to_dict() for r in self.results],
            "systems": [str(s) for s in self.systems],
            "notes": list(self.notes),
        }


@dataclass
class _Planned:
    key: ResultKey
    imp: ImportedResult
    accuracy_txt: str
    accuracy_line: str | None
    measurements: dict
    user_conf_text: str


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


def _division(opts: PackageOptions, imp: ImportedResult) -> str:
    if opts.division is not None and opts.division not in DIVISIONS:
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


def _system_type(benches) -> str:
    suites = [set(b.suites) for b in benches]
    if all(s == {"edge"} for s in suites):
        return "edge"
    if all(s == {"datacenter"} for s in suites):
        return "datacenter"
    if all("edge" in s for s in suites):
        return "edge"
    if all("datacenter" in s for s in suites):
        return "datacenter"
    return "datacenter,edge"


_SUITES = ("datacenter", "edge")
# Fields a joining result may widen in a system description already in the tree (never narrow).
MERGED_SYSTEM_FIELDS = ("system_type", "number_of_nodes")


def _suites_of(system_type: object) -> set[str]:
    return {p.strip() for p in str(system_type or "").lower().split(",") if p.strip() in _SUITES}


def merged_system_type(current: object, benches) -> str:
    """The type that lists every benchmark: the current one when it already does, else widened to
    `datacenter,edge` (the official checker's form for a system in both suites)."""
    suites = _suites_of(current)
    if not suites:
        return _system_type(benches)
    for bench in benches:
        if not suites & set(bench.suites):
            suites.add(bench.suites[0])
    return "datacenter,edge" if suites == set(_SUITES) else suites.pop()


def run_nodes(imp: ImportedResult) -> int:
    """Nodes a run spread over, from run.json's SUT record (Ray: the node of each worker); 1 when it says none."""
    sut = (imp.run or {}).get("sut")
    workers = sut.get("per_worker") if isinstance(sut, dict) else None
    nodes = {str(w["node"]) for w in workers or [] if isinstance(w, dict) and w.get("node")}
    return max(1, len(nodes))


def _as_count(value: object) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        return 0


def _existing_system(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _merged_fields(current: dict, imps: list[ImportedResult]) -> dict:
    """system_type and number_of_nodes that hold the results already described and the joining ones."""
    nodes = max([_as_count(current.get("number_of_nodes")), *(run_nodes(i) for i in imps)])
    return {
        "system_type": merged_system_type(current.get("system_type"), [i.bench for i in imps]),
        "number_of_nodes": nodes,
    }


def _user_conf_text(imp: ImportedResult) -> str:
    if imp.user_conf is not None:
        text = imp.user_conf.read_text(encoding="utf-8", errors="replace")
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


def _check_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SubtoolError(
            f"cannot create the output directory: {exc.strerror or exc}",
            path=out,
            rule="package.out_unwritable",
            hint="choose another --out",
        ) from None
    if not out.is_dir() or not os.access(out, os.W_OK | os.X_OK):
        raise SubtoolError(
            "the output directory is not writable",
            path=out,
            rule="package.out_unwritable",
            hint="choose another --out or fix its permissions",
        )
    probe = out / f"{STAGING_PREFIX}probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise SubtoolError(
            f"the output directory is not writable: {exc.strerror or exc}",
            path=out,
            rule="package.out_unwritable",
            hint="choose another --out",
        ) from None


def _recover(out: Path) -> None:
    """Undo what an interrupted earlier package left at the tree root (staging dirs, a moved-aside tree)."""
    for entry in sorted(out.glob(f"{ASIDE_PREFIX}*")):
        parts = entry.name[len(ASIDE_PREFIX) :].split("--")
        if len(parts) >= 2:
            final = out / parts[0] / parts[1]
            if not final.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(entry, final)
                continue
        shutil.rmtree(entry, ignore_errors=True)
    for entry in sorted(out.glob(f"{STAGING_PREFIX}*")):
        shutil.rmtree(entry, ignore_errors=True)


def _linked_copy(src: Path, dst: Path) -> None:
    """Copy a tree by hard links (instant, no extra space); files are only ever replaced, never edited."""

    def link(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, symlinks=True, copy_function=link)


def _confirm_replace(labels: list[str], confirm: Callable[[str], bool] | None) -> bool:
    if confirm is None and sys.stdin is not None and sys.stdin.isatty() and sys.stderr.isatty():
        from rich.prompt import Confirm

        def confirm(question: str) -> bool:  # noqa: E306
            return Confirm.ask(question, default=False)

    if confirm is None:
        return False
    return bool(confirm(f"Replace {len(labels)} result(s) already in the tree ({', '.join(labels)})?"))


def _write_text(path: Path, text: str) -> None:
    """Write inside staging. The file may be a hard link shared with the live tree: unlink it first, so that the
    live tree never sees the change before the swap. No fsync here; the staging tree is synced once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    path.write_text(text, encoding="utf-8")


def _remove_empty_dirs(root: Path) -> None:
    """The checker rejects empty directories; drop the ones a result without (say) compliance runs left."""
    if not root.is_dir():
        return
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()


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
    if opts.division is not None and opts.division not in DIVISIONS:
        raise SubtoolError(f"unknown division {opts.division!r}", rule="cli.usage", hint="use open or closed")
    if opts.system is not None:
        check_name(opts.system, "system name", flag="--system")
    out = Path(opts.out).expanduser()
    # inside what the user named (hidden: not part of the tree, never packed or published), or where they chose
    full_logs = Path(opts.full_logs).expanduser() if opts.full_logs else out / FULL_LOGS_DIR
    sys_overrides, meas_overrides = split_overrides(load_overrides(opts.system_file)) if opts.system_file else ({}, {})
    imported = _gather(opts)

    # ---- plan: names, systems, measurements, accuracy; nothing is written yet
    planned: list[_Planned] = []
    systems: dict[tuple[str, str], dict] = {}
    system_inputs: dict[tuple[str, str], list[ImportedResult]] = {}
    seen: dict[ResultKey, ImportedResult] = {}
    for imp in imported:
        division = _division(opts, imp)
        filed = filed_as(imp.bench, layout.version, division, path=imp.source)
        if filed is not imp.bench:  # the folder keeps its name; model_mapping.json files it as the round's
            imp = dataclasses.replace(imp, bench=filed)
        versions = (imp.run or {}).get("versions") or {}
        if not versions.get("loadgen") and imp.perf_log.loadgen_version:
            versions = {**versions, "loadgen": imp.perf_log.loadgen_version}
        detected = detect_system(submitter=submitter, division=division, versions=versions, demo=imp.demo)
        system = _system_name(opts, imp, detected, sys_overrides)
        key = ResultKey(division, submitter, system, check_name(imp.model, "model name"), imp.scenario)
        if key in seen:
            raise SubtoolError(
                f"two inputs are the same result {key.label()}: {seen[key].source} and {imp.source}",
                path=imp.source,
                rule="package.duplicate_result",
                hint="package one of them, or give them different --system names",
            )
        seen[key] = imp
        text, line = _accuracy(imp, accuracy_scorer)
        planned.append(_Planned(key, imp, text, line, _measurements(imp, meas_overrides), _user_conf_text(imp)))
        skey = (division, system)
        system_inputs.setdefault(skey, []).append(imp)
        if skey not in systems:
            systems[skey] = {"detected": detected, "meta": imp.system_meta, "demo": imp.demo}
        elif imp.system_meta and systems[skey]["meta"] and imp.system_meta != systems[skey]["meta"]:
            raise SubtoolError(
                f"two different system_meta.json describe system {system}",
                path=imp.source,
                rule="package.system_conflict",
                hint="give the results different --system names",
            )

    descriptions: dict[tuple[str, str], SystemDescription] = {}
    for (division, system), info in systems.items():
        desc = info["detected"]
        current = _existing_system(out / layout.system_json(division, submitter, system))
        desc = apply_overrides(desc, _merged_fields(current, system_inputs[(division, system)]))
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
        descriptions[(division, system)] = desc

    # ---- write: one staging copy per division/submitter, swapped in at the end
    _check_out_dir(out)
    _recover(out)
    result = PackageResult(tree=out, version=layout.version, full_logs=full_logs)
    groups: dict[str, list[_Planned]] = {}
    for p in planned:
        groups.setdefault(p.key.division, []).append(p)
    staged: list[tuple[Path, Path]] = []  # (staging root, final submitter dir)
    durable: list[Path] = []  # everything written, synced once before anything is published
    try:
        for division, items in groups.items():
            final = out / layout.submitter_dir(division, submitter)
            staging = out / f"{STAGING_PREFIX}{division}--{submitter}--{os.getpid()}"
            staged.append((staging, final))
            inner = staging / layout.submitter_dir(division, submitter)
            if final.exists():
                _linked_copy(final, inner)
            else:
                inner.mkdir(parents=True)
            _stage_group(
                staging, layout, division, submitter, items, descriptions, opts, full_logs, result, confirm, durable
            )
            durable += [p for p in staging.rglob("*") if p.is_file() and p.stat().st_nlink == 1]
        make_durable(durable)
        for staging, final in staged:
            _swap_in(staging / final.relative_to(out), final, out)
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        for staging, _ in staged:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    if console is not None:
        for r in result.results:
            tag = " (DEMO)" if r.demo else ""
            style = " [short run: not submittable]" if r.run_style == "short" else ""
            verb = "replaced" if r.replaced else "packaged"
            console.print(
                f"{verb} {r.division}/{r.submitter}/{r.system}/{r.model}/{r.scenario}{tag}{style}",
                markup=False,
                highlight=False,
            )
        for n in result.notes:
            console.print(f"note: {n}", highlight=False, markup=False)
        console.print(f"tree: {out}   full accuracy logs: {full_logs}", highlight=False, markup=False)
    return result


def _with_round(opts: PackageOptions, console) -> PackageOptions:
    """--version, else the round the inputs' benchmarks point to (said when subtool chose it): decided here."""
    if opts.version is not None:
        return opts
    from subtool.mlperf.round_choice import announce, choose_round_for_runs

    chosen = choose_round_for_runs(opts.from_dirs, [opts.model or ""], None)
    return dataclasses.replace(opts, version=(announce(chosen, console) if console else chosen).version)


def _swap_in(new: Path, final: Path, out: Path) -> None:
    """Two renames; `_recover` puts the old tree back if we are killed between them."""
    division, submitter = final.parent.name, final.name
    final.parent.mkdir(parents=True, exist_ok=True)
    aside = out / f"{ASIDE_PREFIX}{division}--{submitter}--{os.getpid()}"
    if final.exists():
        os.replace(final, aside)
    os.replace(new, final)
    if aside.exists():
        shutil.rmtree(aside, ignore_errors=True)


def _stage_group(
    root: Path,
    layout: Layout,
    division: str,
    submitter: str,
    items: list[_Planned],
    descriptions: dict,
    opts: PackageOptions,
    full_logs: Path,
    result: PackageResult,
    confirm,
    durable: list[Path],
) -> None:
    """Build `<root>/<division>/<submitter>` (a linked copy of the current one) with the new results."""
    # existing results: replace only with --force or a yes
    existing = [p for p in items if any((root / d).exists() for d in layout.owned_dirs(p.key))]
    if existing and not opts.force:
        labels = [p.key.label() for p in existing]
        if not _confirm_replace(labels, confirm):
            raise SubtoolError(
                f"the tree already has {', '.join(labels)}; nothing was changed",
                path=opts.out,
                rule="package.result_exists",
                hint="pass --force to replace it (other results are kept)",
            )
    replaced = set()
    for p in existing:
        replaced.add(p.key)
        for d in layout.owned_dirs(p.key):
            if (root / d).is_dir():
                shutil.rmtree(root / d)

    # system descriptions: never silently overwrite one that is there
    for (div, system), desc in descriptions.items():
        if div != division or not any(p.key.system == system for p in items):
            continue
        rel = layout.system_json(division, submitter, system)
        target = root / rel
        if target.exists():
            try:
                current = json.loads(target.read_text(encoding="utf-8"))
            except ValueError:
                current = None
            if isinstance(current, dict) and _only_merged_fields_differ(current, desc.fields, opts):
                _write_text(
                    target,
                    json.dumps({**current, **{k: desc.fields[k] for k in MERGED_SYSTEM_FIELDS}}, indent=2) + "\n",
                )
                result.notes.append(_widened_note(rel, current, desc.fields))
            elif current != desc.fields:
                if opts.system_file is not None and opts.force:
                    _write_text(target, desc.to_json())
                    result.notes.append(f"replaced {rel} (--force with --system-file)")
                elif opts.system_file is not None:
                    raise SubtoolError(
                        f"{rel} is already in the tree and differs from --system-file; nothing was changed",
                        path=opts.out / rel,
                        rule="package.system_exists",
                        hint="pass --force to replace it, or edit the file in the tree",
                    )
                else:
                    result.notes.append(f"kept the existing {rel} (detected values not applied)")
                    widened = {k: desc.fields[k] for k in MERGED_SYSTEM_FIELDS if current.get(k) != desc.fields[k]}
                    if isinstance(current, dict) and widened:
                        _write_text(target, json.dumps({**current, **widened}, indent=2) + "\n")
                        result.notes.append(_widened_note(rel, current, desc.fields))
        else:
            _write_text(target, desc.to_json())
            if desc.guessed:
                result.notes.append(
                    f"{rel}: check {', '.join(desc.guessed)} (not detected; set them with --system-file)"
                )
        result.systems.append(opts.out / rel)

    # results: SHA-256 is the bottleneck (one core per log), so several results are hashed at once
    def write_one(p: _Planned):
        readme = documents.result_readme(p.key, p.imp, version=layout.version, accuracy_line=p.accuracy_line)
        return write_result(
            root,
            layout,
            p.key,
            p.imp,
            accuracy_txt=p.accuracy_txt,
            measurements=p.measurements,
            readme=readme,
            user_conf_text=p.user_conf_text,
            full_logs=full_logs,
        )

    workers = max(1, min(len(items), os.cpu_count() or 1, MAX_PARALLEL_RESULTS))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(write_one, p) for p in items]
        try:
            written_all = [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    for p, written in zip(items, written_all):
        durable += written.outside
        result.results.append(
            PackagedResult(
                division=division,
                submitter=submitter,
                system=p.key.system,
                model=p.key.model,
                scenario=p.key.scenario,
                path=opts.out / layout.result_dir(p.key),
                run_style=p.imp.run_style,
                demo=p.imp.demo,
                benchmark=p.imp.bench.name,
                source=str(p.imp.source),
                replaced=p.key in replaced,
                notes=list(p.imp.notes),
            )
        )

    # open division: custom model names → official benchmarks
    custom = {p.key.model: p.imp.bench.name for p in items if p.imp.custom_model}
    if custom:
        target = root / layout.model_mapping(division, submitter)
        mapping = json.loads(target.read_text(encoding="utf-8")) if target.exists() else {}
        for name, official in custom.items():
            if mapping.get(name, official) != official:
                raise SubtoolError(
                    f"model_mapping.json maps {name} to {mapping[name]}, not {official}; nothing was changed",
                    path=opts.out / layout.model_mapping(division, submitter),
                    rule="package.model_mapping_conflict",
                    hint="use another custom model name",
                )
            mapping[name] = official
        _write_text(target, json.dumps(mapping, indent=2, sort_keys=True) + "\n")

    _write_documents(root, layout, division, submitter, items)
    for p in items:
        for d in layout.owned_dirs(p.key):
            _remove_empty_dirs(root / d)
            for f in (root / d).rglob("*") if (root / d).is_dir() else []:
                if f.is_file() and f.stat().st_size > FILE_SIZE_LIMIT:
                    result.notes.append(
                        f"{f.relative_to(root)} is {f.stat().st_size / 1e6:.0f} MB; the "
                        f"official checker rejects files over 50 MB"
                    )


def _only_merged_fields_differ(current: dict, fields: dict, opts: PackageOptions) -> bool:
    """The description in the tree is the one these results would get, but for the fields they widen."""
    rest = [k for k in set(current) | set(fields) if k not in MERGED_SYSTEM_FIELDS]
    return (
        any(current.get(k) != fields.get(k) for k in MERGED_SYSTEM_FIELDS)
        and all(current.get(k) == fields.get(k) for k in rest)
        and (opts.system_file is None or not opts.force)
    )


def _widened_note(rel: Path, current: dict, fields: dict) -> str:
    changes = [f"{k} {current.get(k)!r} → {fields[k]!r}" for k in MERGED_SYSTEM_FIELDS if current.get(k) != fields[k]]
    return f"updated {rel} for the results joining it: {', '.join(changes)}"


def _add_lines(path: Path, items: list[str], headings: tuple[str, ...] = ()) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return  # not ours to repair: the checker reads the tree as it is
    updated = documents.add_list_items(text, items, headings)
    if updated != text:
        _write_text(path, updated)


def _write_documents(root: Path, layout: Layout, division: str, submitter: str, items: list[_Planned]) -> None:
    """documentation/ and src/ (code/): written when missing, never overwritten (the submitter may edit them)."""
    entries = [(p.key, p.imp) for p in items]
    doc = root / layout.documentation_dir(division, submitter)
    if not (doc / "README.md").exists():
        _write_text(
            doc / "README.md", documents.documentation_readme(submitter, division, entries, version=layout.version)
        )
    else:  # results joining a tree: listed too (the rest of the file is the submitter's)
        _add_lines(doc / "README.md", [documents.result_line(k, i) for k, i in entries], documents.RESULTS_HEADINGS)
    if not (doc / "calibration.md").exists():
        _write_text(doc / "calibration.md", documents.calibration_md(entries, {p.key: p.measurements for p in items}))
    src = root / layout.src_dir(division, submitter)
    copied = None
    if any(p.imp.kind == "run_dir" for p in items):
        import subtool

        copied = documents.SOURCE_DIR
        if not (src / copied).exists():
            documents.copy_source_tree(Path(subtool.__file__).parent, src / copied / "subtool")
        # an installable project: `pip install './src/subtool-<version>[run]'` works from the tree alone
        for name, text in (("pyproject.toml", documents.source_pyproject()), ("README.md", documents.source_readme())):
            if not (src / copied / name).exists():
                _write_text(src / copied / name, text)
    if not (src / "README.md").exists():
        _write_text(src / "README.md", documents.src_readme(entries, copied=copied))
    else:
        _add_lines(src / "README.md", [documents.src_line(k, i) for k, i in entries])
    for model in sorted({p.key.model for p in items}):
        target = src / model / "README.md"
        if not target.exists():
            _write_text(target, documents.model_src_readme(model, [e for e in entries if e[0].model == model]))
