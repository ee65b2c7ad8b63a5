"""The LLM workloads (llama3.1-8b, llama2-70b-99/99.9, gptj-99/99.9) behind the runner's Workload interface.

One code path for the three families: the spec table (specs.py) says which data set reader, generation
settings, accuracy line and thresholds a benchmark uses; the SUT backends (local torch, or an OpenAI-compatible
endpoint) answer with token ids and per-response token counts, so LoadGen reports tokens/s, TTFT and TPOT.
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.runner.llm.specs import LLM_SPECS, LlmSpec, accuracy_shortfalls

DEMO_SETTINGS_FILE = "subtool_demo.json"  # in the embedded demo's checkpoint: its generation length


@dataclass(frozen=True)
class Generation:
    """How the SUT generates: the reference's settings unless overridden (which leaves the closed division)."""

    max_new_tokens: int
    min_new_tokens: int
    num_beams: int
    output_dtype: str
    token_latencies: bool


DEMO_SETTING_LIMITS = {"max_new_tokens": 1 << 20, "batch_size": 1 << 20, "threads": 4096}


def demo_settings(model_path: Path) -> dict:
    """The embedded demo's own settings, from a checkpoint the demo made (its marker file beside them); {} for any
    other. Where they apply the benchmark process says so once, naming the file: a settings file dropped into a
    real checkpoint shortened its answers unrecorded."""
    from subtool.runner.demo_assets import DEMO_MARKER

    folder = Path(model_path)
    if not (folder / DEMO_MARKER).is_file() or not (folder / DEMO_SETTINGS_FILE).exists():
        return {}
    return dict(_read_demo_settings(str(folder / DEMO_SETTINGS_FILE)))


@functools.lru_cache(maxsize=4)
def _read_demo_settings(path: str) -> tuple:
    from subtool.mlperf.logs import read_json_object

    settings, problem = read_json_object(path)
    if problem is not None:
        raise SubtoolError(f"the demo's settings {problem}", path=path, rule="model.demo", hint="delete the demo cache")
    for key, value in settings.items():
        most = DEMO_SETTING_LIMITS.get(key)
        if most is None or isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            known = ", ".join(DEMO_SETTING_LIMITS)
            raise SubtoolError(
                f"{key} = {str(value)[:40]} is no demo setting (whole numbers, above 0: {known})",
                path=path,
                rule="model.demo",
            )
    shown = ", ".join(f"{k} {v}" for k, v in settings.items())
    print(f"llm: {path}: the embedded demo's settings apply ({shown})", file=sys.stderr, flush=True)
    return tuple(settings.items())


def generation_for(spec: LlmSpec, model_path: Path, extra: dict) -> Generation:
    max_new = int(demo_settings(model_path).get("max_new_tokens", spec.max_new_tokens))
    if extra.get("max_new_tokens"):
        max_new = int(extra["max_new_tokens"])
    if max_new < 1:
        raise SubtoolError(f"max_new_tokens must be at least 1, not {max_new}", rule="run.max_new_tokens")
    return Generation(
        max_new_tokens=max_new,
        min_new_tokens=min(spec.min_new_tokens, max_new),
        num_beams=spec.num_beams,
        output_dtype=spec.output_dtype,
        token_latencies=spec.token_latencies,
    )


TOKEN_RESULT_FIELDS = {
    "Offline": "result_tokens_per_second",
    "Server": "result_completed_tokens_per_second",
    "Interactive": "result_completed_tokens_per_second",  # a Server run of the -interactive model
}


def token_metrics(values: dict, scenario: str, token_latencies: bool) -> dict:
    """From a LoadGen detail log's values: the tokens/s result, the query latency and TTFT/TPOT percentiles (ms,
    p50 … p99.9 as LoadGen logs them; mlperf/logs.py latency_percentiles) and the limits LoadGen applied."""
    from subtool.mlperf.logs import latency_percentiles

    def ms(key: str):
        v = values.get(key)
        return round(v / 1e6, 3) if isinstance(v, (int, float)) and math.isfinite(v) else None

    out: dict = {}
    field = TOKEN_RESULT_FIELDS.get(scenario)
    if token_latencies and field and isinstance(values.get(field), (int, float)):
        out.update(result=float(values[field]), result_field=field, units="Tokens/s")
    for key in ("result_samples_per_second", "result_completed_samples_per_sec"):
        if isinstance(values.get(key), (int, float)):
            out["samples_per_second"] = float(values[key])
    out.update(latency_percentiles(values))
    limits = {"ttft_ms": ms("requested_server_ttft_latency"), "tpot_ms": ms("requested_server_tpot_latency")}
    if scenario in ("Server", "Interactive") and token_latencies and any(limits.values()):
        out["limits"] = {k: v for k, v in limits.items() if v}
    return out


