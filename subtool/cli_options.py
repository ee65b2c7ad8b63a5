"""The options of a benchmark run, defined once: `subtool run` and `subtool all` both get every one of them.

`with_run_options` adds RUN_OPTIONS to a command's own options and hands the command their values as one
`RunArgs`; the early checks (`check_run_args`) refuse a typo before anything runs and import nothing heavy.
"""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass
from pathlib import Path

import typer

from subtool.errors import SubtoolError
from subtool.mlperf.layout import WRITABLE_DIVISIONS as DIVISIONS
from subtool.mlperf.rounds import DEFAULT_VERSION, VERSIONS
from subtool.mlperf.user_conf import DEFAULT_MIN_DURATION_MS, MOST_SCHEDULED
from subtool.mlperf.user_conf import LEAST as LOADGEN_LEAST
from subtool.mlperf.user_conf import MOST as LOADGEN_MOST
from subtool.runner.workload import WORKLOAD_MODULES

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "fp8")
RUN_STYLES = ("short", "valid")
RUN_MODES = ("both", "performance", "accuracy")
ENGINES = ("auto", "batched", "continuous")

_DATASETS = (
    "The data set file: bert-99/bert-99.9 read the SQuAD v1.1 dev JSON (dev-v1.1.json); llama2-70b the processed "
    "OpenOrca pickle (open_orca_gpt4_tokenized_llama.sampled_24576.pkl); llama3.1-8b the processed CNN-DailyMail "
    "JSON with token ids (cnn_eval.json); gptj the processed CNN-DailyMail JSON (cnn_eval.json). Omit for the "
    "one `subtool fetch` installed, else the embedded demo."
)


@dataclass
class RunArgs:
    """What the user gave for the run (field order = RUN_OPTIONS order)."""

    model: str
    scenario: str
    model_path: Path | None
    dataset_path: Path | None
    run_style: str
    target_qps: float | None
    target_latency_ms: float | None
    min_duration_ms: int | None
    user_conf: Path | None
    backend: str
    precision: str
    batch_size: int | None
    threads: int | None
    demo: bool
    endpoint: str | None
    api_key_env: str | None
    served_model: str | None
    max_new_tokens: int | None
    engine: str | None
    ray_address: str | None
    workers: int | None
    tensor_parallel: int | None
    compliance: list[str] | None
    version: str | None
    assets: Path | None = None


# name → the typer option; the annotation is RunArgs's
RUN_OPTIONS: dict[str, object] = {
    "model": typer.Option("bert-99", help=f"Benchmark: {', '.join(WORKLOAD_MODULES)}."),
    "scenario": typer.Option(
        "Offline", help="Offline, Server, SingleStream, MultiStream, or Interactive (the LLMs whose round has it)."
    ),
    "model_path": typer.Option(
        None, help="Checkpoint directory; omit for the one `subtool fetch` installed, else the embedded demo."
    ),
    "dataset_path": typer.Option(None, help=_DATASETS),
    "run_style": typer.Option("short", help="short (try things, not submittable) or valid (official)."),
    "target_qps": typer.Option(None, help="Offline/Server target QPS written into user.conf."),
    "target_latency_ms": typer.Option(None, help="SingleStream/MultiStream expected latency written into user.conf."),
    "min_duration_ms": typer.Option(None, help="Override the run style's minimum duration."),
    "user_conf": typer.Option(None, help="Use this user.conf instead of writing one."),
    "backend": typer.Option(
        "auto",
        help="SUT backend: auto (torch-cuda when a GPU is visible, else torch-cpu), torch-cpu, torch-cuda, "
        "ray, openai (LLMs).",
    ),
    "precision": typer.Option(
        "auto",
        help="auto (on torch-cuda: for BERT the fastest precision that a short accuracy check on your checkpoint "
        "and data passes, said with why, on Ray GPU workers decided by the first and taken by all; bf16 for the "
        "LLMs' Ray GPU workers; fp32 otherwise), fp32, bf16, fp16, fp8 (BERT: scales calibrated, layers that "
        "break the accuracy target beyond doubt on the calibration questions in bf16, once for all Ray workers).",
    ),
    "batch_size": typer.Option(
        None,
        help="Samples per forward pass (default 32; the LLM demos choose their own; torch-cuda: a batch of at most "
        "this ×384 tokens, 16,384 tokens when not given).",
    ),
    "threads": typer.Option(None, help="torch intra-op threads (default: all cores)."),
    "demo": typer.Option(
        False, "--demo", help="Embedded demo (tiny random-weight model), even when `subtool fetch` installed files."
    ),
    "endpoint": typer.Option(None, help="LLMs: OpenAI-compatible server URL (backend openai)."),
    "api_key_env": typer.Option(
        None, help="LLMs: env variable holding the endpoint's API key (default: $OPENAI_API_KEY when set)."
    ),
    "served_model": typer.Option(
        None, help="LLMs: the model name the endpoint serves (default: the one its /v1/models lists)."
    ),
    "max_new_tokens": typer.Option(None, help="LLMs: override the generation length."),
    "engine": typer.Option(None, help="LLMs, torch backends: auto, batched or continuous."),
    "ray_address": typer.Option(
        None,
        help="Spread the run over Ray workers: local (a cluster on this machine), auto (the running one) or HOST:PORT.",
    ),
    "workers": typer.Option(
        None, help="Ray workers (default: one per free GPU or CPU); --backend names what each runs."
    ),
    "tensor_parallel": typer.Option(
        None,
        help="LLMs, torch backends: one engine over N processes (one GPU each; CPU: gloo), each layer split "
        "over them (for a model one GPU cannot hold).",
    ),
    "compliance": typer.Option(
        None,
        help="Compliance test to run after the modes, e.g. TEST01 (repeatable). Default: `run` runs none, `all` "
        "those the model needs when the result goes to the closed division.",
    ),
    "version": typer.Option(
        None,
        help=f"Submission round the results are for: {', '.join(VERSIONS)}; LoadGen gets its official RNG seeds "
        f"(default {DEFAULT_VERSION}, or the latest round that lists the model).",
    ),
    "assets": typer.Option(
        None,
        "--assets",
        help="Where `subtool fetch --to DIR` installed the files (DIR); default the cache ($SUBTOOL_CACHE).",
    ),
}


