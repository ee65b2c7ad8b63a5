"""The benchmark catalogue: every benchmark subtool knows, written once.

One `Benchmark` per official benchmark name: the model name LoadGen's mlperf.conf / user.conf use, the data set,
its total and performance sample counts, the accuracy targets (as the checker names the metrics: minimum =
reference × fraction, and upper limits), the suites, the compliance tests, the model family that `subtool run`
runs it with (None: subtool packages and checks other harnesses' logs of it), and what packaging writes for it.

The round tables (subtool/mlperf/rounds/) keep what differs per round (scenarios, query counts, latencies, seeds,
whether the round lists it); tests/mlperf/test_benchmarks.py asserts that every round table agrees with this one.
The runner's workloads (runner/bert, runner/llm), packaging and the round choice read it; the family code keeps
only what is its own (tokenizer, generation settings, the model code).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from subtool.errors import SubtoolError
from subtool.mlperf.round import ACCURACY_PATTERNS, LLM_MODELS, SPECIAL_UNITS, UNITS, round_config
from subtool.mlperf.rounds import VERSIONS

Bound = tuple[str, float, float]  # (checker metric, reference, fraction): the limit is reference × fraction

# The checker's metric name → the key the accuracy script prints it under (what the runner's scorers return).
METRIC_KEYS = {
    "F1": "f1",
    "ROUGE1": "rouge1",
    "ROUGE2": "rouge2",
    "ROUGEL": "rougeL",
    "ROUGELSUM": "rougeLsum",
    "GEN_LEN": "gen_len",
    "TOKENS_PER_SAMPLE": "tokens_per_sample",
}


@dataclass(frozen=True)
class Benchmark:
    name: str  # official benchmark name (tree directory)
    conf_name: str  # the model name LoadGen's mlperf.conf / user.conf use
    dataset: str  # the data set, in words
    dataset_size: int  # total sample count: qsl_reported_total_count of a full accuracy run
    performance_sample_count: int
    suites: tuple[str, ...]  # "edge" / "datacenter": which system_type lists the benchmark
    accuracy: tuple[Bound, ...]  # closed-division minimums
    accuracy_upper: tuple[Bound, ...] = ()  # maximums
    compliance_tests: tuple[str, ...] = ()  # those of the newest round that lists it
    family: str | None = None  # the runner package that runs it (subtool.runner.<family>); None: not run here
    weights: str | None = None  # the reference checkpoint
    accuracy_style: str | None = None  # how subtool writes the accuracy line: "json" | "pydict"; None: it cannot
    accuracy_keys: tuple[str, ...] = ()  # the keys of that line, in order
    measurements: Mapping = field(default_factory=dict)  # the reference's measurements.json values

    @property
    def rounds(self) -> tuple[str, ...]:
        """The rounds whose model list has this benchmark, oldest first."""
        return tuple(v for v in VERSIONS if self.name in round_config(v).model_names)

    @property
    def tokens(self) -> bool:
        """It reports tokens (tokens/s, and TTFT/TPOT limits in Server and Interactive)."""
        return self.name in LLM_MODELS

    def units(self, scenario: str) -> str:
        return SPECIAL_UNITS.get(self.name, UNITS).get(scenario, UNITS.get(scenario, ""))

    def targets(self) -> tuple[tuple[str, float], ...]:
        """(accuracy-script key, minimum) for the metrics the runner scores; see METRIC_KEYS."""
        return tuple((METRIC_KEYS[m], ref * frac) for m, ref, frac in self.accuracy if m in METRIC_KEYS)

    def upper_targets(self) -> tuple[tuple[str, float], ...]:
        return tuple((METRIC_KEYS[m], ref * frac) for m, ref, frac in self.accuracy_upper if m in METRIC_KEYS)


def _measurements(weights: str, weight_type: str) -> dict:
    return {
        "input_data_types": "int32",
        "retraining": "No",
        "starting_weights_filename": weights,
        "weight_data_types": weight_type,
        "weight_transformations": "none",
    }


_BERT_WEIGHTS = "https://zenodo.org/record/3733896/files/model.pytorch"
_LLAMA2_WEIGHTS = "https://huggingface.co/meta-llama/Llama-2-70b-chat-hf"
_LLAMA31_8B_WEIGHTS = "https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct"
_GPTJ_WEIGHTS = "https://inference.mlcommons-storage.org/metadata/gpt-j-model-checkpoint.uri"
_ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len", "gen_num")
_CNN = "CNN-DailyMail validation set"
_OPENORCA = "OpenOrca (the reference's 24,576-sample GPT-4 subset)"


def _bert(name: str, fraction: float) -> Benchmark:
    return Benchmark(
        name, "bert", "SQuAD v1.1 dev set (10,570 questions, 10,833 features)", 10833, 10833, ("edge",),
        (("F1", 90.874, fraction),), compliance_tests=("TEST01",), family="bert", weights=_BERT_WEIGHTS,
        accuracy_style="json", accuracy_keys=("exact_match", "f1"), measurements=_measurements(_BERT_WEIGHTS, "fp32"),
    )  # fmt: skip


def _llama2(name: str, conf: str, fraction: float, runs: bool) -> Benchmark:
    tps = ("TOKENS_PER_SAMPLE", 294.45)
    return Benchmark(
        name, conf, _OPENORCA, 24576, 24576, ("datacenter",),
        (("ROUGE1", 44.4312, fraction), ("ROUGE2", 22.0352, fraction), ("ROUGEL", 28.6162, fraction), (*tps, 0.9)),
        ((*tps, 1.1),), ("TEST06",), family="llm" if runs else None, weights=_LLAMA2_WEIGHTS,
        accuracy_style="pydict", accuracy_keys=(*_ROUGE_KEYS, "tokens_per_sample"),
        measurements=_measurements(_LLAMA2_WEIGHTS, "bf16"),
    )  # fmt: skip


def _gptj(name: str, fraction: float) -> Benchmark:
    return Benchmark(
        name, "gptj", f"{_CNN} (13,368 articles)", 13368, 13368, ("datacenter", "edge"),
        (("ROUGE1", 42.9865, fraction), ("ROUGE2", 20.1235, fraction), ("ROUGEL", 29.9881, fraction),
         ("GEN_LEN", 4016878.0, 0.9)),
        compliance_tests=("TEST06",), family="llm", weights=_GPTJ_WEIGHTS, accuracy_style="pydict",
        accuracy_keys=_ROUGE_KEYS,
    )  # fmt: skip


def _simple(name, conf, dataset, total, psc, suites, accuracy, upper=(), tests=()) -> Benchmark:
    """A benchmark subtool packages and checks but does not run."""
    return Benchmark(name, conf, dataset, total, psc, suites, accuracy, upper, tests)


_405B_TPS = ("TOKENS_PER_SAMPLE", 684.68)
_DEEPSEEK_TPS = ("TOKENS_PER_SAMPLE", 3886.2274)
_SDXL = (("CLIP_SCORE", 31.68631873, 1.0), ("FID_SCORE", 23.01085758, 1.0))
_SDXL_UPPER = (("CLIP_SCORE", 31.81331801, 1.0), ("FID_SCORE", 23.95007626, 1.0))
_8B_EDGE = (("ROUGE1", 39.06, 0.99), ("ROUGE2", 16.1147, 0.99), ("ROUGEL", 24.6375, 0.99), ("ROUGELSUM", 36.124, 0.99))
_MIXTRAL = (("ROUGE1", 45.5989, 0.99), ("ROUGE2", 23.3526, 0.99), ("ROUGEL", 30.4608, 0.99))
_DLRM_V3 = (("DLRM_NE", 0.86687, 0.999), ("DLRM_ACC", 0.69651, 0.999), ("DLRM_AUC", 0.78663, 0.999))
_DC, _EDGE, _BOTH = ("datacenter",), ("edge",), ("datacenter", "edge")

# fmt: off
BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        _bert("bert-99", 0.99),
        _bert("bert-99.9", 0.999),
        Benchmark(
            "llama3.1-8b", "llama3_1-8b", f"{_CNN} (13,368 articles)", 13368, 13368, _DC,
            (("ROUGE1", 38.7792, 0.99), ("ROUGE2", 15.9075, 0.99), ("ROUGEL", 24.4957, 0.99),
             ("ROUGELSUM", 35.793, 0.99), ("GEN_LEN", 8167644.0, 0.9)),
            (("GEN_LEN", 9075160.0, 0.99),), ("TEST06",), family="llm", weights=_LLAMA31_8B_WEIGHTS,
            accuracy_style="pydict", accuracy_keys=_ROUGE_KEYS,
            measurements=_measurements(_LLAMA31_8B_WEIGHTS, "bf16"),
        ),
        _llama2("llama2-70b-99", "llama2-70b", 0.99, True),
        _llama2("llama2-70b-99.9", "llama2-70b", 0.999, True),
        _llama2("llama2-70b-interactive-99", "llama2-70b-interactive", 0.99, False),
        _llama2("llama2-70b-interactive-99.9", "llama2-70b-interactive", 0.999, False),
        _gptj("gptj-99", 0.99),
        _gptj("gptj-99.9", 0.999),
        _simple("resnet", "resnet50", "ImageNet 2012 validation set", 50000, 1024, _BOTH, (("acc", 76.46, 0.99),),
                tests=("TEST01", "TEST04")),
        _simple("retinanet", "retinanet", "OpenImages (MLPerf subset)", 24781, 64, _BOTH, (("mAP", 37.55, 0.99),),
                tests=("TEST01",)),
        _simple("3d-unet-99", "3d-unet", "KiTS 2019", 43, 43, _BOTH, (("DICE", 0.8617, 0.99),), tests=("TEST01",)),
        _simple("3d-unet-99.9", "3d-unet", "KiTS 2019", 43, 43, _BOTH, (("DICE", 0.8617, 0.999),),
                tests=("TEST01",)),
        _simple("dlrm-v2-99", "dlrm-v2", "Criteo 1TB click logs (multi-hot)", 330067, 204800, _DC,
                (("AUC", 80.31, 0.99),), tests=("TEST01",)),
        _simple("dlrm-v2-99.9", "dlrm-v2", "Criteo 1TB click logs (multi-hot)", 330067, 204800, _DC,
                (("AUC", 80.31, 0.999),), tests=("TEST01",)),
        _simple("dlrm-v3", "dlrm-v3", "the dlrm-v3 reference's data set", 349823, 349823, _DC, _DLRM_V3,
                tests=("TEST08",)),
        _simple("llama3.1-8b-edge", "llama3_1-8b-edge", f"{_CNN} (5,000 articles)", 5000, 5000, _EDGE,
                (*_8B_EDGE, ("GEN_LEN", 3051113.0, 0.9)), (("GEN_LEN", 3051113.0, 1.1),)),
        _simple("llama3.1-405b", "llama3_1-405b", "the llama3.1-405b reference's long-context set", 8313, 8313, _DC,
                (("ROUGEL", 21.6666, 0.99), ("exact_match", 90.1335, 0.99), (*_405B_TPS, 0.9)),
                ((*_405B_TPS, 1.1),), tests=("TEST06",)),
        _simple("mixtral-8x7b", "mixtral-8x7b", "OpenOrca, GSM8K and MBXP (the reference's mix)", 15000, 15000, _DC,
                (*_MIXTRAL, ("TOKENS_PER_SAMPLE", 144.84, 0.9), ("gsm8k_accuracy", 73.66, 0.99),
                 ("mbxp_accuracy", 60.16, 0.99)), (("TOKENS_PER_SAMPLE", 145.9, 1.1),), tests=("TEST06",)),
        _simple("deepseek-r1", "deepseek-r1", "the deepseek-r1 reference's mixed reasoning set", 4388, 4388, _DC,
                (("exact_match", 81.3582, 0.99), (*_DEEPSEEK_TPS, 0.9)), ((*_DEEPSEEK_TPS, 1.1),),
                tests=("TEST06",)),
        _simple("gpt-oss-120b", "gpt-oss-120b", "the gpt-oss-120b reference's data set", 6396, 6396, _DC,
                (("exact_match", 83.13, 0.99),), (("TOKENS_PER_SAMPLE", 9999.0, 1.1),), tests=("TEST07", "TEST09")),
        _simple("stable-diffusion-xl", "stable-diffusion-xl", "COCO 2014 captions (5,000)", 5000, 5000, _BOTH, _SDXL,
                _SDXL_UPPER, tests=("TEST01", "TEST04")),
        _simple("rgat", "rgat", "IGBH (full)", 788379, 788379, _DC, (("acc", 0.7286, 0.99),), tests=("TEST01",)),
        _simple("pointpainting", "pointpainting", "Waymo Open Dataset", 39987, 1024, _EDGE,
                (("mAP", 0.5425, 0.999),), tests=("TEST01", "TEST04")),
        _simple("whisper", "whisper", "LibriSpeech dev-clean and dev-other", 1633, 1633, _BOTH,
                (("ACCURACY", 97.9329, 0.99),), tests=("TEST01",)),
        _simple("yolo-95", "yolo", "COCO (the reference's 1,525-image subset)", 1525, 64, _EDGE,
                (("mAP", 53.4, 0.95),), tests=("TEST01",)),
        _simple("yolo-99", "yolo", "COCO (the reference's 1,525-image subset)", 1525, 64, _EDGE,
                (("mAP", 53.4, 0.99),), tests=("TEST01",)),
        _simple("qwen3-vl-235b-a22b", "qwen3-vl-235b-a22b", "the qwen3-vl reference's data set", 48289, 48289, _DC,
                (("F1_HIERARCHICAL", 0.7903, 0.99),)),
        _simple("qwen3.6-27b", "qwen3.6-27b", "the qwen3.6-27b reference's data set", 995, 995, _EDGE,
                (("mAP", 86.23, 0.99),)),
        _simple("wan-2.2-t2v-a14b", "wan-2.2-t2v-a14b", "VBench prompts (248)", 248, 50, _DC,
                (("vbench_score", 70.48, 0.99),), tests=("TEST04",)),
        _simple("e2e-rag-qna", "e2e-rag-qna", "the e2e-rag reference's question set", 824, 824, _DC,
                (("E2E_ACCURACY", 33.95, 1.0),), tests=("TEST09",)),
        _simple("e2e-rag-db", "e2e-rag-db", "the e2e-rag reference's document set", 2515, 2515, _DC,
                (("E2E_ACCURACY", 98, 1.0),)),
    )
}
# fmt: on


def benchmark(name: str) -> Benchmark | None:
    return BENCHMARKS.get(name)


def runnable() -> list[Benchmark]:
    """The benchmarks `subtool run` runs (those with a model family)."""
    return [b for b in BENCHMARKS.values() if b.family]


def require_benchmark(name: str, *, where: str | None = None) -> Benchmark:
    b = BENCHMARKS.get(name)
    if b is None:
        raise SubtoolError(
            f"unknown benchmark {name!r}",
            path=where,
            rule="import.unknown_model",
            hint=f"known: {', '.join(BENCHMARKS)}; an open-division custom model is written "
            f"CUSTOM=BENCHMARK, e.g. my-bert=bert-99",
        )
    return b


def split_model(spec: str) -> tuple[str, str]:
    """'my-bert=bert-99' → ('my-bert', 'bert-99'); 'bert-99' → ('bert-99', 'bert-99')."""
    if "=" in spec:
        custom, official = (s.strip() for s in spec.split("=", 1))
        return custom, official
    return spec.strip(), spec.strip()


def find_by_dataset_size(total: int) -> list[Benchmark]:
    return [b for b in BENCHMARKS.values() if b.dataset_size == total]


def format_accuracy_line(bench: Benchmark, metrics: dict) -> str:
    """The line the official accuracy script prints for these metrics (what the checker's pattern reads)."""
    if bench.accuracy_style == "json":
        missing = [k for k in bench.accuracy_keys if k not in metrics]
        if missing:
            raise SubtoolError(f"accuracy metrics lack {', '.join(missing)}", rule="import.accuracy_missing")
        return json.dumps({k: float(metrics[k]) for k in bench.accuracy_keys})
    if bench.accuracy_style == "pydict":
        return repr({k: metrics[k] for k in bench.accuracy_keys if k in metrics})
    raise SubtoolError(f"subtool cannot write {bench.name}'s accuracy line", rule="import.accuracy_missing")


def accuracy_line_ok(bench: Benchmark, text: str) -> bool:
    """`text` has a line the checker reads the benchmark's first accuracy metric from."""
    pattern = ACCURACY_PATTERNS.get(bench.accuracy[0][0]) if bench.accuracy else None
    return pattern is not None and any(pattern.match(line) for line in text.splitlines())
