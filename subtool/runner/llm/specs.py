"""The LLM benchmarks subtool runs: what is the family's own (data set file, generation settings, tokens).

The benchmark facts (LoadGen name, sample count, accuracy targets, reference weights, rounds) come from the
catalogue, subtool/mlperf/benchmarks.py; the generation settings from the MLCommons reference implementations
(language/llama3.1-8b, language/llama2-70b, language/gpt-j).
"""

from __future__ import annotations

from dataclasses import dataclass

from subtool.mlperf.benchmarks import BENCHMARKS, Benchmark


@dataclass(frozen=True)
class LlmSpec:
    name: str  # official benchmark name (tree directory)
    loadgen_model: str  # the model name in LoadGen's mlperf.conf / user.conf
    family: str  # "llama3.1" | "llama2" | "gptj": demo config and model_type
    sample_count: int  # data set size = performance_sample_count
    dataset_format: str  # "cnn-llama3" | "openorca-pickle" | "cnn-gptj"
    dataset_file: str  # the file name the reference ships
    dataset_hint: str  # how to obtain it
    model_types: tuple[str, ...]  # config.json model_type values accepted
    scenarios: tuple[str, ...]
    max_new_tokens: int
    min_new_tokens: int
    num_beams: int  # 1 = greedy
    output_dtype: str  # token ids in the accuracy log: "int32" | "int64"
    token_latencies: bool  # LoadGen use_token_latencies (TTFT/TPOT, tokens/s)
    thresholds: tuple[tuple[str, float], ...]  # metric → closed-division lower limit
    upper_limits: tuple[tuple[str, float], ...]  # metric → upper limit
    values_as_strings: bool  # the reference prints rouge values as quoted strings
    weights: str  # the reference checkpoint (measurements.json starting_weights_filename)
    round: str  # the newest round that has this benchmark (see docs/llm.md)
    compliance: tuple[str, ...]  # the compliance tests a closed-division result needs


def _from_catalogue(bench: Benchmark) -> dict:
    """The LlmSpec fields the catalogue holds."""
    return dict(
        name=bench.name,
        loadgen_model=bench.conf_name,
        sample_count=bench.performance_sample_count,
        thresholds=bench.targets(),
        upper_limits=bench.upper_targets(),
        weights=bench.weights,
        round=bench.rounds[-1],
        compliance=bench.compliance_tests,
    )


_CNN_LLAMA3_HINT = (
    "the reference's preprocessed CNN-DailyMail validation set cnn_eval.json (13,368 samples): "
    "language/llama3.1-8b/README.md 'Get Dataset', or download_cnndm.py with the Llama-3.1 "
    "tokenizer"
)
_OPENORCA_HINT = (
    "the reference's preprocessed OpenOrca pickle open_orca_gpt4_tokenized_llama.sampled_24576.pkl "
    "(24,576 samples): language/llama2-70b/README.md 'Get Dataset', or processorca.py"
)
_CNN_GPTJ_HINT = (
    "the reference's CNN-DailyMail validation set cnn_eval.json (13,368 samples, no token ids): "
    "language/gpt-j/download_cnndm.py"
)


def _llama31_8b() -> LlmSpec:
    return LlmSpec(
        **_from_catalogue(BENCHMARKS["llama3.1-8b"]),
        family="llama3.1",
        dataset_format="cnn-llama3",
        dataset_file="cnn_eval.json",
        dataset_hint=_CNN_LLAMA3_HINT,
        model_types=("llama",),
        scenarios=("Offline", "Server", "Interactive", "SingleStream"),
        max_new_tokens=128,
        min_new_tokens=1,
        num_beams=1,
        output_dtype="int32",
        token_latencies=True,
        values_as_strings=True,
    )


def _llama2_70b(name: str) -> LlmSpec:
    return LlmSpec(
        **_from_catalogue(BENCHMARKS[name]),
        family="llama2",
        dataset_format="openorca-pickle",
        dataset_file="open_orca_gpt4_tokenized_llama.sampled_24576.pkl",
        dataset_hint=_OPENORCA_HINT,
        model_types=("llama",),
        scenarios=("Offline", "Server", "Interactive"),
        max_new_tokens=1024,
        min_new_tokens=1,
        num_beams=1,
        output_dtype="int32",
        token_latencies=True,
        values_as_strings=False,
    )


def _gptj(name: str) -> LlmSpec:
    return LlmSpec(
        **_from_catalogue(BENCHMARKS[name]),
        family="gptj",
        dataset_format="cnn-gptj",
        dataset_file="cnn_eval.json",
        dataset_hint=_CNN_GPTJ_HINT,
        model_types=("gptj",),
        scenarios=("Offline", "Server", "SingleStream"),
        max_new_tokens=128,
        min_new_tokens=30,
        num_beams=4,
        output_dtype="int64",
        token_latencies=False,
        values_as_strings=True,
    )


LLM_SPECS: dict[str, LlmSpec] = {
    s.name: s
    for s in (
        _llama31_8b(),
        _llama2_70b("llama2-70b-99"),
        _llama2_70b("llama2-70b-99.9"),
        _gptj("gptj-99"),
        _gptj("gptj-99.9"),
    )
}


def _plain(x) -> str:
    """A limit or metric as written: no exponent, no binary-fraction tail (0.99 x 44.4312 is 43.986888, not
    43.98688799999999)."""
    return str(round(x, 6)) if isinstance(x, float) else str(x)


def accuracy_shortfalls(spec: LlmSpec, metrics: dict) -> list[str]:
    """Closed-division accuracy limits the metrics miss, in words (empty when all are met)."""
    out = []
    for key, low in spec.thresholds:
        value = metrics.get(key)
        if value is not None and value < low:
            out.append(f"{key} {_plain(value)} < {_plain(low)}")  # 1437911 < 7350879.6: no exponents
    for key, high in spec.upper_limits:
        value = metrics.get(key)
        if value is not None and value > high:
            out.append(f"{key} {_plain(value)} > {_plain(high)}")
    return out
