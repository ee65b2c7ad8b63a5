"""Turn what a harness left on disk into `ImportedResult`s: subtool run directories, MLC's raw results layout,
and loose LoadGen log directories (NVIDIA's harness and hand-written ones).

Every importer reads model, scenario, mode and settings back from the LoadGen logs and refuses a mismatch with
what the user or the directory name claims. Nothing here writes; the package stage lays the results out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subtool.errors import SubtoolError
from subtool.fsutil import wrong_kind
from subtool.mlperf.benchmarks import Benchmark, find_by_dataset_size, require_benchmark, split_model
from subtool.mlperf.json_file import read_json
from subtool.mlperf.layout import SCENARIOS
from subtool.mlperf.logs import LoadgenLog
from subtool.mlperf.round import LOADGEN_SCENARIO, loadgen_names
from subtool.mlperf.run_record import load_run_record, read_run_record
from subtool.package.logs import check_summary_log, read_detail_log
from subtool.package.text_files import read_conf, read_text
from subtool.wording import with_article

TESTS = ("TEST01", "TEST04", "TEST06", "TEST07", "TEST08", "TEST09")
OFFICIAL_MIN_DURATION_MS = 600000


@dataclass
class ImportedResult:
    kind: str  # "run_dir" | "mlc" | "loose"
    source: Path
    model: str  # directory name in the tree (a custom name in the open division)
    bench: Benchmark  # the official benchmark it is measured as
    scenario: str
    perf_dir: Path
    perf_log: LoadgenLog
    acc_dir: Path
    acc_log: LoadgenLog
    compliance: dict[str, Path] = field(default_factory=dict)
    user_conf: Path | None = None  # None → reconstructed from the detail log
    mlperf_conf: Path | None = None
    measurements: dict[str, Any] = field(default_factory=dict)
    accuracy_txt: str | None = None  # as found; None when missing
    accuracy_metrics: dict | None = None
    system_meta: dict | None = None  # MLC's system_meta.json
    system_hint: str | None = None  # system directory name the source used
    division_hint: str | None = None
    run: dict | None = None  # run.json
    demo: bool = False
    run_style: str = "valid"
    notes: list[str] = field(default_factory=list)

    @property
    def custom_model(self) -> bool:
        return self.model != self.bench.name


# ----------------------------------------------------------------------------------------------- helpers
def _read_json(path: Path, what: str) -> dict:
    """A harness's JSON object (model_mapping, measurements, system_meta): bounded, strict, one line if not."""
    try:
        data = read_json(path, "import.bad_json")
    except FileNotFoundError:
        raise SubtoolError(f"{what} is missing", path=path, rule="import.missing_file") from None
    if not isinstance(data, dict):
        raise SubtoolError(f"{what} must hold a JSON object", path=path, rule="import.bad_json")
    return data


def _first_existing(*paths: Path) -> Path | None:
    """The first of `paths` that is a file; one that is there and is no file (a link loop, a device, a folder) is
    refused, not passed over as if it were absent."""
    for p in paths:
        if p is not None:
            refuse_non_file(p, p.name)
            if p.is_file():
                return p
    return None


def refuse_non_file(path: Path, what: str) -> None:
    """`path` holds `what`, a regular file (or a link to one), or nothing."""
    if (path.exists() or path.is_symlink()) and not path.is_file():
        raise SubtoolError(
            f"{what} should be a file; this {wrong_kind(path)}",
            path=path,
            rule="import.not_a_file",
            hint="give the file the harness wrote there, or remove what is in its place",
        )


def conf_models(user_conf: Path) -> set[str]:
    """Model names used in a LoadGen conf file, '*' excluded; a file that is not such a conf file is refused
    (import.user_conf_unreadable)."""
    return {s.model for s in read_conf(user_conf, "user.conf").settings if s.model != "*"}


def _mlperf_conf(*candidates: Path) -> Path | None:
    """The run's mlperf.conf, when there is one and it is a LoadGen conf file."""
    found = _first_existing(*candidates)
    if found is not None:
        read_conf(found, "mlperf.conf")
    return found


