"""`subtool pack`: the competition artifacts, and `subtool pack --verify`: proof that they are what was checked.

pack_tree writes, into one staging folder beside the final place, `<name>.tar.gz` (reproducible, streamed),
`<name>_summary.csv` (the checker's), `<name>_summary.json` (MLC's form + a `subtool` block), `<name>.run`,
`<name>.tstamps`, `<name>.md` and the `<name>.sha256` manifest; only when all are written do they replace the
previous ones, so a failure leaves no half-written artifact. A tree the checker finds errors in is still packed
(a team must hand in something) but the verdict says FAIL everywhere and `.ok` is false (exit 1).

verify_tarball (pack_verify.py) re-hashes the artifacts and every member against the manifest, unpacks the tarball
safely into a temporary folder and re-runs the checker there with the rules version recorded at pack time.
"""

from __future__ import annotations

import os
import platform
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subtool import __version__
from subtool.errors import SubtoolError, os_error
from subtool.fsutil import sha256_file, utf8_bytes
from subtool.mlperf.layout import DIVISIONS, check_name
from subtool.mlperf.logs import ALL_KEYS, latency_percentiles, read_loadgen_log
from subtool.output_set import check_replaceable, replace_all
from subtool.pack.checking import finding_views as _finding_views
from subtool.pack.checking import portable_report
from subtool.pack.checking import run_checker as _run_checker
from subtool.pack.checking import verdict as _verdict
from subtool.pack.inputs import RunInfo, TreeInfo, scan_tree
from subtool.pack.manifest import Manifest
from subtool.pack.report import FindingView, ReportInput, ResultView, render_report
from subtool.pack.runs import PackedRuns, collect_runs
from subtool.pack.runscript import PackCommand, render_run_script, render_tstamps
from subtool.pack.summary import render_summary_json
from subtool.pack.tarball import TarballStats, iter_tree, write_tarball

OFFICIAL_MIN_DURATION_MS = 600_000


@dataclass
class PackOptions:
    tree: Path
    out: Path
    name: str = "mlperf_submission_short"
    runs: list[Path] = field(default_factory=list)
    version: str | None = "v6.1"  # None: pack_tree decides from the tree's models
    waive: frozenset[str] = frozenset()


@dataclass
class PackResult:
    ok: bool
    verdict: str
    name: str
    out: Path
    artifacts: dict[str, Path]
    sha256: dict[str, str]
    errors: int
    warnings: int
    waived: int
    members: int
    tarball_bytes: int
    run_style: str
    latencies: dict = field(default_factory=dict)  # result folder → {"ttft_ms" | "tpot_ms" | …: {"p50": ms, …}}

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "verdict": self.verdict,
            "name": self.name,
            "out": str(self.out),
            "artifacts": {k: str(v) for k, v in self.artifacts.items()},
            "sha256": dict(self.sha256),
            "errors": self.errors,
            "warnings": self.warnings,
            "waived": self.waived,
            "members": self.members,
            "tarball_bytes": self.tarball_bytes,
            "run_style": self.run_style,
            "latency_percentiles": dict(self.latencies),
        }


def artifact_names(name: str) -> dict[str, str]:
    return {
        "tarball": f"{name}.tar.gz",
        "summary_json": f"{name}_summary.json",
        "summary_csv": f"{name}_summary.csv",
        "run": f"{name}.run",
        "tstamps": f"{name}.tstamps",
        "md": f"{name}.md",
        "manifest": f"{name}.sha256",
    }


def _result_views(report) -> dict[str, ResultView]:
    views = {}
    for r in getattr(report, "results", None) or []:
        result_id = getattr(r, "result", None)
        if isinstance(result_id, str):
            views[result_id] = ResultView(
                passed=bool(getattr(r, "passed", False)),
                failed=list(getattr(r, "failed", []) or []),
                waived=list(getattr(r, "waived", []) or []),
                value=getattr(r, "value", None),
                units=str(getattr(r, "units", "") or ""),
                accuracy=str(getattr(r, "accuracy", "") or ""),
            )
    return views