class LlmQSL:
    """LoadGen's query sample library over prompts already in memory (loading is a no-op)."""

    def __init__(self, count: int, performance_count: int):
        import mlperf_loadgen as lg

        self.count = count
        self.performance_count = min(performance_count, count)
        self.handle = lg.ConstructQSL(self.count, self.performance_count, self._load, self._unload)

    def _load(self, indices):
        pass

    def _unload(self, indices):
        pass

    def destroy(self) -> None:
        import mlperf_loadgen as lg

        lg.DestroyQSL(self.handle)


class LlmWorkload:
    def __init__(self, name: str):
        from subtool.runner.workload import BenchmarkSpec

        self.llm = LLM_SPECS[name]
        self.spec = BenchmarkSpec(
            name=name,
            loadgen_model=self.llm.loadgen_model,
            sample_count=self.llm.sample_count,
            scenarios=self.llm.scenarios,
            backends=tuple(SUT_BACKENDS),
            token_metrics=self.llm.token_latencies,
            compliance=self.llm.compliance,
            extra={"round": self.llm.round},
        )
        self._config: dict = {}

    def check_model(self, model_path: Path) -> dict:
        from subtool.runner.llm.checkpoint import check_checkpoint

        # weights are checked by the local backends only: a network SUT needs just the tokenizer
        self._config = check_checkpoint(self.llm, model_path, need_weights=False)
        return self._config

    def demo_assets(self) -> tuple[Path, Path]:
        from subtool.runner.llm.demo import demo_assets

        assets = demo_assets(self.llm)
        return assets.model_path, assets.dataset_path

    def load(self, model_path: Path, dataset_path: Path, cache_dir: Path | None):
        from subtool.runner.llm.datasets import load_data
        from subtool.runner.workload import LoadedData

        data = load_data(self.llm, model_path, dataset_path)
        return LoadedData(
            payload=data,
            sample_count=len(data.prompts),
            description=data.description,
            dataset_sha256=data.dataset_sha256,
        )

    def check_backend(self, model_path: Path, config) -> None:
        """What the backend can check before the data loads: the openai backend's options and server."""
        if config.backend == "openai":
            check_openai_backend(config)

    def make_sut(self, model_path: Path, data, config):
        factory = SUT_BACKENDS.get(config.backend)
        if factory is None:
            raise SubtoolError(
                f"unknown backend {config.backend!r} for {self.spec.name}; choose one of {', '.join(SUT_BACKENDS)}",
                rule="run.backend",
            )
        return factory(self.llm, Path(model_path), data.payload, config)

    def make_qsl(self, data):
        return LlmQSL(data.sample_count, self.spec.sample_count)

    def resolve_precision(self, backend: str, precision: str, model_path: Path | None = None) -> str:
        """auto: bf16 on torch-cuda (fp8 for a pre-quantized FP8 checkpoint, greedy), fp32 elsewhere (an FP8
        checkpoint's weights are dequantized on load, and the loader says so); refuses what the local backends
        cannot run, before any data or weights load. Ray workers resolve auto against the backend they run, once
        they see the cluster."""
        if precision == "auto" and backend != "ray":
            precision = "bf16" if backend == "torch-cuda" else "fp32"
            if backend == "torch-cuda" and self.llm.num_beams == 1 and _fp8_checkpoint(model_path):
                precision = "fp8"  # its weights are e4m3 already: bf16 would only dequantize them
        allowed = {"torch-cpu": ("fp32", "bf16"), "torch-cuda": ("fp32", "bf16", "fp16", "fp8")}.get(backend)
        if allowed and precision not in allowed:
            hint = "fp8 and fp16 run on --backend torch-cuda" if backend == "torch-cpu" else None
            raise SubtoolError(
                f"precision {precision!r} is not supported by the {backend} backend for "
                f"{self.spec.name}; choose {', '.join(allowed)}",
                rule="run.precision",
                hint=hint,
            )
        if precision == "fp8" and self.llm.num_beams > 1:
            raise SubtoolError(
                f"fp8 runs on the continuous engine, which does not do the beam search {self.spec.name} needs",
                rule="run.precision",
                hint="use bf16 or fp16",
            )
        return precision

    def accuracy(self, data, accuracy_log: Path) -> tuple[dict, str]:
        from subtool.runner.llm.accuracy import accuracy_line, llm_accuracy, read_token_log

        payload = data.payload
        tokens = read_token_log(accuracy_log, self.llm.output_dtype)
        vocab = self._config.get("vocab_size")  # the checkpoint's, when check_model read one
        vocab = vocab if isinstance(vocab, int) and not isinstance(vocab, bool) and vocab > 0 else None
        metrics = llm_accuracy(tokens, payload.targets, payload.tokenizer, accuracy_log, vocab)
        short = accuracy_shortfalls(self.llm, metrics)
        if short:
            print(
                f"note: below the closed-division accuracy targets of {self.spec.name}: {'; '.join(short)}",
                file=sys.stderr,
            )
        return metrics, accuracy_line(metrics, values_as_strings=self.llm.values_as_strings)

    def token_output(self, data) -> tuple[str, int]:
        """How answers are logged (token type) and the EOS id a SUT stops on: what TEST06 checks them with."""
        return self.llm.output_dtype, int(data.payload.tokenizer.eos_token_id)

    def performance_metrics(self, detail_log: Path, scenario: str) -> dict:
        """Tokens/s as the result (what the checker and the results table use), plus TTFT/TPOT percentiles."""
        from subtool.runner.harness import read_detail_log

        return token_metrics(read_detail_log(detail_log), scenario, self.llm.token_latencies)

    def measurements(self, demo: bool, model_path: Path, precision: str) -> dict:
        return {
            "input_data_types": "int32",
            "retraining": "No",
            "starting_weights_filename": ("subtool embedded demo: random weights" if demo else self.llm.weights),
            "weight_data_types": precision,
            "weight_transformations": weight_transformations(None if demo else model_path, precision),
        }