def _check_model(
    bench: Benchmark,
    logs: list[LoadgenLog],
    user_conf: Path | None,
    *,
    claimed_from: str,
    notes: list[str],
    demo: bool,
    scenario: str | None = None,
) -> None:
    """Refuse logs that are evidently of another benchmark than the one claimed."""
    if user_conf is not None:
        conf_name, lg_scenario = loadgen_names(bench.conf_name, scenario or "")
        names = conf_models(user_conf)
        foreign = sorted(n for n in names if n != conf_name)
        if foreign and conf_name not in names:
            raise SubtoolError(
                f"user.conf sets {', '.join(foreign)} but the result is {bench.name} {scenario or ''} "
                f"({claimed_from}); LoadGen would not have applied it",
                path=user_conf,
                rule="import.model_mismatch",
                hint=f"{bench.name}'s settings are written '{conf_name}.{lg_scenario or '<Scenario>'}.<key>'",
            )
    for log in logs:
        total = _check_data_set(bench, log, claimed_from)
        if total is not None and not demo and log.mode == "accuracy":
            notes.append(
                f"accuracy run covered {total} samples; {bench.name}'s data set has "
                f"{bench.dataset_size} (the checker will report it)"
            )


def _check_data_set(bench: Benchmark, log: LoadgenLog, claimed_from: str) -> int | None:
    """Refuse a log (performance, accuracy or compliance) whose data set is another benchmark's: a llama2-70b
    performance log beside bert-99's accuracy log. Returns its sample count when it differs from `bench`'s."""
    total = log.get("qsl_reported_total_count")
    if total is None or total == bench.dataset_size:
        return None
    others = [b.name for b in find_by_dataset_size(total) if b.conf_name != bench.conf_name]
    if others:
        raise SubtoolError(
            f"this log is of a data set with {total} samples, which is "
            f"{' or '.join(others)}, not {bench.name} ({claimed_from})",
            path=log.path,
            rule="import.model_mismatch",
            hint="give the logs of the benchmark you name, or name the benchmark they are of",
        )
    return total


def _check_scenario(scenario: str, logs: list[LoadgenLog], claimed_from: str) -> str:
    ran = LOADGEN_SCENARIO.get(scenario, scenario)  # Interactive logs are Server runs
    for log in logs:
        if log.scenario != ran:
            raise SubtoolError(
                f"this is {with_article(str(log.scenario))} log, but it was given as {scenario} ({claimed_from})",
                path=log.path,
                rule="import.scenario_mismatch",
                hint=f"package it as --scenario {log.scenario}, or give the {scenario} logs",
            )
    return scenario


def _compliance_dirs(base: Path) -> dict[str, Path]:
    """The compliance tests' folders below `base`; a TEST0x there that is no folder is refused, not passed over."""
    for test in TESTS:
        _refuse_non_folder(base / test, f"the {test} compliance run")
    return {t: base / t for t in TESTS if (base / t).is_dir()}


def _refuse_non_folder(path: Path, what: str) -> None:
    """`path` holds `what`, a folder, or nothing: a file (or a FIFO, a dangling link) there would be passed over
    as if nothing were there, and the result packaged without it."""
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        raise SubtoolError(
            f"{what} should be a folder; this {wrong_kind(path)}",
            path=path,
            rule="import.not_a_folder",
            hint="give the folder the harness wrote there, or remove what is in its place",
        )


def _check_compliance(tests: dict[str, Path], scenario: str, bench: Benchmark) -> None:
    for test, d in tests.items():
        detail = d / "performance" / "run_1" / "mlperf_log_detail.txt"
        if detail.is_file():
            log = read_detail_log(detail, expect_mode="performance")
            check_summary_log(detail.parent, detail=log)
            _check_scenario(scenario, [log], f"{test} compliance run")
            _check_data_set(bench, log, f"{test} compliance run")