def result_latencies(tree: Path, tree_info: TreeInfo) -> dict[str, dict]:
    """Latency percentiles (ms) of each result's performance run, from its detail log in the tree (LLMs: TTFT and
    TPOT too); a log the checker refuses gives none here, the checker says why."""
    out = {}
    for result in tree_info.results:
        logs = sorted((tree / result.rel_dir / "performance").glob("run_*/mlperf_log_detail.txt"))
        if not logs:
            continue
        log = read_loadgen_log(logs[0], ALL_KEYS, follow_links=True)
        if log.problems:
            continue
        if found := latency_percentiles(log.decode_all()):
            out[result.rel_dir] = found
    return out


# ------------------------------------------------------------------------------------------------- pack
def _check_options(opts: PackOptions) -> tuple[Path, Path]:
    check_name(opts.name, "artifact name", flag="--name")
    tree, out = Path(opts.tree), Path(opts.out)
    if not tree.is_dir():
        raise SubtoolError("the tree to pack does not exist or is not a folder", path=tree, rule="pack.tree")
    if not any((tree / d).is_dir() for d in DIVISIONS):
        raise SubtoolError(
            "no closed/, open/ or network/ folder: this is not a submission tree",
            path=tree,
            rule="pack.empty_tree",
            hint=f"did you mean {tree / 'submission'}? (`subtool all` writes its tree there)"
            if any((tree / "submission" / d).is_dir() for d in DIVISIONS)
            else "pass the tree root given to `subtool package --out` (`subtool all`'s is OUT/submission)",
        )
    out_real = Path(os.path.realpath(out))
    for division in DIVISIONS:
        div_real = Path(os.path.realpath(tree / division))
        if out_real == div_real or div_real in out_real.parents:
            raise SubtoolError(
                "the artifact folder is inside the tree it packs",
                path=out,
                rule="pack.out_inside_tree",
                hint="give --out a folder outside closed/ and open/",
            )
    return tree, out


def _run_style(runs: list[RunInfo], report, tree_info: TreeInfo, waive: frozenset[str]) -> str:
    """The run directories say it; else the checker (per result); else the LoadGen logs' min_duration."""
    styles = sorted({r.run_style for r in runs if r.run_style})
    if not styles:
        styles = sorted(
            {str(r.run_style) for r in getattr(report, "results", None) or [] if getattr(r, "run_style", None)}
        )
    if styles:
        return styles[0] if len(styles) == 1 else "mixed (" + ", ".join(styles) + ")"
    durations = [r.perf.get("effective_min_duration_ms") for r in tree_info.results]
    durations = [d for d in durations if isinstance(d, (int, float))]
    if durations and min(durations) < OFFICIAL_MIN_DURATION_MS:
        return "short"
    if "perf.min_duration" in waive:
        return "short"
    return "valid" if durations else "unknown"


def _marked_demo(system) -> bool:
    """Without run directories: `subtool package` names demo systems `…-demo` and starts their notes with DEMO."""
    f = system.fields
    return (
        system.name.endswith("-demo")
        or "(DEMO)" in str(f.get("system_name", ""))
        or any(str(f.get(k, "")).startswith("DEMO") for k in ("hw_notes", "sw_notes"))
    )


def _versions(runs: list[RunInfo], tree_info: TreeInfo) -> dict:
    versions: dict[str, object] = {
        "subtool": __version__,
        "python_packing": platform.python_version(),
        "loadgen_in_logs": tree_info.loadgen_versions(),
    }
    for run in runs:
        for key, value in run.versions.items():
            versions.setdefault(key, value)
    return versions