_FP8_FORMATS = {"fp8": "Hugging Face quant_method fp8", "compressed-tensors": "compressed-tensors float-quantized"}


def _fp8_checkpoint(model_path: Path | None) -> str | None:
    from subtool.runner.llm.checkpoint import fp8_checkpoint

    return fp8_checkpoint(model_path)


def weight_transformations(model_path: Path | None, precision: str) -> str:
    """measurements.json's weight_transformations: what the run did to the checkpoint's weights."""
    fmt = _fp8_checkpoint(model_path)
    if fmt is not None and precision == "fp8":
        return (
            f"a pre-quantized FP8 checkpoint ({_FP8_FORMATS[fmt]}): e4m3 weights with per-tensor or "
            "per-channel scales used as stored, block-scaled ones re-quantized to per-output-channel scales on load"
        )
    if fmt is not None:
        return f"a pre-quantized FP8 checkpoint ({_FP8_FORMATS[fmt]}): e4m3 weights dequantized to {precision} on load"
    if precision == "fp8":
        return (
            "quantized to FP8 (e4m3) on load: per-output-channel scales for the linear layers' weights, "
            "activations quantized per token at run time"
        )
    return "none"


# ------------------------------------------------------------------------------------------------ backends
def torch_sut_options(spec: LlmSpec, model_path: Path, data, config) -> dict:
    """The torch generator's settings (the local SUT's, and each Ray worker's): LlmGenerator keywords."""
    demo = demo_settings(model_path)
    # the tiny demo model runs fastest in wide batches on one thread (no OpenMP hand-offs per tiny matmul);
    # an explicit --batch-size still wins
    batch_size = config.batch_size
    if demo.get("batch_size") and not config.batch_size_given:
        batch_size = int(demo["batch_size"])
    return dict(
        generation=generation_for(spec, model_path, config.extra),
        eos_token_id=data.tokenizer.eos_token_id,
        pad_token_id=data.tokenizer.pad_token_id,
        batch_size=batch_size,
        precision=config.precision,
        threads=config.threads or demo.get("threads"),
        engine=str(config.extra.get("engine") or "auto"),
    )


def _torch_sut(device: str):
    def factory(spec: LlmSpec, model_path: Path, data, config):
        from subtool.runner.llm.checkpoint import check_checkpoint
        from subtool.runner.llm.sut_torch import TorchLlmSUT

        check_checkpoint(spec, model_path, need_weights=True)
        options = torch_sut_options(spec, model_path, data, config)
        # no --batch-size: the continuous engine on a GPU takes as many slots as its memory holds
        auto_slots = not config.batch_size_given
        if config.extra.get("tensor_parallel"):  # one engine over N processes (tp_launch.py)
            from subtool.runner.llm.tp_launch import TensorParallelSUT

            return TensorParallelSUT(
                model_path,
                data.prompts,
                options.pop("generation"),
                tensor_parallel=int(config.extra["tensor_parallel"]),
                device=device,
                auto_slots=auto_slots,
                **options,
            )
        return TorchLlmSUT(
            model_path, data.prompts, options.pop("generation"), device=device, auto_slots=auto_slots, **options
        )

    return factory