def with_run_options(command):
    """`command(args: RunArgs, **own)` → a typer command taking its own options plus every RUN_OPTIONS one."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "args"]
    hints = typing.get_type_hints(RunArgs)
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=hints[name])
        for name, info in RUN_OPTIONS.items()
    ]

    @functools.wraps(command)
    def wrapper(**values):
        args = RunArgs(**{name: values.pop(name) for name in RUN_OPTIONS})
        return command(args=args, **values)

    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + shared
    wrapper.__signature__ = inspect.Signature(params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


# ------------------------------------------------------------------------------------------ early checks
def _choice(flag: str, value, choices) -> None:
    if value is not None and value not in choices:
        import difflib

        by_case = {str(c).lower(): str(c) for c in choices}  # BERT-99 is bert-99
        near = [by_case[str(value).lower()]] if str(value).lower() in by_case else []
        near = near or difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        raise SubtoolError(
            f"{flag} {value!r} is not one of {', '.join(map(str, choices))}",
            rule="cli.usage",
            hint=f"did you mean {flag} {near[0]}?" if near else None,
        )


def check_run_args(run: RunArgs, *, mode: str | None = None, division: str | None = None) -> tuple[str, dict]:
    """Every run option checked before anything runs (a typo must not cost the benchmark); returns the backend
    and the backend options (RunOptions.backend, .extra) the options name. Imports no model stack."""
    from subtool.mlperf.rounds import check_version
    from subtool.runner.harness import check_scenario
    from subtool.runner.workload import backend_names

    _choice("--model", run.model, sorted(WORKLOAD_MODULES))
    _choice("--mode", mode, RUN_MODES)
    _choice("--run-style", run.run_style, RUN_STYLES)
    _choice("--backend", run.backend, ("auto", *backend_names()))
    _choice("--precision", run.precision, PRECISIONS)
    _choice("--division", division, DIVISIONS)
    _choice("--engine", run.engine, ENGINES)
    if run.version is not None:
        check_version(run.version)
    check_scenario(run.scenario)
    _check_numbers(run)
    backend, extra = _llm_extra(run)
    return _ray_extra(backend, extra, run.ray_address, run.workers)


# the numeric run options: each must be a finite number above 0 (--workers and --tensor-parallel: their own checks)
# each numeric option's largest value: past it LoadGen would schedule (and allocate) more queries than a machine
# holds, or a run would never end. Generous: the fastest published systems serve ~10^6 samples/s, a valid run
# lasts 10 minutes
_MOST = {
    "target_qps": LOADGEN_MOST["target_qps"],
    "target_latency_ms": LOADGEN_MOST["target_latency"],  # a day
    "min_duration_ms": LOADGEN_MOST["min_duration"],  # a week
    "batch_size": 1 << 20,
    "threads": 4096,
    "max_new_tokens": 1 << 20,
}
_POSITIVE = tuple(_MOST)
_LEAST = {"target_qps": LOADGEN_LEAST["target_qps"], "target_latency_ms": LOADGEN_LEAST["target_latency"]}


def _check_numbers(run: RunArgs) -> None:
    """NaN, zero, a negative or an absurdly large number in a numeric option: one line now, not a LoadGen error, an
    allocation without end (or a traceback) once the model has loaded."""
    import math

    for name, most in _MOST.items():
        value = getattr(run, name)
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        shown = _shown(value)
        if not ((isinstance(value, int) or math.isfinite(value)) and value > 0):  # an int past a float: no isfinite
            raise SubtoolError(f"{flag} must be a positive number, not {shown}", rule="cli.usage")
        if value > most:
            raise SubtoolError(f"{flag} {shown} is past what a run can use (at most {most:g})", rule="cli.usage")
        if value < _LEAST.get(name, 0):
            raise SubtoolError(
                f"{flag} {shown} is below what a run can use (at least {_LEAST[name]:g})", rule="cli.usage"
            )
    if run.target_qps is not None:
        seconds = (run.min_duration_ms or DEFAULT_MIN_DURATION_MS) / 1000
        if run.target_qps * seconds > MOST_SCHEDULED:
            raise SubtoolError(
                f"--target-qps {run.target_qps:g} over {seconds:g} s asks LoadGen to schedule "
                f"{run.target_qps * seconds:.3g} samples at once (at most {MOST_SCHEDULED:g}): lower one of them",
                rule="cli.usage",
            )


def _shown(value: float | int) -> str:
    """A number as an error line quotes it: a 400-digit integer by its length, not its digits."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if value < 10**20 else f"a {len(str(value))}-digit number"