def _subtool_block(
    opts: PackOptions,
    verdict: str,
    findings: list[FindingView],
    run_style: str,
    demo: bool,
    runs: list[RunInfo],
    tree_info: TreeInfo,
    hashes: dict[str, str],
    stats,
) -> dict:
    def brief(f: FindingView) -> dict:
        return {"rule": f.rule, "path": f.path, "message": f.message, **({"hint": f.hint} if f.hint else {})}

    return {
        "schema": "subtool.pack/1",
        "name": opts.name,
        "verdict": verdict,
        "rules": opts.version,
        "waivers": sorted(opts.waive),
        "counts": {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "waived")},
        "errors": [brief(f) for f in findings if f.severity == "error"],
        "waived": [brief(f) for f in findings if f.severity == "waived"],
        "run_style": run_style,
        "demo": demo,
        "versions": _versions(runs, tree_info),
        "artifacts": dict(sorted(hashes.items())),
        "tarball": {
            "files": len(stats.members),
            "folders": stats.directories,
            "bytes": stats.size,
            "content_bytes": stats.content_bytes,
        },
    }


def _write_text(path: Path, text: str) -> str:
    data = utf8_bytes(text)
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return sha256_file(path)


def pack_tree(opts: PackOptions, console=None) -> PackResult:
    tree, out = _check_options(opts)
    if opts.version is None:  # the round the tree's models point to, decided here (said when subtool chose it)
        from dataclasses import replace

        from subtool.mlperf.round_choice import announce, choose_round_for_tree

        chosen = choose_round_for_tree(tree, None)
        opts = replace(opts, version=(announce(chosen, console) if console else chosen).version)
    tree_info = scan_tree(tree)
    packed = collect_runs([Path(p) for p in opts.runs], tree_info)  # every run whose results the tree holds
    waive = frozenset(opts.waive)
    names = artifact_names(opts.name)
    final = {kind: out / fname for kind, fname in names.items()}
    check_replaceable(final.values())  # something in the way of one: said before the checker's minutes
    say = console.print if console is not None else (lambda *a, **k: None)

    # Hash the tree before the checker reads it and compare with what goes into the tarball after: the tarball
    # holds exactly the bytes that were checked. This pass also rejects links and odd files before any output.
    before = _hash_tree(tree, out)
    say(
        f"pack: checking {tree} (rules {opts.version}"
        + (f", waived: {', '.join(sorted(waive))}" if waive else "")
        + ")",
        highlight=False,
    )
    report = _run_checker(tree, opts.version, waive)

    out.mkdir(parents=True, exist_ok=True)
    # the pid in its name tells a later `all` whether its writer is gone (fsutil.remove_leftovers)
    staging = Path(tempfile.mkdtemp(prefix=f".{opts.name}.{os.getpid()}.", suffix=".staging", dir=out))
    staged = {kind: staging / fname for kind, fname in names.items()}
    try:
        stats = _stage_tarball(tree, out, staged["tarball"], before)
        say(
            f"pack: {len(stats.members)} files ({stats.content_bytes / 1e6:.1f} MB) → {names['tarball']} "
            f"({stats.size / 1e6:.1f} MB)",
            highlight=False,
        )
        checked = _judge(opts, tree, tree_info, packed, waive, report, stats)
        hashes = _write_artifacts(checked, names, staged)
        _say_replaced(say, final["tarball"], stats.sha256)
        # Everything is written: now move it into place (manifest last, so it never names missing files), every
        # destination checked first, so that one in the way leaves the previous set whole.
        order = ("tarball", "summary_csv", "summary_json", "run", "tstamps", "md", "manifest")
        replace_all((staged[kind], final[kind]) for kind in order)
    except (OSError, SubtoolError) as exc:
        raise _at_destination(exc, staged, final) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    result = _pack_result(checked, out, names, hashes)
    _say_verdict(say, result, checked.findings)
    return result


def _at_destination(exc: Exception, staged: dict[str, Path], final: dict[str, Path]) -> Exception:
    """An error about a staged artifact names the artifact's destination: the staging folder is gone by the
    time anyone reads the error."""
    where = {str(staged[kind]): final[kind] for kind in staged}
    if isinstance(exc, SubtoolError):
        if exc.path in where:
            exc.path = str(where[exc.path])
        return exc
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) in where:
        return os_error(exc, path=where[str(exc.filename)])
    return exc