def _ray_sut(spec: LlmSpec, model_path: Path, data, config):
    from subtool.runner.llm.checkpoint import check_checkpoint
    from subtool.runner.llm.sut_ray import make_ray_llm_sut

    check_checkpoint(spec, model_path, need_weights=True)
    options = torch_sut_options(spec, model_path, data, config)
    return make_ray_llm_sut(model_path, data.prompts, config, options, LlmWorkload(spec.name).resolve_precision)


def _endpoint(extra: dict) -> str:
    if not extra.get("endpoint"):
        raise SubtoolError(
            "the openai backend needs --endpoint URL (an OpenAI-compatible server)",
            rule="run.endpoint",
            hint="e.g. --endpoint http://127.0.0.1:8000 for vLLM",
        )
    return str(extra["endpoint"])


def check_openai_backend(config) -> None:
    """The openai backend's options and its server, before the data loads (sut_openai.check_endpoint): each a
    second's work, where reading and tokenizing the prompts first took seconds to minutes before a server that was
    not running, a wrong key or a bad option was said."""
    from subtool.runner.llm.sut_openai import check_endpoint

    extra = config.extra
    endpoint = _endpoint(extra)
    endpoint_concurrency(extra, config.batch_size)
    for key in ("request_timeout_s", "request_deadline_s"):
        endpoint_seconds(extra, key, 1.0)
    check_endpoint(endpoint, extra.get("api_key_env"), extra.get("served_model"))


def _openai_sut(spec: LlmSpec, model_path: Path, data, config):
    from subtool.runner.llm.sut_openai import OpenAICompletionsSUT

    extra = config.extra
    return OpenAICompletionsSUT(
        endpoint=_endpoint(extra),
        prompts=data.prompts,
        tokenizer=data.tokenizer,
        generation=generation_for(spec, model_path, extra),
        api_key_env=extra.get("api_key_env"),
        served_model=extra.get("served_model"),
        concurrency=endpoint_concurrency(extra, config.batch_size),
        timeout_s=endpoint_seconds(extra, "request_timeout_s", 600.0),
        # one sample, all its tries: the class's 15 minutes
        request_deadline_s=endpoint_seconds(extra, "request_deadline_s", OpenAICompletionsSUT.request_deadline_s),
    )


def endpoint_seconds(extra: dict, key: str, default: float) -> float:
    """A time limit of the openai backend given through the run API's `extra`: a positive, finite number of
    seconds (absent or None: `default`). NaN would turn the limit off without a word and a negative one would fail
    every sample, so both are refused before the run starts."""
    value = extra.get(key)
    if value is None:
        return default
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        seconds = math.nan
    if isinstance(value, bool) or not (math.isfinite(seconds) and seconds > 0):
        raise SubtoolError(
            f"{key} must be a positive number of seconds, not {str(value)[:40]!r}",
            rule="run.endpoint",
            hint=f"leave {key} out for {default:g} s",
        )
    return seconds


# one thread a request in flight: past this many, a typo (or a hostile caller) would start threads until memory ends
MAX_CONCURRENCY = 4096


def endpoint_concurrency(extra: dict, default: int) -> int:
    """The openai backend's requests in flight, from the run API's `extra` (absent or None: `default`, the batch
    size): a whole number from 1 to MAX_CONCURRENCY. Each is a worker thread, so a huge number would start threads
    until memory ran out, and text or a fraction once ended in "failed unexpectedly"."""
    value, named = extra.get("concurrency"), "concurrency"
    if value is None:  # the batch size stands in: a --batch-size past the bound is refused by its own name
        value, named = default, "the batch size (the requests in flight when concurrency is not given)"
    count = None
    if isinstance(value, float) and value.is_integer():  # 8.0 from JSON; never NaN, infinity or 1.5
        count = int(value)
    elif not isinstance(value, (bool, float)):
        try:
            count = int(value)  # an int, or text of one
        except (TypeError, ValueError):
            count = None
    if count is None or not 1 <= count <= MAX_CONCURRENCY:
        raise SubtoolError(
            f"{named} must be a whole number of requests from 1 to {MAX_CONCURRENCY}, not {str(value)[:40]!r}",
            rule="run.endpoint",
            hint=f"give the openai backend at most {MAX_CONCURRENCY} requests in flight",
        )
    return count


# backend name → factory(LlmSpec, model_path, LlmData, SutConfig)
SUT_BACKENDS = {
    "torch-cpu": _torch_sut("cpu"),
    "torch-cuda": _torch_sut("cuda"),
    "openai": _openai_sut,
    "ray": _ray_sut,
}


def workload(name: str) -> LlmWorkload:
    return LlmWorkload(name)
