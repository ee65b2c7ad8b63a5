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

from subtool import __version__
from subtool.errors import EXIT_CHECK_FAILED, EXIT_OK, SubtoolError
from subtool.fsutil import atomic_write_json
from subtool.submission.layout import DEFAULT_VERSION

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
    version: str | None = None        # None: the default round, or the latest that lists the model
    name: str = "mlperf_submission_short"
    target_qps: float | None = None
    backend: str = "auto"
    batch_size: int | None = None
    fork: str | None = None
    upstream: str | None = None
    base: str = "main"
    no_pr: bool = False
    from_stage: str | None = None
    only: str | None = None
    force: bool = False
    extra: dict = field(default_factory=dict)     # backend options for the run (RunOptions.extra)
    compliance: list[str] | None = None      # None: what the model needs when the division is closed
    argv: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    out: Path
    stages: dict[str, str]                        # stage → "done" | "skipped (unchanged)" | "not asked"
    run: dict = field(default_factory=dict)       # the run record's headline
    check_ok: bool | None = None
    findings: list[dict] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)
    publish: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_CHECK_FAILED if self.check_ok is False else EXIT_OK

    def to_dict(self) -> dict:
        return {"out": str(self.out), "stages": self.stages, "run": self.run, "check_ok": self.check_ok,
                "findings": self.findings, "artifacts": self.artifacts, "publish": self.publish,
                "exit_code": self.exit_code}


def short_run_waivers(scenario: str, run_style: str) -> frozenset[str]:
    """The rules a short run breaks on purpose; the checker reports them as waived, by name."""
    if run_style != "short":
        return frozenset()
    waived = {"perf.min_duration"}
    if scenario == "Server":
        waived.add("perf.min_query_count")
    return frozenset(waived)