def _say_replaced(say, old_tarball: Path, new_sha256: str) -> None:
    """Packing the same tree again gives the same bytes; a different tarball under the same name is replaced,
    and said so (never silently)."""
    if not old_tarball.is_file():
        return
    old = sha256_file(old_tarball)
    if old != new_sha256:
        say(
            f"pack: replacing the artifacts of an earlier, different pack in {old_tarball.parent} "
            f"({old_tarball.name}: sha256 {old[:12]}… → {new_sha256[:12]}…; --name keeps both)",
            highlight=False,
            markup=False,
        )


@dataclass
class _Checked:
    """The checked tree and its tarball: what every artifact written after them repeats."""

    opts: PackOptions
    tree: Path
    tree_info: TreeInfo
    packed: PackedRuns
    waive: frozenset[str]
    report: Any  # the checker's report, paths made relative to the tree
    stats: TarballStats
    verdict: str
    findings: list[FindingView]
    run_style: str
    demo: bool
    latencies: dict


def _stage_tarball(tree: Path, out: Path, dest: Path, before: dict[str, str]) -> TarballStats:
    from subtool.pack.safe_tar import PackingGate, Refused

    gate = PackingGate()
    try:
        with open(dest, "wb") as fh:
            stats = write_tarball(tree, fh, out_dir=out, gate=gate)
            fh.flush()
            os.fsync(fh.fileno())
        gate.finished(stats.size)
    except OSError as exc:  # a full disk while writing: the tarball is named (the write's error names no file)
        if exc.filename is not None:
            raise
        raise os_error(exc, path=dest) from None
    except Refused as refused:
        raise SubtoolError(
            f"`subtool pack --verify` and `subtool score` would refuse this tarball: {refused.message}",
            path=tree,
            rule=refused.rule,
            hint="leave traces and other large or deeply nested files out of the tree (the limits: "
            "subtool/pack/safe_tar.py ExtractLimits)",
        ) from None
    _ensure_unchanged(tree, before, stats.members)
    return stats


def _judge(
    opts: PackOptions,
    tree: Path,
    tree_info: TreeInfo,
    packed: PackedRuns,
    waive: frozenset[str],
    report,
    stats: TarballStats,
) -> _Checked:
    runs = packed.runs
    return _Checked(
        opts=opts,
        tree=tree,
        tree_info=tree_info,
        packed=packed,
        waive=waive,
        verdict=_verdict(report),
        findings=_finding_views(report, tree),
        run_style=_run_style(runs, report, tree_info, waive),
        demo=any(r.demo for r in runs) or any(_marked_demo(s) for s in tree_info.systems),
        report=portable_report(report, tree),
        stats=stats,
        latencies=result_latencies(tree, tree_info),
    )


def _write_artifacts(c: _Checked, names: dict[str, str], staged: dict[str, Path]) -> dict[str, str]:
    """Write every artifact but the tarball into staging; return their hashes (the manifest's list)."""
    from subtool.checker.report import write_summary_csv

    opts = c.opts
    write_summary_csv(c.report, staged["summary_csv"])
    hashes = {names["tarball"]: c.stats.sha256, names["summary_csv"]: sha256_file(staged["summary_csv"])}
    command = PackCommand(
        tree=Path(opts.tree),
        out=Path(opts.out),
        name=opts.name,
        runs=[Path(r) for r in opts.runs],
        version=opts.version,
        waive=tuple(sorted(c.waive)),
    )
    hashes[names["run"]] = _write_text(
        staged["run"], render_run_script(opts.name, c.packed, c.tree_info, command, c.run_style)
    )
    os.chmod(staged["run"], 0o755)  # a script someone can re-run as ./<name>.run
    tstamps = render_tstamps(c.packed, c.tree_info)
    hashes[names["tstamps"]] = _write_text(staged["tstamps"], tstamps)
    hashes[names["md"]] = _write_text(staged["md"], render_report(_report_input(c, tstamps, hashes)))
    block = _subtool_block(
        opts, c.verdict, c.findings, c.run_style, c.demo, c.packed.runs, c.tree_info, hashes, c.stats
    )
    if c.latencies:
        block["latency_percentiles"] = c.latencies
    hashes[names["summary_json"]] = _write_text(
        staged["summary_json"], render_summary_json(staged["summary_csv"], block)
    )
    manifest = Manifest(
        name=opts.name,
        version=opts.version,
        waive=tuple(sorted(c.waive)),
        verdict=c.verdict,
        subtool_version=__version__,
        artifacts=dict(hashes),
        members=dict(c.stats.members),
    )
    _write_text(staged["manifest"], manifest.render())
    return hashes