def _run_style(perf: LoadgenLog, recorded: object = None) -> str:
    """ "short" when the log ran under the official minimum duration or run.json says so: a run.json claiming
    "valid" never hides a short log (the logs are trusted over what is said about them)."""
    md = perf.get("effective_min_duration_ms")
    if recorded == "short" or (isinstance(md, (int, float)) and md < OFFICIAL_MIN_DURATION_MS):
        return "short"
    return str(recorded) if recorded else "valid"


def _accuracy_txt(acc_dir: Path) -> str | None:
    p = acc_dir / "accuracy.txt"
    refuse_non_file(p, "accuracy.txt")
    return read_text(p, "accuracy.txt", "import.unreadable_file", lenient=True) if p.is_file() else None


def _require_dir(path: Path, what: str, hint: str) -> Path:
    _refuse_non_folder(path, what)
    if not path.is_dir():
        raise SubtoolError(f"{what} is missing", path=path, rule="import.missing_dir", hint=hint)
    return path


# ------------------------------------------------------------------------------------- subtool run dirs
def import_run_dir(run_dir: Path) -> ImportedResult:
    run_dir = Path(run_dir)
    run = read_run_record(run_dir / "run.json", rule="import.bad_run_json", missing_rule="import.missing_file")
    model_spec = str(run.get("model_name") and f"{run['model_name']}={run['model']}" or run["model"])
    custom, official = split_model(model_spec)
    bench = require_benchmark(official, where=str(run_dir / "run.json"))
    modes = run.get("modes") or {}
    perf_dir = run_dir / ((modes.get("performance") or {}).get("dir") or "performance/run_1")
    acc_dir = run_dir / ((modes.get("accuracy") or {}).get("dir") or "accuracy")
    _require_dir(perf_dir, "performance run", "run `subtool run --mode performance` (or both) first")
    _require_dir(acc_dir, "accuracy run", "the official tree needs an accuracy run: `subtool run --mode accuracy`")
    perf = read_detail_log(perf_dir / "mlperf_log_detail.txt", expect_mode="performance")
    check_summary_log(perf_dir, detail=perf)
    check_summary_log(acc_dir, accuracy=True)
    acc = read_detail_log(acc_dir / "mlperf_log_detail.txt", expect_mode="accuracy")
    scenario = _check_scenario(str(run["scenario"]), [perf, acc], f"run.json of {run_dir}")
    user_conf = _first_existing(run_dir / "user.conf")
    demo = bool(run.get("demo"))
    notes: list[str] = []
    _check_model(bench, [perf, acc], user_conf, claimed_from="run.json", notes=notes, demo=demo, scenario=scenario)
    tests = {t: run_dir / (info or {}).get("dir", t) for t, info in (run.get("compliance") or {}).items()}
    tests.update({t: d for t, d in _compliance_dirs(run_dir).items() if t not in tests})
    for test, d in tests.items():
        _refuse_non_folder(d, f"the {test} compliance run")
        if not d.is_dir():
            notes.append(f"run.json records a {test} run, and {d} is gone: packaged without it")
    tests = {t: d for t, d in tests.items() if d.is_dir()}
    _check_compliance(tests, scenario, bench)
    return ImportedResult(
        kind="run_dir",
        source=run_dir,
        model=custom,
        bench=bench,
        scenario=scenario,
        perf_dir=perf_dir,
        perf_log=perf,
        acc_dir=acc_dir,
        acc_log=acc,
        compliance=tests,
        user_conf=user_conf,
        mlperf_conf=_mlperf_conf(run_dir / "mlperf.conf"),
        measurements=dict(run.get("measurements") or {}),
        accuracy_txt=_accuracy_txt(acc_dir),
        accuracy_metrics=(modes.get("accuracy") or {}).get("metrics"),
        division_hint=run.get("division_hint"),
        run=run,
        demo=demo,
        run_style=_run_style(perf, run.get("run_style")),
        notes=notes,
    )


