"""One benchmark session in its own process: load data and model, run each LoadGen mode, score accuracy.

LoadGen keeps process-wide state (it counts conf files loaded, and a second FromConfig poisons the log), so
`subtool run` starts this module as a child process: `python -m subtool.runner.session SPEC.json`. The child
writes its outcome (or the error it stopped on) to the spec's `result_path`; the parent owns the run directory.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.fsutil import atomic_write_json, atomic_write_text


@dataclass
class SessionSpec:
    model: str
    scenario: str
    modes: list[str]
    model_path: str
    dataset_path: str
    user_conf: str
    stage: str
    cache_dir: str
    result_path: str
    batch_size: int = 32
    threads: int | None = None
    precision: str = "fp32"
    backend: str = "torch-cpu"


def run_session(spec: SessionSpec, console) -> dict:
    from subtool.runner.harness import RESULT_UNITS, load_test_settings, run_loadgen
    from subtool.runner.suts.torch_bert import TorchBertSUT
    from subtool.runner.workloads import bert

    say = console.print
    workload = bert.WORKLOADS[spec.model]
    model_path = Path(spec.model_path)
    config = bert.check_checkpoint(model_path)
    t0 = time.time()
    data = bert.load_data(model_path, Path(spec.dataset_path), Path(spec.cache_dir), config)
    n_features = len(data.features)
    say(f"data: {len(data.examples)} questions → {n_features} features ({time.time() - t0:.1f} s)")
    if n_features != workload.sample_count:
        say(f"[yellow]warning[/]: {n_features} features; the official {workload.name} data set has "
            f"{workload.sample_count}, so this result cannot go to the closed division")
    stage = Path(spec.stage)
    settings = load_test_settings(Path(spec.user_conf), workload.loadgen_model, spec.scenario)
    sut = TorchBertSUT(model_path, data.features, batch_size=spec.batch_size, threads=spec.threads,
                       precision=spec.precision)
    qsl = bert.BertQSL(data.features, workload.sample_count)
    modes: dict[str, dict] = {}
    tstamps: list[str] = []
    from subtool.runner.api import date_u

    try:
        tstamps.append(date_u())
        for mode in spec.modes:
            outdir = stage / ("performance/run_1" if mode == "performance" else "accuracy")
            say(f"loadgen: {spec.model} {spec.scenario} {mode} …")
            t1 = time.time()
            lg_run = run_loadgen(sut.handle, qsl.handle, settings, scenario=spec.scenario, mode=mode,
                                 outdir=outdir)
            if lg_run.errors:
                raise SubtoolError(f"LoadGen reported errors: {'; '.join(lg_run.errors)}",
                                   path=outdir / "mlperf_log_detail.txt", rule="run.loadgen_error")
            entry: dict = {"dir": str(outdir.relative_to(stage)), "seconds": round(time.time() - t1, 2)}
            if mode == "performance":
                entry.update(result_validity=lg_run.validity, result=lg_run.result,
                             result_field=lg_run.result_field, units=RESULT_UNITS[spec.scenario])
                say(f"  {lg_run.result_field} = {lg_run.result}  ({lg_run.validity})")
            else:
                scores = bert.accuracy(data, outdir / "mlperf_log_accuracy.json")
                atomic_write_text(outdir / "accuracy.txt", bert.accuracy_line(scores) + "\n")
                entry["metrics"] = {k: scores[k] for k in ("exact_match", "f1")}
                entry["samples_in_log"] = scores["samples_in_log"]
                say(f"  exact_match = {scores['exact_match']:.3f}  f1 = {scores['f1']:.3f}")
            modes[mode] = entry
        tstamps.append(date_u())
    finally:
        sut.stop()
        qsl.destroy()
    return {"ok": True, "features": n_features, "questions": len(data.examples),
            "dataset_sha256": data.dataset_sha256, "modes": modes, "tstamps": tstamps}


def main(argv: list[str]) -> int:
    from rich.console import Console

    spec = SessionSpec(**json.loads(Path(argv[0]).read_text()))
    console = Console(stderr=True)
    try:
        outcome = run_session(spec, console)
    except SubtoolError as err:
        outcome = {"ok": False, "error": {"message": err.message, "path": err.path, "rule": err.rule,
                                          "hint": err.hint, "exit_code": err.exit_code}}
    atomic_write_json(spec.result_path, outcome)
    return 0 if outcome["ok"] else 2


def spec_to_file(spec: SessionSpec, path: Path) -> Path:
    return atomic_write_json(path, asdict(spec))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
