"""`subtool all`: run → package → check → pack (→ publish), resumable.

OUT/state.json records, per stage, a fingerprint of its inputs and what it produced. A re-run skips every
finished stage whose inputs did not change, so a crash or Ctrl-C in a late stage never costs the benchmark run.
Each stage writes through temporary paths and renames, so an interrupted stage leaves nothing half-written and
is simply run again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from subtool import __version__, fsutil
from subtool.errors import EXIT_CHECK_FAILED, EXIT_OK, SubtoolError, Terminated, interruption_explained
from subtool.fsutil import atomic_write_json, exclusive, remove_leftovers
from subtool.mlperf.layout import check_name
from subtool.mlperf.rounds import DEFAULT_VERSION

STAGES = ("run", "package", "check", "pack", "publish")
STATE_SCHEMA = "subtool.state/1"


@dataclass
class PipelineOptions:
    submitter: str
    model: str = "bert-99"
    scenario: str = "Offline"
    model_path: Path | None = None
    dataset_path: Path | None = None
    out: Path = Path("subtool-out")
    run_style: str = "short"
    division: str | None = None
    system: str | None = None
    system_file: Path | None = None
    version: str | None = None  # None: the default round, or the latest that lists the model
    name: str = "mlperf_submission_short"
    target_qps: float | None = None
    backend: str = "auto"
    batch_size: int | None = None
    fork: str | None = None
    upstream: str | None = None
    base: str = "main"
    no_pr: bool = False
    allow_short: bool = False  # publish: DEMO / short-run trees are refused unless asked for (and then marked)
    replace: bool = False  # publish: the branch holds this tree only
    from_stage: str | None = None
    only: str | None = None
    force: bool = False
    extra: dict = field(default_factory=dict)  # backend options for the run (RunOptions.extra)
    compliance: list[str] | None = None  # None: what the model needs when the division is closed
    argv: list[str] = field(default_factory=list)
    wait: bool = False  # another subtool holds OUT: wait for it instead of stopping


@dataclass
class Outcome:
    out: Path
    stages: dict[str, str]  # stage → "done" | "skipped (unchanged)" | "not asked"
    run: dict = field(default_factory=dict)  # the run record's headline
    check_ok: bool | None = None
    findings: list[dict] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)
    publish: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_CHECK_FAILED if self.check_ok is False else EXIT_OK

    def to_dict(self) -> dict:
        return {
            "out": str(self.out),
            "stages": self.stages,
            "run": self.run,
            "check_ok": self.check_ok,
            "findings": self.findings,
            "artifacts": self.artifacts,
            "publish": self.publish,
            "exit_code": self.exit_code,
        }


def short_run_waivers(scenario: str, run_style: str) -> frozenset[str]:
    """The rules a short run breaks on purpose; the checker reports them as waived, by name."""
    if run_style != "short":
        return frozenset()
    # Only the duration: short runs are sized to meet every other official minimum LoadGen checks (query counts
    # for early stopping included), so no other rule needs waiving in any scenario.
    return frozenset({"perf.min_duration"})


# ------------------------------------------------------------------------------------------------ state
class State:
    """OUT/state.json: `stages` holds each stage's latest status (running, done, interrupted); `finished` keeps
    every finished stage by what it was for (model/scenario for run and package, the round's tree for the
    rest), so that one `--out` remembers several benchmarks and rounds, not only the last command's."""

    def __init__(self, path: Path):
        self.path = path
        self.data = {"schema": STATE_SCHEMA, "stages": {}, "finished": {}, "trees": {}}
        if path.is_file():
            try:
                loaded = json.loads(path.read_text())
                if (
                    isinstance(loaded, dict)
                    and loaded.get("schema") == STATE_SCHEMA
                    and isinstance(loaded.get("stages"), dict)
                ):
                    self.data.update(loaded)
            except (ValueError, OSError, RecursionError):
                pass  # an unreadable state means nothing is known to be finished: run everything
        for name in ("finished", "trees"):
            if not isinstance(self.data.get(name), dict):
                self.data[name] = {}

    def finished(self, stage: str, fingerprint: str, key: str = "") -> dict | None:
        entry = (self.data["finished"].get(stage) or {}).get(key)
        if not isinstance(entry, dict):
            entry = self.data["stages"].get(stage)  # a state.json from before `finished` existed
        if isinstance(entry, dict) and entry.get("status") == "done" and entry.get("inputs") == fingerprint:
            return entry
        return None

    def mark(self, stage: str, status: str, fingerprint: str, outputs: dict | None = None, key: str = "") -> None:
        entry = {
            "status": status,
            "inputs": fingerprint,
            "outputs": outputs or {},
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "subtool": __version__,
        }
        if key:
            entry["for"] = key
        self.data["stages"][stage] = entry
        finished = self.data["finished"].setdefault(stage, {})
        if status == "done":
            finished[key] = entry
        else:
            finished.pop(key, None)  # being redone: its earlier outputs are no longer known to stand
        atomic_write_json(self.path, self.data)