# ------------------------------------------------------------------------------------ MLC raw results
def _is_mlc_system_dir(path: Path) -> bool:
    if (path / "system_meta.json").is_file():
        return True
    for model_dir in _subdirs(path):
        for scen in _subdirs(model_dir):
            # a subtool run directory (run.json) has the same shape below `runs/`; it is not MLC's
            if scen.name in SCENARIOS and (scen / "performance").is_dir() and not (scen / "run.json").is_file():
                return True
    return False


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def import_mlc_system(system_dir: Path) -> list[ImportedResult]:
    """`<system>/system_meta.json` + `<model>/<scenario>/{performance/run_1, accuracy, TEST0x}`."""
    system_dir = Path(system_dir)
    meta_path = system_dir / "system_meta.json"
    system_meta = _read_json(meta_path, "system_meta.json") if meta_path.is_file() else None
    results = []
    for model_dir in _subdirs(system_dir):
        for scenario in SCENARIOS:
            _refuse_non_folder(model_dir / scenario, f"MLC's {model_dir.name} {scenario} result")
        for scen_dir in _subdirs(model_dir):
            if scen_dir.name not in SCENARIOS:
                continue
            results.append(_import_mlc_result(system_dir, model_dir, scen_dir, system_meta))
    if not results:
        raise SubtoolError(
            "no results found: expected <model>/<scenario>/performance/run_1 below the system directory",
            path=system_dir,
            rule="import.not_recognised",
        )
    return results


def _import_mlc_result(system_dir: Path, model_dir: Path, scen_dir: Path, system_meta: dict | None) -> ImportedResult:
    perf_dir = _require_dir(
        scen_dir / "performance" / "run_1",
        "performance/run_1",
        "MLC writes the performance run to <model>/<scenario>/performance/run_1",
    )
    acc_dir = _require_dir(
        scen_dir / "accuracy", "accuracy run", "run the accuracy mode with MLC (--mode=accuracy) before packaging"
    )
    perf = read_detail_log(perf_dir / "mlperf_log_detail.txt", expect_mode="performance")
    check_summary_log(perf_dir, detail=perf)
    check_summary_log(acc_dir, accuracy=True)
    acc = read_detail_log(acc_dir / "mlperf_log_detail.txt", expect_mode="accuracy")
    scenario = _check_scenario(scen_dir.name, [perf, acc], f"directory {scen_dir}")
    bench = require_benchmark(
        _mlc_official_model(system_dir, model_dir, scen_dir, perf_dir, acc_dir), where=str(model_dir)
    )
    user_conf = _first_existing(scen_dir / "user.conf", perf_dir / "user.conf", acc_dir / "user.conf")
    notes: list[str] = []
    claimed = f"directory {model_dir.name}"
    _check_model(bench, [perf, acc], user_conf, claimed_from=claimed, notes=notes, demo=False, scenario=scenario)
    measurements = _mlc_measurements(scen_dir, perf_dir, acc_dir, scenario)
    meta = system_meta
    if meta is None:
        inner = _first_existing(perf_dir / "system_meta.json", acc_dir / "system_meta.json")
        meta = _read_json(inner, "system_meta.json") if inner else None
    tests = _compliance_dirs(scen_dir)
    _check_compliance(tests, scenario, bench)
    division = (meta or {}).get("division")
    return ImportedResult(
        kind="mlc",
        source=scen_dir,
        model=model_dir.name,
        bench=bench,
        scenario=scenario,
        perf_dir=perf_dir,
        perf_log=perf,
        acc_dir=acc_dir,
        acc_log=acc,
        compliance=tests,
        user_conf=user_conf,
        mlperf_conf=_mlperf_conf(scen_dir / "mlperf.conf", perf_dir / "mlperf.conf"),
        measurements=measurements,
        accuracy_txt=_accuracy_txt(acc_dir),
        system_meta=meta,
        system_hint=system_dir.name,
        division_hint=division if division in ("open", "closed") else None,
        run_style=_run_style(perf),
        notes=notes,
    )