# ------------------------------------------------------------------------------------------------ state
class State:
    def __init__(self, path: Path):
        self.path = path
        self.data = {"schema": STATE_SCHEMA, "stages": {}}
        if path.is_file():
            try:
                loaded = json.loads(path.read_text())
                if loaded.get("schema") == STATE_SCHEMA:
                    self.data = loaded
            except (json.JSONDecodeError, OSError):
                pass  # an unreadable state means nothing is known to be finished: run everything

    def finished(self, stage: str, fingerprint: str) -> dict | None:
        entry = self.data["stages"].get(stage)
        if entry and entry.get("status") == "done" and entry.get("inputs") == fingerprint:
            return entry
        return None

    def mark(self, stage: str, status: str, fingerprint: str, outputs: dict | None = None) -> None:
        self.data["stages"][stage] = {"status": status, "inputs": fingerprint, "outputs": outputs or {},
                                      "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                      "subtool": __version__}
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
        return [[str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns]
                for p in sorted(path.rglob("*")) if p.is_file()]
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


def _check_submitter(name: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name or ""):
        raise SubtoolError(f"submitter {name!r} may hold only letters, digits, '-', '_' and '.'",
                           rule="package.submitter_name", hint="e.g. --submitter TeamX")


# ----------------------------------------------------------------------------------------------- stages
def run_pipeline(opts: PipelineOptions, console=None) -> Outcome:
    from rich.console import Console

    console = console or Console(stderr=True)
    _check_submitter(opts.submitter)
    opts = _with_round(opts, console)
    _check_round(opts)
    out = Path(opts.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SubtoolError(f"cannot create the output directory: {exc.strerror}", path=out,
                           rule="run.out_dir") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise SubtoolError("output directory is not writable", path=out, rule="run.out_dir")
    selected = _selected(opts)
    state = State(out / "state.json")
    paths = {"runs": out / "runs", "tree": out / "submission", "full_logs": out / "full_logs",
             "check": out / "check", "artifacts": out / "artifacts"}
    run_dir = paths["runs"] / opts.model / _scenario_name(opts.scenario)
    waive = short_run_waivers(_scenario_name(opts.scenario), opts.run_style)
    outcome = Outcome(out=out, stages={s: "not asked" for s in STAGES})
    if not opts.fork:
        outcome.stages["publish"] = "not asked (no --fork)"
    started = time.time()

    def stage(name: str, fingerprint: str, action):
        if name not in selected:
            return None
        index = STAGES.index(name) + 1
        done = None if opts.force else state.finished(name, fingerprint)
        if done is not None:
            console.print(f"[dim][{index}/5] {name}: unchanged since {done['at']}, skipped[/]")
            outcome.stages[name] = "skipped (unchanged)"
            return done["outputs"]
        console.rule(f"[bold][{index}/5] {name}")
        state.mark(name, "running", fingerprint)
        t0 = time.time()
        try:
            _failpoint(name, "start")
            outputs = action()
            _failpoint(name, "end")
        except KeyboardInterrupt:
            console.print(f"[red]interrupted in {name}[/]: nothing half-written; run the same command again "
                          "to resume from this stage")
            raise
        except SubtoolError as err:
            err.hint = err.hint or "fix this, then run the same command again: finished stages are kept"
            raise
        state.mark(name, "done", fingerprint, outputs)
        outcome.stages[name] = f"done in {time.time() - t0:.1f} s"
        return outputs

    # 1. run
    run_inputs = _fingerprint("run", opts.model, _scenario_name(opts.scenario), opts.run_style, opts.target_qps,
                              opts.backend, opts.batch_size, _file_identity(opts.model_path),
                              _file_identity(opts.dataset_path), *([opts.extra] if opts.extra else []),
                              *([tests] if (tests := _compliance_tests(opts)) else []),
                              *([opts.version] if opts.version != DEFAULT_VERSION else []))   # its seeds
    stage("run", run_inputs, lambda: _do_run(opts, paths["runs"], tests, console))
    run_record = _read_run_record(run_dir)
    outcome.run = _headline(run_record)

    # 2. package
    system_file_id = _file_identity(opts.system_file)
    run_digest = tree_digest(run_dir)      # the run dir holds the full accuracy log: hash it once
    pkg_inputs = _fingerprint("package", run_digest, opts.submitter, opts.division, opts.system,
                              system_file_id, opts.version)
    stage("package", pkg_inputs, lambda: _do_package(opts, run_dir, paths, console))

    # 3. check
    # check, pack and publish only read the tree: one digest after packaging serves all three
    tree_id = tree_digest(paths["tree"])
    check_inputs = _fingerprint("check", tree_id, opts.version, sorted(waive))
    check_out = stage("check", check_inputs, lambda: _do_check(opts, paths, waive, console))
    if check_out is None:
        check_out = (state.data["stages"].get("check") or {}).get("outputs") or {}
    if "ok" in check_out:
        outcome.check_ok = bool(check_out["ok"])
        outcome.findings = check_out.get("findings", [])

    # 4. pack
    pack_inputs = _fingerprint("pack", tree_id, run_digest, opts.name,
                               opts.version, sorted(waive))
    pack_out = stage("pack", pack_inputs, lambda: _do_pack(opts, run_dir, paths, waive, console))
    if pack_out:
        outcome.artifacts = pack_out.get("artifacts", {})

    # 5. publish
    if opts.fork:
        pub_inputs = _fingerprint("publish", tree_id, opts.fork, opts.upstream, opts.base,
                                  opts.no_pr)
        pub_out = stage("publish", pub_inputs, lambda: _do_publish(opts, paths, console))
        if pub_out:
            outcome.publish = pub_out

    _print_summary(outcome, console, time.time() - started)
    return outcome


def _scenario_name(scenario: str) -> str:
    from subtool.runner.harness import check_scenario

    return check_scenario(scenario)


def _compliance_tests(opts: PipelineOptions) -> list[str]:
    """Explicit --compliance, else the tests the model needs when the result goes to the closed division."""
    if opts.compliance is not None:
        return list(opts.compliance)
    from subtool.runner.workloads.base import get_workload

    return list(get_workload(opts.model).spec.compliance) if _division(opts) == "closed" else []


def _division(opts: PipelineOptions) -> str:
    demo = (opts.model_path is None and opts.dataset_path is None) or bool(opts.extra.get("demo"))
    return opts.division or ("open" if demo else "closed")


def _with_round(opts: PipelineOptions, console) -> PipelineOptions:
    """Options with the round every stage works for: --version, else the default or the model's last round."""
    import dataclasses

    from subtool.submission.round_models import announce, choose_round

    return dataclasses.replace(opts, version=announce(choose_round([opts.model], opts.version), console).version)


def _check_round(opts: PipelineOptions) -> None:
    """A closed result of a benchmark the round lists only in another variant would fail at packaging: say so
    before the run."""
    from subtool.submission.layout import check_version
    from subtool.submission.models import benchmark
    from subtool.submission.round_models import refuse_closed

    bench = benchmark(opts.model)
    if bench is not None and _division(opts) == "closed":
        refuse_closed(bench, check_version(opts.version))


def _do_run(opts: PipelineOptions, runs: Path, compliance: list[str], console) -> dict:
    from subtool.runner.api import RunOptions, run_benchmark

    record = run_benchmark(RunOptions(
        model=opts.model, scenario=opts.scenario, mode="both", model_path=opts.model_path,
        dataset_path=opts.dataset_path, out=runs, run_style=opts.run_style, target_qps=opts.target_qps,
        backend=opts.backend, batch_size=opts.batch_size, extra=dict(opts.extra), compliance=compliance,
        argv=opts.argv, round=opts.version), console=console)
    return {"run_dir": str(runs / record["model"] / record["scenario"])}


def _read_run_record(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "run.json").read_text())
    except FileNotFoundError:
        raise SubtoolError("no finished run here", path=run_dir / "run.json", rule="pipeline.no_run",
                           hint="run the 'run' stage first (drop --from-stage/--only)") from None
    except json.JSONDecodeError:
        raise SubtoolError("run.json is damaged", path=run_dir / "run.json", rule="pipeline.no_run",
                           hint="re-run with --only run") from None


def _headline(record: dict) -> dict:
    perf = (record.get("modes") or {}).get("performance") or {}
    acc = (record.get("modes") or {}).get("accuracy") or {}
    return {"model": record.get("model"), "scenario": record.get("scenario"), "demo": record.get("demo"),
            "run_style": record.get("run_style"), "result": perf.get("result"), "units": perf.get("units"),
            "validity": perf.get("result_validity"), "accuracy": acc.get("metrics"),
            # LoadGen's percentiles (ms): query latency, and TTFT/TPOT for LLM runs with token latencies
            **{k: perf[k] for k in ("latency_ms", "ttft_ms", "tpot_ms") if isinstance(perf.get(k), dict)}}


def _do_package(opts: PipelineOptions, run_dir: Path, paths: dict, console) -> dict:
    from subtool.submission.package import PackageOptions, package_results

    result = package_results(PackageOptions(
        from_dirs=[run_dir], perf=None, acc=None, compliance=[], model=None, scenario=None,
        submitter=opts.submitter, division=opts.division, system=opts.system, system_file=opts.system_file,
        version=opts.version, out=paths["tree"], full_logs=paths["full_logs"], force=True), console=console)
    return {"tree": str(paths["tree"]), "results": result.to_dict().get("results", [])}


def _do_check(opts: PipelineOptions, paths: dict, waive: frozenset[str], console) -> dict:
    from subtool.checker.api import CheckOptions, check_tree
    from subtool.checker.report import print_human, report_to_dict, write_report_json, write_summary_csv

    report = check_tree(paths["tree"], CheckOptions(version=opts.version, submitter=opts.submitter,
                                                    waive=waive))
    write_summary_csv(report, paths["check"] / "summary.csv")
    write_report_json(report, paths["check"] / "report.json")
    print_human(report, console)
    doc = report_to_dict(report)
    findings = [f for f in doc.get("findings", []) if f.get("severity") in ("error", "waived")]
    return {"ok": bool(report.ok), "summary_csv": str(paths["check"] / "summary.csv"),
            "report": str(paths["check"] / "report.json"), "findings": findings}


def _do_pack(opts: PipelineOptions, run_dir: Path, paths: dict, waive: frozenset[str], console) -> dict:
    from subtool.submission.pack import PackOptions, pack_tree

    # this run, and every earlier run under runs/ whose results the tree holds: .run/.tstamps cover them all
    result = pack_tree(PackOptions(tree=paths["tree"], out=paths["artifacts"], name=opts.name,
                                   runs=[run_dir, paths["runs"]],
                                   version=opts.version, waive=waive), console=console)
    return {"ok": bool(result.ok), "artifacts": {k: str(v) for k, v in result.artifacts.items()}}


def _do_publish(opts: PipelineOptions, paths: dict, console) -> dict:
    from subtool.submission.publish import PublishOptions, publish_tree

    result = publish_tree(PublishOptions(
        tree=paths["tree"], fork=opts.fork, upstream=opts.upstream, base=opts.base, branch=None, title=None,
        api_url=os.environ.get("GITHUB_API_URL"), token_env=None, no_pr=opts.no_pr, dry_run=False,
        cache=Path(opts.out) / ".publish-cache"), console=console)
    return result.to_dict()


def _print_summary(outcome: Outcome, console, seconds: float) -> None:
    from rich.table import Table

    from subtool.submission.pack_report import format_number

    run = outcome.run
    table = Table(title=f"subtool all — {seconds:.0f} s", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
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
