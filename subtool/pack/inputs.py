"""What the companion files describe, read from disk: subtool run directories and the submission tree itself.

Only the few LoadGen keys the artifacts quote are read here (time window, version, settings, result); the
verdicts come from the checker, never from this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.mlperf.layout import DIVISIONS, subdirs
from subtool.mlperf.logs import read_json_object, read_loadgen_log
from subtool.mlperf.run_record import date_u, parse_date_u, read_run_record

# Keys quoted in the report and the .run; everything else in the detail log is left to the checker.
_DETAIL_KEYS = {
    "loadgen_version",
    "test_datetime",
    "power_begin",
    "power_end",
    "result_validity",
    "effective_scenario",
    "effective_test_mode",
    "effective_min_duration_ms",
    "effective_target_qps",
    "effective_target_latency_ns",
    "effective_samples_per_query",
    "effective_min_query_count",
    "result_samples_per_second",
    "result_completed_samples_per_sec",
    "result_completed_tokens_per_second",
    "result_tokens_per_second",
    "early_stopping_latency_ss",
    "early_stopping_latency_ms",
    "result_query_count",
    "num_errors",
}
_MAIN_RESULT_KEY = {
    "Offline": ("result_samples_per_second", "Samples/s"),
    "Server": ("result_completed_samples_per_sec", "Queries/s"),
    "Interactive": ("result_completed_samples_per_sec", "Queries/s"),
    "SingleStream": ("early_stopping_latency_ss", "Latency (ms)"),
    "MultiStream": ("early_stopping_latency_ms", "Latency (ms)"),
}
SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL", "AUTH", "COOKIE", "SESSION")
_SECRET_VALUE_PREFIXES = ("ghp_", "gho_", "ghs_", "github_pat_", "hf_", "sk-", "xoxb-", "glpat-")


def is_secret(name: str, value: object) -> bool:
    upper = name.upper()
    if any(marker in upper for marker in SECRET_MARKERS):
        return True
    return isinstance(value, str) and value.startswith(_SECRET_VALUE_PREFIXES)


def read_detail_keys(path: Path) -> dict[str, object]:
    """The first value of each interesting key in a LoadGen `mlperf_log_detail.txt` (a cut-short log gives fewer)."""
    log = read_loadgen_log(path, _DETAIL_KEYS, follow_links=True)
    return {key: value for key, value in log.decode_all().items() if value is not None}


def _power_time(value: object) -> datetime | None:
    # LoadGen writes power_begin/power_end in UTC ("%m-%d-%Y %H:%M:%S.mmm"); test_datetime is local time with a
    # misleading "Z", so it is not used for the time window.
    if not isinstance(value, str):
        return None
    for fmt in ("%m-%d-%Y %H:%M:%S.%f", "%m-%d-%Y %H:%M:%S"):
        try:
            return datetime.strptime(value.strip(), fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return None


@dataclass
class TimeWindow:
    begin: datetime
    end: datetime

    def lines(self) -> list[str]:
        end = self.end
        if end.microsecond:
            end = datetime.fromtimestamp(math.ceil(end.timestamp()), tz=timezone.utc)
        return [date_u(self.begin.replace(microsecond=0)), date_u(end)]


def window_of(detail_logs: list[Path]) -> TimeWindow | None:
    begins, ends = [], []
    for log in detail_logs:
        keys = read_detail_keys(log)
        begin, end = _power_time(keys.get("power_begin")), _power_time(keys.get("power_end"))
        if begin and end:
            begins.append(begin)
            ends.append(end)
    if not begins:
        return None
    return TimeWindow(min(begins), max(ends))


# ---------------------------------------------------------------------------------------------- the tree
@dataclass
class SystemInfo:
    division: str
    submitter: str
    name: str
    rel_path: str
    fields: dict


@dataclass
class ResultInfo:
    division: str
    submitter: str
    system: str
    model: str
    scenario: str
    rel_dir: str  # results/<system>/<model>/<scenario>, relative to the tree
    perf: dict = field(default_factory=dict)
    accuracy_line: str = ""
    compliance: list[str] = field(default_factory=list)
    window: TimeWindow | None = None
    user_conf: str = ""

    def main_result(self) -> tuple[object, str]:
        key, unit = _MAIN_RESULT_KEY.get(self.scenario, ("result_samples_per_second", ""))
        value = self.perf.get(key)
        if isinstance(value, (int, float)) and key == "early_stopping_latency_ss":
            value = value / 1e6  # ns → ms, as the checker reports it
        elif isinstance(value, (int, float)) and key == "early_stopping_latency_ms":
            value = value / 1e6
        return value, unit


@dataclass
class TreeInfo:
    root: Path
    systems: list[SystemInfo]
    results: list[ResultInfo]

    @property
    def divisions(self) -> list[str]:
        return sorted({s.division for s in self.systems} | {r.division for r in self.results})

    @property
    def submitters(self) -> list[str]:
        return sorted({s.submitter for s in self.systems} | {r.submitter for r in self.results})

    def loadgen_versions(self) -> list[str]:
        return sorted({str(r.perf["loadgen_version"]) for r in self.results if r.perf.get("loadgen_version")})


def _read_json(path: Path) -> dict:
    data, _problem = read_json_object(path)  # the checker reports what is wrong with it
    return data or {}


def _subdirs(path: Path) -> list[Path]:
    """Real folders only, as the one walker lists them: a link is never followed (pack refuses it by rule
    tree.symlink before this runs)."""
    return [] if path.is_symlink() else [path / name for name in subdirs(path)]


def scan_tree(tree: Path) -> TreeInfo:
    """Systems and results of a tree in the v6 layout (results/ holds everything) or v5 (compliance/ apart)."""
    systems: list[SystemInfo] = []
    results: list[ResultInfo] = []
    for division in DIVISIONS:
        for sub_dir in _subdirs(tree / division):
            submitter = sub_dir.name
            systems_dir = sub_dir / "systems"
            if systems_dir.is_dir():
                for sys_json in sorted(systems_dir.glob("*.json")):
                    systems.append(
                        SystemInfo(
                            division,
                            submitter,
                            sys_json.stem,
                            sys_json.relative_to(tree).as_posix(),
                            _read_json(sys_json),
                        )
                    )
            for system_dir in _subdirs(sub_dir / "results"):
                for model_dir in _subdirs(system_dir):
                    for scenario_dir in _subdirs(model_dir):
                        results.append(
                            _scan_result(tree, division, submitter, system_dir.name, model_dir.name, scenario_dir)
                        )
    return TreeInfo(Path(tree), systems, results)


def _scan_result(tree: Path, division: str, submitter: str, system: str, model: str, scenario_dir: Path):
    info = ResultInfo(division, submitter, system, model, scenario_dir.name, scenario_dir.relative_to(tree).as_posix())
    perf_logs = sorted((scenario_dir / "performance").glob("run_*/mlperf_log_detail.txt"))
    if perf_logs:
        info.perf = read_detail_keys(perf_logs[0])
    acc_txt = scenario_dir / "accuracy" / "accuracy.txt"
    if acc_txt.is_file():
        lines = [ln.strip() for ln in acc_txt.read_text(encoding="utf-8", errors="replace").splitlines()]
        info.accuracy_line = next((ln for ln in lines if ln and not ln.startswith("hash=")), "")
    sub_dir = tree / division / submitter
    v5_compliance = sub_dir / "compliance" / system / model / scenario_dir.name
    info.compliance = sorted(
        {p.name for p in [*_subdirs(scenario_dir), *_subdirs(v5_compliance)] if p.name.startswith("TEST")}
    )
    detail_logs = sorted(scenario_dir.rglob("mlperf_log_detail.txt")) + sorted(
        v5_compliance.rglob("mlperf_log_detail.txt")
    )
    info.window = window_of(detail_logs)
    for conf in (
        scenario_dir / "user.conf",
        sub_dir / "measurements" / system / model / scenario_dir.name / "user.conf",
    ):
        if conf.is_file():
            info.user_conf = conf.read_text(encoding="utf-8", errors="replace")
            break
    return info


# ------------------------------------------------------------------------------------ run directories
@dataclass
class RunInfo:
    path: Path
    model: str
    scenario: str
    run_style: str
    demo: bool
    command: list[str]
    tstamps: list[str]
    env: dict[str, str]
    versions: dict[str, str]
    settings: dict


def read_run_dir(path: Path) -> RunInfo:
    path = Path(path)
    record_path = path / "run.json"
    if not record_path.is_file():
        raise SubtoolError(
            "no run.json: not a subtool run directory",
            path=path,
            rule="pack.run_dir",
            hint="--runs takes the directories `subtool run` wrote (e.g. OUT/runs/bert-99/Offline)",
        )
    record = read_run_record(record_path, rule="pack.run_dir")
    command = record.get("command") or []
    tstamps = _run_tstamps(record_path, record.get("tstamps") or [])
    if not tstamps:
        window = window_of(sorted(path.rglob("mlperf_log_detail.txt")))
        tstamps = window.lines() if window else []
    env = {str(k): str(v) for k, v in (record.get("env") or {}).items() if not is_secret(str(k), v)}
    versions = {str(k): str(v) for k, v in (record.get("versions") or {}).items()}
    return RunInfo(
        path=path,
        model=str(record.get("model", "")),
        scenario=str(record.get("scenario", "")),
        run_style=str(record.get("run_style", "")),
        demo=bool(record.get("demo", False)),
        command=list(command),
        tstamps=tstamps,
        env=env,
        versions=versions,
        settings=record.get("settings") if isinstance(record.get("settings"), dict) else {},
    )


def _run_tstamps(record_path: Path, lines: list[str]) -> list[str]:
    """run.json's `date -u` pair as `.tstamps` will hold it. The schema has checked each line's shape; here each
    must be a real date and each pair in order, as the scorer reads them: a lie would cover runs it never saw."""
    moments = [parse_date_u(line) for line in lines]
    problem = next((f"{line!r} is no date" for line, moment in zip(lines, moments) if moment is None), None)
    if problem is None and len(lines) % 2:
        problem = f"{len(lines)} lines, not start/end pairs"
    if problem is None and any(moments[i] > moments[i + 1] for i in range(0, len(lines), 2)):
        problem = "a pair ends before it starts"
    if problem is not None:
        raise SubtoolError(
            f"run.json's tstamps are not `date -u` start/end pairs: {problem}",
            path=record_path,
            rule="pack.run_dir",
            hint="`subtool run` writes them; restore its run.json, or delete the tstamps to use the logs' times",
        )
    return list(lines)