def _mlc_official_model(system_dir: Path, model_dir: Path, scen_dir: Path, perf_dir: Path, acc_dir: Path) -> str:
    """The benchmark an MLC model folder holds: MLC maps a custom model name to the official one in the
    model_mapping.json nearest the logs."""
    mapping_path = _first_existing(
        perf_dir / "model_mapping.json",
        acc_dir / "model_mapping.json",
        scen_dir / "model_mapping.json",
        system_dir / "model_mapping.json",
    )
    if mapping_path is None:
        return model_dir.name
    official = _read_json(mapping_path, "model_mapping.json").get(model_dir.name, model_dir.name)
    if not isinstance(official, str):
        raise SubtoolError(
            f"model_mapping.json maps {model_dir.name!r} to {type(official).__name__} {str(official)[:40]}, "
            "not a benchmark's name",
            path=mapping_path,
            rule="import.bad_json",
        )
    return official


def _mlc_measurements(scen_dir: Path, perf_dir: Path, acc_dir: Path, scenario: str) -> dict:
    """measurements.json beside the logs, or an older MLC's <model>_<scenario>.json; {} when neither is there."""
    path = _first_existing(
        scen_dir / "measurements.json", perf_dir / "measurements.json", acc_dir / "measurements.json"
    )
    if path is None:
        legacy = sorted(scen_dir.glob(f"*_{scenario}.json"))
        path = legacy[0] if legacy else None
    return _read_json(path, "measurements.json") if path else {}


# ------------------------------------------------------------------------------------- loose log dirs
def _loose_compliance(specs: list[str]) -> dict[str, Path]:
    tests = {}
    for spec in specs:
        if "=" not in spec:
            raise SubtoolError(
                f"--compliance {spec!r} must be TEST0x=DIR",
                rule="cli.usage",
                hint="e.g. --compliance TEST01=logs/TEST01",
            )
        test, d = spec.split("=", 1)
        test = test.strip().upper()
        if test not in TESTS:
            raise SubtoolError(f"unknown compliance test {test!r}", rule="cli.usage", hint=f"one of {', '.join(TESTS)}")
        path = Path(d)
        if (path / test).is_dir() and not (path / "performance").is_dir():
            path = path / test  # the parent run_verification.py was given as --output_dir
        if test in tests:
            raise SubtoolError(f"{test} given twice", rule="import.duplicate")
        tests[test] = _require_dir(path, f"{test} directory", "give the directory run_verification.py wrote")
    return tests


def import_loose(
    perf_dir: Path, acc_dir: Path | None, *, model: str | None, scenario: str | None, compliance: list[str]
) -> ImportedResult:
    """`--perf DIR --acc DIR [--compliance TEST01=DIR] --model M [--scenario S]`."""
    perf_dir, acc_dir = _loose_dirs(perf_dir, acc_dir, model)
    custom, official = split_model(model)
    bench = require_benchmark(official)
    perf = read_detail_log(perf_dir / "mlperf_log_detail.txt", expect_mode="performance")
    check_summary_log(perf_dir, detail=perf)
    check_summary_log(acc_dir, accuracy=True)
    acc = read_detail_log(acc_dir / "mlperf_log_detail.txt", expect_mode="accuracy")
    if scenario:
        _check_scenario(scenario, [perf, acc], "--scenario")
    else:
        scenario = perf.scenario
        _check_scenario(scenario, [acc], "the performance log's scenario")
    user_conf = _first_existing(perf_dir / "user.conf", perf_dir.parent / "user.conf", acc_dir / "user.conf")
    notes: list[str] = []
    _check_model(bench, [perf, acc], user_conf, claimed_from="--model", notes=notes, demo=False, scenario=scenario)
    meas_path = _first_existing(
        perf_dir / "measurements.json", perf_dir.parent / "measurements.json", acc_dir / "measurements.json"
    )
    tests = _loose_compliance(compliance)
    _check_compliance(tests, scenario, bench)
    run = _enclosing_run(perf_dir, acc_dir)
    measurements = _read_json(meas_path, "measurements.json") if meas_path else {}
    if run is not None and run.get("demo"):
        # logs copied out of (or pointed into) a demo run: they stay a demo, with the demo's own weights
        measurements = {**dict(run.get("measurements") or {}), **measurements}
    return ImportedResult(
        kind="loose",
        source=perf_dir,
        model=custom,
        bench=bench,
        scenario=scenario,
        perf_dir=perf_dir,
        perf_log=perf,
        acc_dir=acc_dir,
        acc_log=acc,
        compliance=tests,
        user_conf=user_conf,
        mlperf_conf=_mlperf_conf(perf_dir / "mlperf.conf"),
        measurements=measurements,
        accuracy_txt=_accuracy_txt(acc_dir),
        run=run,
        demo=bool(run and run.get("demo")),
        run_style=_run_style(perf, (run or {}).get("run_style")),
        notes=notes,
    )


