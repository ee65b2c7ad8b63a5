"""The LLM benchmarks subtool runs: the official names, data sets, generation settings and accuracy targets.

Every number here comes from the MLCommons reference implementations (language/llama3.1-8b, language/llama2-70b,
language/gpt-j), LoadGen's built-in mlperf.conf and the submission checker of the round named in `round`.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    r1, r2, rl, rlsum, gen_len = 38.7792, 15.9075, 24.4957, 35.793, 8167644
    return LlmSpec(
        name="llama3.1-8b",
        loadgen_model="llama3_1-8b",
        family="llama3.1",
        sample_count=13368,
        dataset_format="cnn-llama3",
        dataset_file="cnn_eval.json",
        dataset_hint=_CNN_LLAMA3_HINT,
        model_types=("llama",),
        scenarios=("Offline", "Server", "SingleStream"),
        max_new_tokens=128,
        min_new_tokens=1,
        num_beams=1,
        output_dtype="int32",
        token_latencies=True,
        thresholds=(
            ("rouge1", r1 * 0.99),
            ("rouge2", r2 * 0.99),
            ("rougeL", rl * 0.99),
            ("rougeLsum", rlsum * 0.99),
            ("gen_len", gen_len * 0.9),
        ),
        upper_limits=(("gen_len", gen_len * 1.1),),
        values_as_strings=True,
        weights="https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct",
        round="v6.1",
    )


def _llama2_70b(name: str, fraction: float, round_: str) -> LlmSpec:
    r1, r2, rl, tps = 44.4312, 22.0352, 28.6162, 294.45
    return LlmSpec(
        name=name,
        loadgen_model="llama2-70b",
        family="llama2",
        sample_count=24576,
        dataset_format="openorca-pickle",
        dataset_file="open_orca_gpt4_tokenized_llama.sampled_24576.pkl",
        dataset_hint=_OPENORCA_HINT,
        model_types=("llama",),
        scenarios=("Offline", "Server"),
        max_new_tokens=1024,
        min_new_tokens=1,
        num_beams=1,
        output_dtype="int32",
        token_latencies=True,
        thresholds=(
            ("rouge1", r1 * fraction),
            ("rouge2", r2 * fraction),
            ("rougeL", rl * fraction),
            ("tokens_per_sample", tps * 0.9),
        ),
        upper_limits=(("tokens_per_sample", tps * 1.1),),
        values_as_strings=False,
        weights="https://huggingface.co/meta-llama/Llama-2-70b-chat-hf",
        round=round_,
    )


def _gptj(name: str, fraction: float) -> LlmSpec:
    r1, r2, rl, gen_len = 42.9865, 20.1235, 29.9881, 4016878
    return LlmSpec(
        name=name,
        loadgen_model="gptj",
        family="gptj",
        sample_count=13368,
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
        thresholds=(
            ("rouge1", r1 * fraction),
            ("rouge2", r2 * fraction),
            ("rougeL", rl * fraction),
            ("gen_len", gen_len * 0.9),
        ),
        upper_limits=(),
        values_as_strings=True,
        weights="https://inference.mlcommons-storage.org/metadata/gpt-j-model-checkpoint.uri",
        round="v5.0",
    )


LLM_SPECS: dict[str, LlmSpec] = {
    s.name: s
    for s in (
        _llama31_8b(),
        _llama2_70b("llama2-70b-99", 0.99, "v6.0"),
        _llama2_70b("llama2-70b-99.9", 0.999, "v6.1"),
        _gptj("gptj-99", 0.99),
        _gptj("gptj-99.9", 0.999),
    )
}


def accuracy_shortfalls(spec: LlmSpec, metrics: dict) -> list[str]:
    """Closed-division accuracy limits the metrics miss, in words (empty when all are met)."""
    out = []
    for key, low in spec.thresholds:
        value = metrics.get(key)
        if value is not None and value < low:
            out.append(f"{key} {value} < {low}")  # plain: 1437911 < 7350879.6, no exponents
    for key, high in spec.upper_limits:
        value = metrics.get(key)
        if value is not None and value > high:
            out.append(f"{key} {value} > {high}")
    return out