def _report_input(c: _Checked, tstamps: str, hashes: dict[str, str]) -> ReportInput:
    return ReportInput(
        name=c.opts.name,
        version=c.opts.version,
        verdict=c.verdict,
        waive=tuple(sorted(c.waive)),
        run_style=c.run_style,
        demo=c.demo,
        tree=c.tree_info,
        runs=c.packed.runs,
        rows=list(getattr(c.report, "rows", []) or []),
        findings=c.findings,
        tstamps=tstamps,
        hashes=dict(hashes),
        verdicts=_result_views(c.report),
        latencies=c.latencies,
    )


def _pack_result(c: _Checked, out: Path, names: dict[str, str], hashes: dict[str, str]) -> PackResult:
    counts = {s: sum(1 for f in c.findings if f.severity == s) for s in ("error", "warning", "waived")}
    return PackResult(
        ok=bool(c.report.ok),
        verdict=c.verdict,
        name=c.opts.name,
        out=out,
        artifacts={kind: out / fname for kind, fname in names.items()},
        sha256=hashes,
        errors=counts["error"],
        warnings=counts["warning"],
        waived=counts["waived"],
        members=len(c.stats.members),
        tarball_bytes=c.stats.size,
        run_style=c.run_style,
        latencies=c.latencies,
    )


def _hash_tree(tree: Path, out: Path) -> dict[str, str]:
    return {name: sha256_file(path) for name, path, st in iter_tree(tree, out) if stat.S_ISREG(st.st_mode)}


def _ensure_unchanged(tree: Path, before: dict[str, str], packed: dict[str, str]) -> None:
    changed = sorted(set(before) ^ set(packed) | {n for n in set(before) & set(packed) if before[n] != packed[n]})
    if changed:
        raise SubtoolError(
            f"the tree changed while it was being checked and packed ({len(changed)} file(s), e.g. {changed[0]})",
            path=tree,
            rule="pack.tree_changed",
            hint="let whatever writes into the tree finish, then pack again",
        )


def _say_verdict(say, result: PackResult, findings: list[FindingView]) -> None:
    say(
        f"pack: artifacts in {result.out}: " + ", ".join(Path(p).name for p in result.artifacts.values()),
        highlight=False,
    )
    waived = f", {result.waived} waived" if result.waived else ""
    if result.ok:
        say(
            f"[bold green]PASS[/]: the checker found no errors ({result.warnings} warning(s){waived}); "
            f"run style {result.run_style}.",
            highlight=False,
        )
        return
    say(
        f"[bold red]FAIL[/]: the checker found {result.errors} error(s){waived}. The artifacts were written anyway "
        "(a team must hand in something) and say FAIL; fix these and pack again:",
        highlight=False,
    )
    errors = [f for f in findings if f.severity == "error"]
    for f in errors[:10]:
        say(f"  {f.rule} {f.path}: {f.message}", highlight=False, markup=False)
    if any(f.rule == "perf.min_duration" for f in errors):  # a demo or a short run: what `all` waives itself
        say(
            "  a short run (the demo's too) is packed with --waive perf.min_duration; the artifacts say so",
            highlight=False,
            markup=False,
        )


# verify lives in pack_verify (it unpacks through safe_tar, the extraction `subtool score` uses)
from subtool.pack.verify import VerifyResult, verify_tarball  # noqa: E402,F401