def _loose_dirs(perf_dir: Path, acc_dir: Path | None, model: str | None) -> tuple[Path, Path]:
    """The two log directories of loose logs, once --model is given and both exist as directories."""
    if not model:
        raise SubtoolError(
            "loose logs need --model (LoadGen logs do not name the benchmark)",
            rule="cli.usage",
            hint="e.g. --model bert-99 (or --model my-bert=bert-99 in the open division)",
        )
    if acc_dir is None:
        raise SubtoolError("--perf needs --acc: the official tree needs the accuracy run too", rule="cli.usage")
    perf = _require_dir(
        Path(perf_dir), "--perf directory", "give the directory LoadGen wrote the PerformanceOnly logs to"
    )
    acc = _require_dir(Path(acc_dir), "--acc directory", "give the directory LoadGen wrote the AccuracyOnly logs to")
    return perf, acc


def _enclosing_run(perf_dir: Path, acc_dir: Path) -> dict | None:
    """run.json of the subtool run directory these loose logs lie in (`<run>/performance/run_1`, `<run>/accuracy`),
    when it is that run's: its recorded performance log must be the one given."""
    for log_dir in (perf_dir, acc_dir):
        for parent in list(log_dir.resolve().parents)[:3]:
            path = parent / "run.json"
            if not path.is_file():
                continue
            run = load_run_record(path)[0]  # its shape is not trusted: the checks below read it defensively
            if run is None:
                return None
            modes = run.get("modes") if isinstance(run.get("modes"), dict) else {}
            recorded = {
                parent / str((modes.get(m) if isinstance(modes.get(m), dict) else {}).get("dir") or default)
                for m, default in (("performance", "performance/run_1"), ("accuracy", "accuracy"))
            }
            return run if log_dir.resolve() in {p.resolve() for p in recorded} else None
    return None


# ------------------------------------------------------------------------------------------ discovery
def discover(path: Path) -> list[ImportedResult]:
    """Recognise what `--from DIR` points at and import every result below it."""
    path = Path(path)
    if not path.is_dir():
        raise SubtoolError(f"--from {wrong_kind(path)}: it takes a folder", path=path, rule="import.not_found")
    if (path / "run.json").is_file():
        return [import_run_dir(path)]
    # `subtool run` writes <out>/runs/<model>/<scenario>/run.json: a parent of run directories
    run_dirs = sorted(
        {
            p.parent
            for depth in ("*/run.json", "*/*/run.json", "*/*/*/run.json")
            for p in path.glob(depth)
            if not any(part.startswith(".") for part in p.parts[-4:])
        }
    )
    if run_dirs:
        return [import_run_dir(d) for d in run_dirs]
    if _is_mlc_system_dir(path):
        return import_mlc_system(path)
    systems = [d for d in _subdirs(path) if _is_mlc_system_dir(d)]
    if systems:
        return [r for d in systems for r in import_mlc_system(d)]
    raise SubtoolError(
        "not a subtool run directory (no run.json) nor an MLC results directory (no "
        "<system>/system_meta.json or <system>/<model>/<scenario>/performance/run_1)",
        path=path,
        rule="import.not_recognised",
        hint="for loose LoadGen logs use --perf DIR --acc DIR --model M --scenario S",
    )
