"""What packaging needs to know about each benchmark: LoadGen's name for it, its data set, how its accuracy line
reads, the suite it belongs to, and the reference implementation's measurements.json values."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from subtool.errors import SubtoolError


@dataclass(frozen=True)
class Benchmark:
    name: str  # official benchmark name (tree directory)
    conf_name: str  # the model name LoadGen's mlperf.conf / user.conf use
    dataset_size: int  # qsl_reported_total_count of a full accuracy run
    performance_sample_count: int
    suites: tuple[str, ...]  # "edge" / "datacenter": which system_type lists the benchmark
    accuracy_pattern: str  # a line accuracy.txt must contain (regex)
    accuracy_style: str  # "json" ({"exact_match": .., "f1": ..}) or "pydict" ({'rouge1': ..})
    accuracy_keys: tuple[str, ...]
    compliance_tests: tuple[str, ...]
    measurements: dict = field(default_factory=dict)


_BERT_MEASUREMENTS = {
    "input_data_types": "int32",
    "retraining": "No",
    "starting_weights_filename": "https://zenodo.org/record/3733896/files/model.pytorch",
    "weight_data_types": "fp32",
    "weight_transformations": "none",
}
_BERT_ACC = r'^\{["\']exact_match["\']:\s*[\d.]+,\s*["\']f1["\']:\s*[\d.]+\}'
_ROUGE_ACC = r".*'rouge1':\s*'?[\d.]+"

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "bert-99",
            "bert",
            10833,
            10833,
            ("edge",),
            _BERT_ACC,
            "json",
            ("exact_match", "f1"),
            ("TEST01",),
            _BERT_MEASUREMENTS,
        ),
        Benchmark(
            "bert-99.9",
            "bert",
            10833,
            10833,
            ("edge",),
            _BERT_ACC,
            "json",
            ("exact_match", "f1"),
            ("TEST01",),
            _BERT_MEASUREMENTS,
        ),
        Benchmark(
            "llama2-70b-99",
            "llama2-70b",
            24576,
            24576,
            ("datacenter",),
            _ROUGE_ACC,
            "pydict",
            ("rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len", "gen_num", "tokens_per_sample"),
            ("TEST06",),
            {
                "input_data_types": "int32",
                "retraining": "No",
                "starting_weights_filename": "https://huggingface.co/meta-llama/Llama-2-70b-chat-hf",
                "weight_data_types": "bf16",
                "weight_transformations": "none",
            },
        ),
        Benchmark(
            "llama2-70b-99.9",
            "llama2-70b",
            24576,
            24576,
            ("datacenter",),
            _ROUGE_ACC,
            "pydict",
            ("rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len", "gen_num", "tokens_per_sample"),
            ("TEST06",),
            {
                "input_data_types": "int32",
                "retraining": "No",
                "starting_weights_filename": "https://huggingface.co/meta-llama/Llama-2-70b-chat-hf",
                "weight_data_types": "bf16",
                "weight_transformations": "none",
            },
        ),
        Benchmark(
            "llama3.1-8b",
            "llama3_1-8b",
            13368,
            13368,
            ("datacenter",),
            _ROUGE_ACC,
            "pydict",
            ("rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len", "gen_num"),
            ("TEST06",),
            {
                "input_data_types": "int32",
                "retraining": "No",
                "starting_weights_filename": "https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct",
                "weight_data_types": "bf16",
                "weight_transformations": "none",
            },
        ),
        Benchmark(
            "gptj-99",
            "gptj",
            13368,
            13368,
            ("datacenter", "edge"),
            _ROUGE_ACC,
            "pydict",
            ("rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len", "gen_num"),
            ("TEST01",),
            {},
        ),
        Benchmark(
            "resnet",
            "resnet50",
            50000,
            1024,
            ("datacenter", "edge"),
            r"^accuracy=[\d.]+%",
            "text",
            ("accuracy",),
            ("TEST01", "TEST04"),
            {},
        ),
    )
}


def benchmark(name: str) -> Benchmark | None:
    return BENCHMARKS.get(name)


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
    return any(re.match(bench.accuracy_pattern, line) for line in text.splitlines())