def check_round_and_division(version: str | None, division: str | None) -> None:
    """--version and --division of the stage commands, checked before anything runs."""
    from subtool.mlperf.rounds import check_version

    _choice("--division", division, DIVISIONS)
    if version is not None:
        check_version(version)


def _llm_extra(run: RunArgs) -> tuple[str, dict]:
    """Backend options that go into RunOptions.extra; --endpoint implies the openai backend."""
    if run.demo and (run.model_path is not None or run.dataset_path is not None):
        raise SubtoolError("--demo runs the embedded demo: drop --model-path/--dataset-path", rule="cli.usage")
    given = (
        ("endpoint", run.endpoint),
        ("api_key_env", run.api_key_env),
        ("served_model", run.served_model),
        ("max_new_tokens", run.max_new_tokens),
        ("engine", run.engine),
        ("tensor_parallel", run.tensor_parallel),
    )
    extra = {k: v for k, v in given if v is not None}
    if run.tensor_parallel is not None and run.tensor_parallel < 1:
        raise SubtoolError(f"--tensor-parallel must be at least 1, not {run.tensor_parallel}", rule="cli.usage")
    if run.tensor_parallel is not None and not WORKLOAD_MODULES.get(run.model, "").endswith(".llm.workload"):
        raise SubtoolError(f"--tensor-parallel is for the LLMs, not {run.model}", rule="cli.usage")
    backend = "openai" if run.endpoint and run.backend in ("auto", "torch-cpu") else run.backend
    return backend, extra


def _ray_extra(backend: str, extra: dict, ray_address, workers) -> tuple[str, dict]:
    """--ray-address/--workers run the backend on Ray workers: backend ray, the named one inside each worker
    (no address: $RAY_ADDRESS, else a local cluster)."""
    if ray_address is None and workers is None:
        return backend, extra
    if "tensor_parallel" in extra:
        raise SubtoolError(
            "--tensor-parallel runs on the local torch backends, not on Ray workers (--workers/--ray-address)",
            rule="cli.usage",
        )
    if workers is not None and workers < 1:
        raise SubtoolError(f"--workers must be at least 1, not {workers}", rule="cli.usage")
    inner = "torch-cpu" if backend == "ray" else backend  # auto: decided by the cluster's GPUs
    extra = {**extra, "inner_backend": inner}
    extra.update({k: v for k, v in (("ray_address", ray_address), ("workers", workers)) if v is not None})
    return "ray", extra


def recorded_command(args: list[str]) -> list[str]:
    """`subtool` and its arguments as run.json, the .run file and the READMEs record them: a URL's user info,
    query and fragment (where a token can hide: --endpoint, --fork) replaced by `***`, so no record holds one."""
    from urllib.parse import urlsplit, urlunsplit

    out = ["subtool"]
    for arg in args:
        try:
            parts = urlsplit(arg)
        except ValueError:
            out.append(arg)
            continue
        if len(parts.scheme) < 2 or not (parts.netloc or parts.query or parts.fragment):
            out.append(arg)
            continue
        host = parts.netloc.rpartition("@")[2]
        netloc = f"***@{host}" if "@" in parts.netloc else host
        query, fragment = ("***" if parts.query else ""), ("***" if parts.fragment else "")
        out.append(urlunsplit((parts.scheme, netloc, parts.path, query, fragment)))
    return out


def run_options(run: RunArgs, *, backend: str, extra: dict, out: Path, mode: str, argv: list[str]):
    """The run stage's options from what the user gave (RunOptions; the stage decides the rest)."""
    from subtool.runner.api import RunOptions

    return RunOptions(
        model=run.model,
        scenario=run.scenario,
        mode=mode,
        model_path=run.model_path,
        dataset_path=run.dataset_path,
        out=out,
        run_style=run.run_style,
        target_qps=run.target_qps,
        target_latency_ms=run.target_latency_ms,
        min_duration_ms=run.min_duration_ms,
        user_conf=run.user_conf,
        backend=backend,
        precision=run.precision,
        batch_size=run.batch_size,
        threads=run.threads,
        extra=extra,
        compliance=list(run.compliance or []),
        argv=argv,
        round=run.version,
        demo=run.demo,
        assets=run.assets,
    )