def _failpoint(stage: str, point: str) -> None:
    """Fault injection for the resume tests: SUBTOOL_FAILPOINT=<stage>:<start|end>:<kill|int>.

    `start` fires after the stage is marked running, `end` after its outputs are written but before it is
    marked done — the two moments where an interruption is most likely to leave something inconsistent.
    """
    spec = os.environ.get("SUBTOOL_FAILPOINT")
    if not spec:
        return
    want_stage, want_point, action = (spec.split(":") + ["", ""])[:3]
    if (want_stage, want_point) != (stage, point):
        return
    import signal

    os.kill(os.getpid(), signal.SIGKILL if action == "kill" else signal.SIGINT)
    time.sleep(5)  # the signal is delivered before this returns


def _fingerprint(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def _file_identity(path: Path | None) -> object:
    """Cheap identity of an input file or directory: path, sizes and modification times (no hashing GBs)."""
    if path is None:
        return None
    path = Path(path)
    if path.is_file():
        st = path.stat()
        return [str(path.resolve()), st.st_size, st.st_mtime_ns]
    if path.is_dir():
        return [
            [str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns]
            for p in sorted(path.rglob("*"))
            if p.is_file()
        ]
    return str(path)


def tree_digest(root: Path) -> str:
    """sha256 over every file's relative path and content below root."""
    h = hashlib.sha256()
    if not root.exists():
        return "absent"
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + b"\0")
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def _selected(opts: PipelineOptions) -> list[str]:
    for name, value in (("--only", opts.only), ("--from-stage", opts.from_stage)):
        if value is not None and value not in STAGES:
            raise SubtoolError(f"{name} {value!r} is not a stage; stages: {', '.join(STAGES)}", rule="cli.usage")
    if opts.only:
        return [opts.only]
    start = STAGES.index(opts.from_stage) if opts.from_stage else 0
    return list(STAGES[start:])


# ----------------------------------------------------------------------------------------------- stages
def out_paths(out: Path, version: str) -> dict[str, Path]:
    """Where each stage writes. One tree per round: the default round's tree is OUT/submission (with check/,
    artifacts/, full_logs/ beside it); another round's lives under OUT/<round>/, so packing a v5.0 result never
    mixes rounds in one tree, and artifacts that said PASS are never overwritten by another round's."""
    out = Path(out)
    base = out if version == DEFAULT_VERSION else out / version
    return {
        "runs": out / "runs",
        "tree": base / "submission",
        "full_logs": base / "full_logs",
        "check": base / "check",
        "artifacts": base / "artifacts",
    }


