"""The rules' numbers: per-round tables (subtool/mlperf/rounds/) plus the tables that every round shares.

A round module holds one `ROUND` dict:
  version, layout ("v5" | "v6": where measurements, compliance runs and code live), seeds, aliases (folder
  name → benchmark), nameplate_power (the round reads systems/<system>_power.yaml),
  models: {benchmark: entry}. An entry may carry
  accuracy          ((metric, reference, fraction), …)   minimum = reference × fraction; or {scenario: (…)}
  accuracy_upper    ((metric, reference, fraction), …)   maximum = reference × fraction
  performance_sample_count, dataset_size, accuracy_sample_count (int, or {scenario: int})
  min_queries       {scenario: count}       only enforced for scenarios without early stopping
  latency_ns        {scenario: ns}          Server target latency the early-stopping estimate must respect
  scenarios         {system_type: (required, optional)}
  compliance        ("TEST01", …)
  result_fields     {scenario: log key}     e.g. tokens/s for the LLMs
  listed            False when the round names the benchmark in its tables but not in its model list
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

from subtool.mlperf.layout import SCENARIOS, Layout
from subtool.mlperf.rounds import ROUNDS

SCENARIO_BY_LOWER = {s.lower(): s for s in SCENARIOS}
EARLY_STOPPING_SCENARIOS = ("Server", "SingleStream", "MultiStream")
SYSTEM_TYPES = ("datacenter", "edge", "datacenter,edge", "edge,datacenter")
AVAILABILITIES = ("available", "preview", "rdi")

MIN_DURATION_MS = 600_000
MAX_ACCURACY_LOG_BYTES = 10 * 1024
LARGE_FILE_BYTES = 50 * 1024 * 1024
MS_PER_NS = 1_000_000

# Result field per scenario (LoadGen detail-log key); SingleStream/MultiStream are ns, reported as ms.
RESULT_FIELDS = {
    "Offline": "result_samples_per_second",
    "SingleStream": "early_stopping_latency_ss",
    "MultiStream": "early_stopping_latency_ms",
    "Server": "result_completed_samples_per_sec",
    "Interactive": "result_completed_samples_per_sec",
}

# Benchmarks that report tokens: they need use_token_latencies and, in Server/Interactive, TTFT/TPOT limits.
LLM_MODELS = frozenset(
    {
        "llama2-70b-99",
        "llama2-70b-99.9",
        "llama2-70b-interactive-99",
        "llama2-70b-interactive-99.9",
        "mixtral-8x7b",
        "llama3.1-405b",
        "llama3.1-8b",
        "llama3.1-8b-edge",
        "deepseek-r1",
        "gpt-oss-120b",
    }
)

_MS = 1_000_000
# p99 time-to-first-token / time-per-output-token limits, ns, by benchmark and LoadGen scenario.
LLM_TOKEN_LIMITS = {
    "llama2-70b-99": {"Server": (2000 * _MS, 200 * _MS), "Interactive": (450 * _MS, 40 * _MS)},
    "llama2-70b-99.9": {"Server": (2000 * _MS, 200 * _MS), "Interactive": (450 * _MS, 40 * _MS)},
    "llama2-70b-interactive-99": {"Server": (450 * _MS, 40 * _MS)},
    "llama2-70b-interactive-99.9": {"Server": (450 * _MS, 40 * _MS)},
    "mixtral-8x7b": {"Server": (2000 * _MS, 200 * _MS)},
    "llama3.1-405b": {"Server": (6000 * _MS, 175 * _MS), "Interactive": (4500 * _MS, 80 * _MS)},
    "llama3.1-8b": {"Server": (2000 * _MS, 100 * _MS), "Interactive": (500 * _MS, 30 * _MS)},
    "deepseek-r1": {"Server": (2000 * _MS, 80 * _MS), "Interactive": (1500 * _MS, 15 * _MS)},
    "gpt-oss-120b": {"Server": (3000 * _MS, 80 * _MS), "Interactive": (2000 * _MS, 15 * _MS)},
}

# Interactive is no LoadGen scenario: it is a Server run under the benchmark's LoadGen model name plus this suffix
# (llama3_1-8b-interactive), whose mlperf.conf entries set tighter TTFT/TPOT limits (LLM_TOKEN_LIMITS
# "Interactive"), target_latency = 0 and the same use_token_latencies / equal-issue settings. LoadGen logs it as
# effective_scenario "Server"; the tree keeps it in its own <model>/Interactive/ folder. LoadGen's mlperf.conf
# names the interactive models from v5.0.1 (llama2-70b), v5.1.1 (llama3_1-8b, llama3_1-405b), v6.0
# (deepseek-r1) and v6.1 (gpt-oss-120b); in v5.0 llama2-70b-interactive-99/99.9 were benchmarks of their own
# (a Server folder, the same conf name).
INTERACTIVE_CONF_SUFFIX = "-interactive"
LOADGEN_SCENARIO = {"Interactive": "Server"}


def loadgen_names(conf_name: str, scenario: str) -> tuple[str, str]:
    """(model name, scenario) LoadGen's user.conf and TestSettings use for a run of `scenario`: Interactive is a
    Server run of the `-interactive` model; every other scenario is itself."""
    if scenario == "Interactive":
        return conf_name + INTERACTIVE_CONF_SUFFIX, LOADGEN_SCENARIO["Interactive"]
    return conf_name, scenario


# Closed-division Offline runs must put at least this many samples in their one query.
OFFLINE_MIN_SAMPLES_PER_QUERY = {
    "resnet": 24576,
    "retinanet": 24576,
    "bert-99": 10833,
    "bert-99.9": 10833,
    "dlrm-v2-99": 24576,
    "dlrm-v2-99.9": 24576,
    "3d-unet-99": 43,
    "3d-unet-99.9": 43,
    "rnnt": 2513,
    "llama3.1-8b": 13368,
    "llama3.1-8b-edge": 5000,
    "llama2-70b-99": 24576,
    "llama2-70b-99.9": 24576,
    "llama2-70b-interactive-99": 24576,
    "llama2-70b-interactive-99.9": 24576,
    "stable-diffusion-xl": 5000,
    "mixtral-8x7b": 15000,
    "llama3.1-405b": 8313,
    "rgat": 788379,
    "deepseek-r1": 4388,
    "gpt-oss-120b": 6396,
    "whisper": 1633,
    "pointpainting": 6636,
    "yolo-99": 1525,
    "yolo-95": 1525,
    "dlrm-v3": 349823,
    "qwen3-vl-235b-a22b": 48289,
    "wan-2.2-t2v-a14b": 50,
    "e2e-rag-qna": 824,
    "e2e-rag-db": 2515,
}

# How each accuracy metric appears in accuracy.txt (the line the accuracy script prints).
# The official patterns read digits and dots only, so do these: 9.0874e1 is 9.0874 there (below bert's F1) and
# +38.8 no value; reading the exponent or a plus sign gave the opposite verdict. A minus sign, NaN and Infinity
# are read, so that a hand-edited value is reported as negative, below the threshold or not finite instead of as
# missing (each fails a closed result, as a missing value does there).
_NUM = r"(-?(?:[\d.]+|[Nn]a[Nn]|[Ii]nf(?:inity)?))"
ACCURACY_PATTERNS = {
    "acc": re.compile(r"^(?:\{\"accuracy|accuracy)[\": ]*=?\s*" + _NUM + r".*"),
    "meanAcc": re.compile(r".*'mean-accuracy':\s+'?" + _NUM + r"'?.*"),
    "AUC": re.compile(r"^AUC=" + _NUM + r".*"),
    "DLRM_NE": re.compile(r".*metric/lifetime_ne/rating:\s*" + _NUM + r".*"),
    "DLRM_ACC": re.compile(r".*metric/lifetime_accuracy/rating:\s*" + _NUM + r".*"),
    "DLRM_AUC": re.compile(r".*metric/lifetime_gauc/rating:\s*" + _NUM + r".*"),
    "mAP": re.compile(r".*(?:mAP=|'Total':)\s*" + _NUM),
    "bleu": re.compile(r"^BLEU:\s*" + _NUM + r".*"),
    # exact_match read like the F1 (a NaN there must not hide a NaN F1 as "no F1 found"), not captured
    "F1": re.compile(r"^\{[\"']exact_match[\"']:\s*(?:" + _NUM[1:-1] + r"),\s*[\"']f1[\"']:\s*" + _NUM + r"\}"),
    "ACCURACY": re.compile(r"Word Error Rate:.*, accuracy=([0-9.]+)%"),
    "DICE": re.compile(r"Accuracy:\s*mean\s*=\s*" + _NUM + r".*"),
    "ROUGE1": re.compile(r".*'rouge1':\s+'?" + _NUM + r"'?.*"),
    "ROUGE2": re.compile(r".*'rouge2':\s+'?" + _NUM + r"'?.*"),
    "ROUGEL": re.compile(r".*'rougeL':\s+'?" + _NUM + r"'?.*"),
    "ROUGELSUM": re.compile(r".*'rougeLsum':\s+'?" + _NUM + r"'?.*"),
    "GEN_LEN": re.compile(r".*'gen_len':\s" + _NUM + r".*"),
    "TOKENS_PER_SAMPLE": re.compile(r".*'tokens_per_sample':\s" + _NUM + r".*"),
    "CLIP_SCORE": re.compile(r".*'CLIP_SCORE':\s+'?" + _NUM + r".*"),
    "FID_SCORE": re.compile(r".*'FID_SCORE':\s+'?" + _NUM + r".*"),
    "gsm8k_accuracy": re.compile(r".*'gsm8k':\s" + _NUM + r".*"),
    "mbxp_accuracy": re.compile(r".*'mbxp':\s" + _NUM + r".*"),
    "exact_match": re.compile(r".*'exact_match':\s" + _NUM + r".*"),
    "vbench_score": re.compile(r".*'vbench_score':\s" + _NUM + r".*"),
    "F1_HIERARCHICAL": re.compile(r"\{.*\"f1\":\s*" + _NUM + r".*\}"),
    "E2E_ACCURACY": re.compile(r"Accuracy:\s*" + _NUM),
}
HASH_LINE = re.compile(r"^hash=(\w+)$")

# Compliance accuracy (TEST01 non-deterministic fallback): allowed relative difference, percent.
COMPLIANCE_DELTA_PERCENT = {"stable-diffusion-xl": {"CLIP_SCORE": 1, "FID_SCORE": 2}}


def test01_delta(model: str, metric: str, baseline: float, compliance: float) -> tuple[float, float]:
    """TEST01 where the responses are not the same bytes: (how far apart the baseline and the compliance accuracy
    are, percent of the compliance one; how far they may be: the model's own, else 0.1 for a 99.9 % target and 1
    for the others). `compliance` is not 0."""
    allowed = COMPLIANCE_DELTA_PERCENT.get(model, {}).get(metric, 0.1 if "99.9" in model else 1)
    return abs(1 - baseline / compliance) * 100, allowed


UNITS = {
    "SingleStream": "Latency (ms)",
    "MultiStream": "Latency (ms)",
    "Offline": "Samples/s",
    "Server": "Queries/s",
    "Interactive": "Queries/s",
}
SPECIAL_UNITS = {
    **{
        m: {"Offline": "Tokens/s", "Server": "Tokens/s", "Interactive": "Tokens/s"}
        for m in (
            "llama3.1-8b",
            "llama2-70b-99",
            "llama2-70b-99.9",
            "mixtral-8x7b",
            "llama3.1-405b",
            "deepseek-r1",
            "gpt-oss-120b",
        )
    },
    "llama3.1-8b-edge": {"Offline": "Tokens/s"},
    # gptj's rounds (up to v5.0) reported its inferred tokens/s
    **{m: {"Offline": "Tokens/s", "Server": "Tokens/s"} for m in ("gptj-99", "gptj-99.9")},
    "wan-2.2-t2v-a14b": {"SingleStream": "Latency (s)"},
    "e2e-rag-qna": {"Offline": "Tasks/s"},
}

SYSTEM_REQUIRED_FIELDS = (
    "division",
    "submitter",
    "status",
    "system_name",
    "number_of_nodes",
    "host_processor_model_name",
    "host_processors_per_node",
    "host_processor_core_count",
    "host_memory_capacity",
    "host_storage_capacity",
    "host_storage_type",
    "accelerators_per_node",
    "accelerator_model_name",
    "accelerator_memory_capacity",
    "framework",
    "operating_system",
    "system_type",
    "other_software_stack",
    "host_processor_frequency",
    "host_processor_caches",
    "host_memory_configuration",
    "host_processor_interconnect",
    "host_networking",
    "host_networking_topology",
    "accelerator_frequency",
    "accelerator_host_interconnect",
    "accelerator_interconnect",
    "accelerator_interconnect_topology",
    "accelerator_memory_configuration",
    "accelerator_on-chip_memories",
    "cooling",
    "hw_notes",
    "sw_notes",
    "host_network_card_count",
    "system_type_detail",
)
# Required fields whose value must be "meaningful": the official test is Python truthiness (0, "", [] fail).
SYSTEM_MEANINGFUL_FIELDS = frozenset(
    {
        "division",
        "submitter",
        "system_type",
        "status",
        "system_name",
        "number_of_nodes",
        "host_processor_model_name",
        "host_processors_per_node",
        "host_processor_core_count",
        "host_memory_capacity",
        "host_memory_configuration",
        "host_storage_capacity",
        "host_storage_type",
        "host_networking",
        "host_network_card_count",
        "host_networking_topology",
        "accelerators_per_node",
        "accelerator_model_name",
        "accelerator_memory_capacity",
        "accelerator_host_interconnect",
        "accelerator_memory_configuration",
        "accelerator_interconnect",
        "cooling",
        "framework",
        "operating_system",
        "other_software_stack",
    }
)
SYSTEM_NETWORK_FIELDS = (
    "is_network",
    "network_type",
    "network_media",
    "network_rate",
    "nic_loadgen",
    "number_nic_loadgen",
    "net_software_stack_loadgen",
    "network_protocol",
    "number_connections",
    "nic_sut",
    "number_nic_sut",
    "net_software_stack_sut",
    "network_topology",
)
NETWORK_SUT_NAME_MARK = "Network SUT"

MEASUREMENTS_FIELDS = (
    "input_data_types",
    "retraining",
    "starting_weights_filename",
    "weight_data_types",
    "weight_transformations",
)
MEASUREMENTS_FILES = ("user.conf", "README.md")

COMPLIANCE_PERF_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
COMPLIANCE_PERF_OPTIONAL = frozenset({"mlperf_log_accuracy.json", "mlperf_log_trace.json", "results.json", ".gitkeep"})
TEST01_ACC_FILES = ("mlperf_log_accuracy.json", "accuracy.txt", "baseline_accuracy.txt", "compliance_accuracy.txt")


@dataclass(frozen=True)
class Bound:
    metric: str
    reference: float
    fraction: float

    @property
    def value(self) -> float:
        return self.reference * self.fraction


@dataclass(frozen=True)
class ModelRules:
    name: str
    entry: Mapping = field(repr=False)

    def accuracy(self, scenario: str | None) -> tuple[Bound, ...]:
        raw = self.entry.get("accuracy", ())
        if isinstance(raw, dict):
            raw = raw.get(SCENARIO_BY_LOWER.get(str(scenario).lower(), scenario)) or raw.get("Offline") or ()
        return tuple(Bound(*b) for b in raw)

    def accuracy_upper(self) -> tuple[Bound, ...]:
        return tuple(Bound(*b) for b in self.entry.get("accuracy_upper", ()))

    @property
    def performance_sample_count(self) -> int | None:
        return self.entry.get("performance_sample_count")

    def accuracy_sample_count(self, scenario: str) -> int | None:
        count = self.entry.get("accuracy_sample_count")
        if isinstance(count, dict):
            count = count.get(scenario, count.get(scenario.lower()))
        return count if count is not None else self.entry.get("dataset_size")

    def min_queries(self, scenario: str) -> int | None:
        return self.entry.get("min_queries", {}).get(scenario)

    def latency_ns(self, scenario: str) -> int | None:
        return self.entry.get("latency_ns", {}).get(scenario)

    def lists_scenario(self, scenario: str) -> bool:
        """Some system type of the round has `scenario` for this benchmark (required or optional)."""
        return any(scenario in (*req, *opt) for req, opt in self.entry.get("scenarios", {}).values())

    def scenarios(self, system_type: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        key = "datacenter,edge" if system_type in ("datacenter,edge", "edge,datacenter") else system_type
        return self.entry.get("scenarios", {}).get(key)

    @property
    def compliance_tests(self) -> tuple[str, ...]:
        return tuple(self.entry.get("compliance", ()))

    def result_field(self, scenario: str) -> str | None:
        return self.entry.get("result_fields", {}).get(scenario) or RESULT_FIELDS.get(scenario)

    @property
    def is_llm(self) -> bool:
        return self.name in LLM_MODELS

    def units(self, scenario: str) -> str:
        return SPECIAL_UNITS.get(self.name, UNITS).get(scenario, UNITS.get(scenario, ""))


class RoundConfig:
    """Typed access to one round's table."""

    def __init__(self, table: Mapping) -> None:
        self.version: str = table["version"]
        self.layout: Layout = Layout(self.version)
        self.seeds: Mapping[str, int] = table["seeds"]
        self.aliases: Mapping[str, str] = table["aliases"]
        self._models: Mapping[str, Mapping] = table["models"]
        # Rounds that look for systems/<system>_power.yaml record design_power_watts as None without power.
        self.nameplate_power: bool = table.get("nameplate_power", False)

    @property
    def model_names(self) -> list[str]:
        return sorted(m for m, e in self._models.items() if e.get("listed", True))

    def resolve(self, folder: str, mapping: Mapping[str, str] | None = None) -> str:
        """Benchmark name for a model folder, the way the official checker resolves it."""
        if folder in self._models and self._models[folder].get("listed", True):
            return folder
        if folder in self.aliases:
            return self.aliases[folder]
        if mapping and isinstance(mapping.get(folder), str) and mapping[folder]:
            return mapping[folder]
        guess = folder
        if any(k in folder for k in ("mobilenet", "efficientnet", "resnet50")):
            guess = "resnet"
        elif "bert-99.9" in folder:
            guess = "bert-99.9"
        elif "bert-99" in folder:
            guess = "bert-99"
        elif "llama3_1-405b" in folder:
            guess = "llama3.1-405b"
        return self.aliases.get(guess, guess)

    def model(self, name: str) -> ModelRules | None:
        entry = self._models.get(name)
        if entry is None or "performance_sample_count" not in entry:
            return None
        return ModelRules(name, entry)


@cache
def round_config(version: str) -> RoundConfig:
    return RoundConfig(ROUNDS[version])


def round_of_seeds(qsl: object, sample_index: object, schedule: object) -> str | None:
    """The round whose official seeds these are (tells a user which round their LoadGen belongs to)."""
    for version, table in ROUNDS.items():
        s = table["seeds"]
        if (qsl, sample_index, schedule) == (s["qsl_rng_seed"], s["sample_index_rng_seed"], s["schedule_rng_seed"]):
            return version
    return None