def run_pipeline(opts: PipelineOptions, console=None) -> Outcome:
    from rich.console import Console

    console = console or Console(stderr=True)
    for flag, name in (("--submitter", opts.submitter), ("--system", opts.system)):
        if flag == "--submitter" or name is not None:
            check_name(name, flag[2:], flag=flag)
        fsutil.check_name_fits(name or "", opts.out, flag)
    opts = _with_round(opts, console)
    _check_round(opts)
    selected = _selected(opts)
    out = Path(opts.out)

    def waiting(pid: str) -> None:
        console.print(
            f"waiting for subtool pid {pid}, which is writing to {out} (--wait)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    with exclusive(out, wait=opts.wait, on_wait=waiting):
        if not os.access(out, os.W_OK | os.X_OK):
            raise SubtoolError("output directory is not writable", path=out, rule="run.out_dir")
        for left in remove_leftovers(out):
            console.print(
                f"removed what an interrupted run left: {left}", markup=False, highlight=False, soft_wrap=True
            )
        return _run_stages(opts, out, selected, console)


def _run_stages(opts: PipelineOptions, out: Path, selected: list[str], console) -> Outcome:
    state = State(out / "state.json")
    paths = out_paths(out, opts.version)
    _check_tree_round(state, out, paths["tree"], opts.version)
    scenario = _scenario_name(opts.scenario)
    run_dir = paths["runs"] / opts.model / scenario
    result_key, tree_key = f"{opts.model}/{scenario}", str(paths["tree"].relative_to(out))
    waive = short_run_waivers(scenario, opts.run_style)
    outcome = Outcome(out=out, stages={s: "not asked" for s in STAGES})
    if not opts.fork:
        outcome.stages["publish"] = "not asked (no --fork)"
    started = time.time()
    stage = _stage_runner(opts, state, selected, outcome, console)
    run_digest = _run_and_package(opts, stage, paths, run_dir, result_key, outcome, console)
    state.data["trees"][tree_key] = opts.version

    # 3. check, 4. pack, 5. publish read only the tree: one digest after packaging serves all three
    tree_id = tree_digest(paths["tree"])
    check_inputs = _fingerprint("check", tree_id, opts.version, sorted(waive))
    check_out = stage(
        "check",
        check_inputs,
        lambda: _do_check(opts, paths, waive, console),
        key=tree_key,
        intact=lambda done: all((paths["check"] / f).is_file() for f in ("summary.csv", "report.json")),
    )
    if "ok" in (check_out or {}):
        outcome.check_ok = bool(check_out["ok"])
        outcome.findings = check_out.get("findings", [])
    pack_inputs = _fingerprint("pack", tree_id, run_digest, opts.name, opts.version, sorted(waive))
    pack_out = stage(
        "pack",
        pack_inputs,
        lambda: _do_pack(opts, run_dir, paths, waive, console),
        key=tree_key,
        intact=lambda done: all(
            (paths["artifacts"] / Path(p).name).is_file() for p in done["outputs"].get("artifacts", {}).values()
        ),
    )
    if pack_out:
        outcome.artifacts = pack_out.get("artifacts", {})
    if opts.fork:
        pub_inputs = _fingerprint(
            "publish", tree_id, opts.fork, opts.upstream, opts.base, opts.no_pr, opts.allow_short, opts.replace
        )
        pub_out = stage("publish", pub_inputs, lambda: _do_publish(opts, paths, console), key=tree_key)
        if pub_out:
            outcome.publish = pub_out
    _print_summary(outcome, console, time.time() - started)
    return outcome


def _run_and_package(
    opts: PipelineOptions, stage, paths: dict, run_dir: Path, result_key: str, outcome: Outcome, console
) -> str:
    """Stages 1 and 2, both keyed by model/scenario; returns the run directory's digest."""
    scenario = run_dir.name
    # 1. run: finished only while its run directory is as it was left (same digest)
    run_digest = tree_digest(run_dir)
    run_inputs = _fingerprint(
        "run",
        opts.model,
        scenario,
        opts.run_style,
        opts.target_qps,
        opts.backend,
        opts.batch_size,
        _file_identity(opts.model_path),
        _file_identity(opts.dataset_path),
        *([opts.extra] if opts.extra else []),
        *([tests] if (tests := _compliance_tests(opts)) else []),
        *([opts.version] if opts.version != DEFAULT_VERSION else []),
    )  # its seeds
    run_out = stage(
        "run",
        run_inputs,
        lambda: _do_run(opts, paths["runs"], tests, console),
        key=result_key,
        intact=lambda done: (
            done["outputs"].get("digest", run_digest) == run_digest and (run_dir / "run.json").is_file()
        ),
    )
    if outcome.stages["run"].startswith("done"):  # it ran just now: its digest is the new one
        run_digest = run_out.get("digest") or tree_digest(run_dir)
    outcome.run = _headline(_read_run_record(run_dir))

    # 2. package: finished while the tree still holds what it packaged
    pkg_inputs = _fingerprint(
        "package",
        run_digest,
        opts.submitter,
        opts.division,
        opts.system,
        _file_identity(opts.system_file),
        opts.version,
    )
    stage(
        "package",
        pkg_inputs,
        lambda: _do_package(opts, run_dir, paths, console),
        key=result_key,
        intact=lambda done: (
            bool(done["outputs"].get("result_dirs"))
            and all((paths["tree"] / d).is_dir() for d in done["outputs"]["result_dirs"])
        ),
    )
    return run_digest


def _stage_runner(opts: PipelineOptions, state: State, selected: list[str], outcome: Outcome, console):
    """`stage(name, fingerprint, action, key, intact)`: skip a finished stage whose inputs did not change and
    whose outputs are still intact, else run it, recording running → done (or interrupted) in state.json."""

    def stage(name: str, fingerprint: str, action, *, key: str, intact=None):
        if name not in selected:
            done = state.finished(name, fingerprint, key)
            return done["outputs"] if done else None
        index = STAGES.index(name) + 1
        done = None if opts.force else state.finished(name, fingerprint, key)
        if done is not None and (intact is None or intact(done)):
            console.print(f"[dim][{index}/5] {name}: unchanged since {done['at']}, skipped[/]")
            outcome.stages[name] = "skipped (unchanged)"
            return done["outputs"]
        console.rule(f"[bold][{index}/5] {name}")
        state.mark(name, "running", fingerprint, key=key)
        t0 = time.time()

        def interrupted() -> None:  # also run by the signal watchdog when the main thread cannot unwind
            state.mark(name, "interrupted", fingerprint, key=key)

        fsutil.EMERGENCY_CALLBACKS.append(interrupted)
        try:
            _failpoint(name, "start")
            outputs = action()
            _failpoint(name, "end")
        except KeyboardInterrupt as exc:
            interrupted()
            why = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
            console.print(
                f"[red]{why} in {name}[/]: nothing half-written; run the same command again to resume from this stage",
                highlight=False,
                soft_wrap=True,
            )
            interruption_explained(True)  # the CLI prints no second line
            raise
        except SubtoolError as err:
            err.hint = err.hint or "fix this, then run the same command again: finished stages are kept"
            raise
        finally:
            fsutil.EMERGENCY_CALLBACKS.remove(interrupted)
        state.mark(name, "done", fingerprint, outputs, key=key)
        outcome.stages[name] = f"done in {time.time() - t0:.1f} s"
        return outputs

    return stage


def _check_tree_round(state: State, out: Path, tree: Path, version: str) -> None:
    """A tree holds one round: refuse to add results of another round to a tree state.json says is not it."""
    recorded = state.data["trees"].get(str(tree.relative_to(out)))
    if recorded and recorded != version and tree.exists():
        raise SubtoolError(
            f"the tree holds {recorded} results and this run is for {version}; a tree holds one round",
            path=tree,
            rule="pipeline.round_mismatch",
            hint=f"use --version {recorded}, or another --out for {version}",
        )


def _scenario_name(scenario: str) -> str:
    from subtool.runner.harness import check_scenario

    return check_scenario(scenario)


def _compliance_tests(opts: PipelineOptions) -> list[str]:
    """Explicit --compliance, else the tests the model needs when the result goes to the closed division."""
    if opts.compliance is not None:
        return list(opts.compliance)
    from subtool.runner.workload import get_workload

    return list(get_workload(opts.model).spec.compliance) if _division(opts) == "closed" else []


def _division(opts: PipelineOptions) -> str:
    demo = (opts.model_path is None and opts.dataset_path is None) or bool(opts.extra.get("demo"))
    return opts.division or ("open" if demo else "closed")


def _with_round(opts: PipelineOptions, console) -> PipelineOptions:
    """Options with the round every stage works for: --version, else the default or the model's last round."""
    import dataclasses

    from subtool.mlperf.round_choice import announce, choose_round

    return dataclasses.replace(opts, version=announce(choose_round([opts.model], opts.version), console).version)


def _check_round(opts: PipelineOptions) -> None:
    """A closed result of a benchmark the round lists only in another variant would fail at packaging: say so
    before the run."""
    from subtool.mlperf.benchmarks import benchmark
    from subtool.mlperf.round_choice import refuse_closed
    from subtool.mlperf.rounds import check_version

    bench = benchmark(opts.model)
    if bench is not None and _division(opts) == "closed":
        refuse_closed(bench, check_version(opts.version))


def _do_run(opts: PipelineOptions, runs: Path, compliance: list[str], console) -> dict:
    from subtool.runner.api import RunOptions, run_benchmark

    record = run_benchmark(
        RunOptions(
            model=opts.model,
            scenario=opts.scenario,
            mode="both",
            model_path=opts.model_path,
            dataset_path=opts.dataset_path,
            out=runs,
            run_style=opts.run_style,
            target_qps=opts.target_qps,
            backend=opts.backend,
            batch_size=opts.batch_size,
            extra=dict(opts.extra),
            compliance=compliance,
            argv=opts.argv,
            round=opts.version,
        ),
        console=console,
    )
    run_dir = runs / record["model"] / record["scenario"]
    return {"run_dir": str(run_dir), "digest": tree_digest(run_dir)}


def _read_run_record(run_dir: Path) -> dict:
    from subtool.mlperf.run_record import read_run_record

    if not (run_dir / "run.json").exists():
        raise SubtoolError(
            "no finished run here",
            path=run_dir / "run.json",
            rule="pipeline.no_run",
            hint="run the 'run' stage first (drop --from-stage/--only)",
        )
    return read_run_record(run_dir / "run.json", rule="pipeline.no_run", hint="re-run with --only run")


def _headline(record: dict) -> dict:
    perf = (record.get("modes") or {}).get("performance") or {}
    acc = (record.get("modes") or {}).get("accuracy") or {}
    return {
        "model": record.get("model"),
        "scenario": record.get("scenario"),
        "demo": record.get("demo"),
        "run_style": record.get("run_style"),
        "result": perf.get("result"),
        "units": perf.get("units"),
        "validity": perf.get("result_validity"),
        "accuracy": acc.get("metrics"),
        # LoadGen's percentiles (ms): query latency, and TTFT/TPOT for LLM runs with token latencies
        **{k: perf[k] for k in ("latency_ms", "ttft_ms", "tpot_ms") if isinstance(perf.get(k), dict)},
    }


def _do_package(opts: PipelineOptions, run_dir: Path, paths: dict, console) -> dict:
    from subtool.package.api import PackageOptions, package_results

    with fsutil.undo_on_error(paths["tree"], paths["full_logs"]):  # a failure leaves no new folder or file
        result = package_results(
            PackageOptions(
                from_dirs=[run_dir],
                perf=None,
                acc=None,
                compliance=[],
                model=None,
                scenario=None,
                submitter=opts.submitter,
                division=opts.division,
                system=opts.system,
                system_file=opts.system_file,
                version=opts.version,
                out=paths["tree"],
                full_logs=paths["full_logs"],
                force=True,
            ),
            console=console,
        )
    results = result.to_dict().get("results", [])
    tree = Path(paths["tree"]).resolve()
    dirs = [os.path.relpath(Path(r["path"]).resolve(), tree) for r in results if r.get("path")]
    return {
        "tree": str(paths["tree"]),
        "results": results,
        "result_dirs": [d for d in dirs if not d.startswith("..")],
    }  # relative: an OUT copied elsewhere


def _do_check(opts: PipelineOptions, paths: dict, waive: frozenset[str], console) -> dict:
    from subtool.checker.api import CheckOptions, check_tree
    from subtool.checker.report import print_human, report_to_dict, write_report_json, write_summary_csv

    report = check_tree(paths["tree"], CheckOptions(version=opts.version, submitter=opts.submitter, waive=waive))
    write_summary_csv(report, paths["check"] / "summary.csv")
    write_report_json(report, paths["check"] / "report.json")
    print_human(report, console)
    doc = report_to_dict(report)
    findings = [f for f in doc.get("findings", []) if f.get("severity") in ("error", "waived")]
    return {
        "ok": bool(report.ok),
        "summary_csv": str(paths["check"] / "summary.csv"),
        "report": str(paths["check"] / "report.json"),
        "findings": findings,
    }


def _do_pack(opts: PipelineOptions, run_dir: Path, paths: dict, waive: frozenset[str], console) -> dict:
    from subtool.pack.api import PackOptions, pack_tree

    # this run, and every earlier run under runs/ whose results the tree holds: .run/.tstamps cover them all
    result = pack_tree(
        PackOptions(
            tree=paths["tree"],
            out=paths["artifacts"],
            name=opts.name,
            runs=[run_dir, paths["runs"]],
            version=opts.version,
            waive=waive,
        ),
        console=console,
    )
    return {"ok": bool(result.ok), "artifacts": {k: str(v) for k, v in result.artifacts.items()}}


def _do_publish(opts: PipelineOptions, paths: dict, console) -> dict:
    from subtool.publish.api import PublishOptions, publish_tree

    result = publish_tree(
        PublishOptions(
            tree=paths["tree"],
            fork=opts.fork,
            upstream=opts.upstream,
            base=opts.base,
            branch=None,
            title=None,
            api_url=os.environ.get("GITHUB_API_URL"),
            token_env=None,
            no_pr=opts.no_pr,
            dry_run=False,
            cache=Path(opts.out) / ".publish-cache",
            allow_short=opts.allow_short,
            replace=opts.replace,
        ),
        console=console,
    )
    return result.to_dict()


def _print_summary(outcome: Outcome, console, seconds: float) -> None:
    from rich.table import Table

    from subtool.pack.report import format_number

    run = outcome.run
    table = Table(title=f"subtool all — {seconds:.0f} s", show_header=False, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # a path too long for the width folds onto the next line, never cut
    label = f"{run.get('model')} {run.get('scenario')}"
    if run.get("demo"):
        label += " (embedded demo: random weights, open division)"
    table.add_row("benchmark", label)
    table.add_row("run style", str(run.get("run_style")))
    if run.get("result") is not None:
        table.add_row("result", f"{run['result']:.2f} {run.get('units') or ''} ({run.get('validity')})")
    if run.get("accuracy"):
        acc = run["accuracy"]
        table.add_row("accuracy", ", ".join(f"{k} {format_number(v)}" for k, v in acc.items()))
    for key, title in (("ttft_ms", "TTFT (ms)"), ("tpot_ms", "TPOT (ms)")):
        if run.get(key):
            table.add_row(title, ", ".join(f"{p} {format_number(v)}" for p, v in run[key].items()))
    if outcome.check_ok is not None:
        waived = sorted({f["rule"] for f in outcome.findings if f.get("severity") == "waived"})
        errors = [f for f in outcome.findings if f.get("severity") == "error"]
        verdict = "[green]PASS[/]" if outcome.check_ok else f"[red]FAIL[/] ({len(errors)} errors)"
        if waived:
            verdict += f" — waived: {', '.join(waived)}"
        table.add_row("checker", verdict)
    for key, path in outcome.artifacts.items():
        table.add_row(key, str(path))
    if outcome.publish:
        for key in ("branch", "pr_url", "compare_url"):
            if outcome.publish.get(key):
                table.add_row(key, str(outcome.publish[key]))
    for name, status in outcome.stages.items():
        table.add_row(f"stage {name}", status)
    console.print(table)
