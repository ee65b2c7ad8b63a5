"""Where the official checkpoints and data sets come from: one `Asset` per (benchmark, kind), each with the files
`subtool fetch` downloads, their sizes and checksums, and the document they were read from.

The entries are data, read from the reference implementations and MLCommons' documentation (each names its
`document`). A checksum is never guessed: a file without an official one has `checksum_origin="first-download"`,
and `subtool fetch` records the digest of the first verified download and says so. Files of a Hugging Face
repository (`hub`) take their checksums from the Hub's own metadata at a pinned revision. A file served from a git
repository at a pinned commit may carry the sha256 of that exact blob (`checksum_origin="git-commit"`).

docs/assets.md tells, per benchmark, where each file comes from and what could not be found.

`subtool/fetch/` downloads, verifies and installs them; `subtool run` finds what it installed.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("model", "dataset")
CHECKSUM_ORIGINS = ("official", "hub", "first-download", "git-commit")
# AssetFile.unpack: "tar.gz" | "zip" (archives whose members become the asset's files) | "gz" (one gzip-compressed
# file, installed decompressed under its name less ".gz"; its checksum is the compressed file's)
UNPACK_KINDS = ("tar.gz", "zip", "gz")


@dataclass(frozen=True)
class HubFiles:
    """Files of a Hugging Face repository: all files matching `patterns` at `revision` (a commit hash where the
    document pins one; else a branch, and fetch records the commit it resolved)."""

    repo_id: str
    revision: str
    patterns: tuple[str, ...] = ("*",)
    gated: bool = False  # needs the user's token ($HF_TOKEN)


@dataclass(frozen=True)
class AssetFile:
    """One file downloaded over HTTP(S)."""

    name: str  # path inside the asset's directory, e.g. "dev-v1.1.json"
    url: str
    size: int | None = None  # bytes, when the document gives it
    sha256: str | None = None
    md5: str | None = None
    checksum_origin: str = "official"  # one of CHECKSUM_ORIGINS
    unpack: str | None = None  # one of UNPACK_KINDS
    document: str | None = None  # where this file's URL and checksum were read, when not the asset's document

    @property
    def installed_name(self) -> str | None:
        """The file's name in the asset's folder once installed; None for an archive (its members are the files)."""
        if self.unpack is None:
            return self.name
        if self.unpack == "gz" and self.name.endswith(".gz"):
            return self.name[: -len(".gz")]
        return None


@dataclass(frozen=True)
class Asset:
    benchmark: str  # catalogue name (subtool/mlperf/benchmarks.py), e.g. "bert-99"
    kind: str  # "model" | "dataset"
    form: str  # in words, what `subtool run` reads, e.g. "the MLPerf reference PyTorch checkpoint"
    run_path: str  # what run gets as --model-path/--dataset-path, relative to the installed folder ("." = it)
    document: str  # URL of the document the sources and checksums were read from
    files: tuple[AssetFile, ...] = ()
    hub: HubFiles | None = None

    @property
    def gated(self) -> bool:
        return bool(self.hub and self.hub.gated)


# ---------------------------------------------------------------------------------------------------------------
# The entries. Documents are GitHub blob URLs at the commit they were read at.

_INFERENCE = "https://github.com/mlcommons/inference/blob/b66003e10e2db4b8c36a448b0545ec90fcc6e9e9"
_INFERENCE_RAW = "https://raw.githubusercontent.com/mlcommons/inference/b66003e10e2db4b8c36a448b0545ec90fcc6e9e9"
_AUTOMATIONS = "https://github.com/mlcommons/mlperf-automations/blob/20d3d94c4fbbefca1a69f0e2b23295d196fd3e63/script"
# mlcommons/r2-infra holds the .uri (base URL) and .md5 (file list with md5s) files MLCommons' R2 downloader reads;
# a file's plain HTTPS URL is the .uri's base URL + "/" + its path in the .md5 file (what the downloader fetches).
_R2_METADATA = "https://github.com/mlcommons/r2-infra/blob/5d77ea6ed10dd821cd34000ea6c000ae54fa306b/inference/metadata"
_R2 = "https://inference.mlcommons-storage.org"


def _variants(names: tuple[str, ...], **fields) -> tuple[Asset, ...]:
    """One Asset per benchmark name with the same files: the -99 and -99.9 variants share checkpoint and data."""
    return tuple(Asset(benchmark=name, **fields) for name in names)


_BERT = ("bert-99", "bert-99.9")
_BERT_MODEL = dict(
    kind="model",
    form="the MLPerf reference PyTorch checkpoint: model.pytorch (a BertForQuestionAnswering state dict), "
    "Google's bert_config.json and the WordPiece vocab.txt",
    run_path=".",
    document=f"{_AUTOMATIONS}/get-ml-model-bert-large-squad/meta.yaml#L247-L254",
    files=(
        AssetFile(
            name="model.pytorch",
            url="https://zenodo.org/record/3733896/files/model.pytorch",
            md5="00fbcbfaebfa20d87ac9885120a6e9b4",
        ),
        AssetFile(
            name="vocab.txt",
            url="https://zenodo.org/record/3733868/files/vocab.txt",
            md5="64800d5d8528ce344256daf115d4965e",
            document=f"{_AUTOMATIONS}/get-dataset-squad-vocab/meta.yaml#L41-L46",
        ),
        AssetFile(
            name="bert_config.json",
            url=f"{_INFERENCE_RAW}/language/bert/bert_config.json",
            size=314,
            sha256="bfa42236d269e2aeb3a6d30412a33d15dbe8ea597e2b01dc9518c63cc6efafcb",
            checksum_origin="git-commit",
            document=f"{_INFERENCE}/language/bert/bert_config.json",
        ),
    ),
)
_BERT_DATASET = dict(
    kind="dataset",
    form="SQuAD v1.1 dev set (dev-v1.1.json, 10,570 questions), as published by its authors",
    run_path="dev-v1.1.json",
    document=f"{_AUTOMATIONS}/get-dataset-squad/meta.yaml#L43-L47",
    files=(
        AssetFile(
            name="dev-v1.1.json",
            url="https://raw.githubusercontent.com/rajpurkar/SQuAD-explorer/master/dataset/dev-v1.1.json",
            md5="3e85deb501d4e538b6bc56f786231552",
        ),
    ),
)

# The Llama checkpoints: gated on Hugging Face (the user accepts Meta's license there and sets HF_TOKEN). Only the
# Hugging Face format is fetched: the safetensors shards, configs and tokenizer, not the repos' duplicate
# pytorch_model-*.bin shards (nor their index) nor Meta's original/ consolidated weights.
_LLAMA_PATTERNS = (
    "config.json",
    "generation_config.json",
    "model*.safetensors",
    "model.safetensors.index.json",
    "tokenizer*",
    "special_tokens_map.json",
    "LICENSE*",
    "USE_POLICY.md",
)
_LLAMA31_8B_MODEL = Asset(
    benchmark="llama3.1-8b",
    kind="model",
    form="the Hugging Face checkpoint meta-llama/Llama-3.1-8B-Instruct (bf16 safetensors)",
    run_path=".",
    document=f"{_INFERENCE}/language/llama3.1-8b/README.md#L112-L119",
    # "main", not the README's pin: the commit it names (be673f32…) is the one language/llama3.1-405b/README.md
    # pins for Llama-3.1-405B-Instruct, copied over; docs/assets.md says more. fetch records the commit it resolves.
    hub=HubFiles(repo_id="meta-llama/Llama-3.1-8B-Instruct", revision="main", patterns=_LLAMA_PATTERNS, gated=True),
)
_LLAMA31_8B_DATASET = Asset(
    benchmark="llama3.1-8b",
    kind="dataset",
    form="the reference's preprocessed CNN-DailyMail validation set cnn_eval.json (13,368 samples, prompts "
    "tokenized with the Llama-3.1 tokenizer), as MLCommons serves it",
    run_path="cnn_eval.json",
    document=f"{_R2_METADATA}/llama3-1-8b-cnn-eval.md5",
    files=(
        AssetFile(
            name="cnn_eval.json",
            url=f"{_R2}/llama3.1_8b/datasets/cnn_eval.json",
            md5="c41c613c17794d117899fdcdeeadbe3c",
        ),
    ),
)

_LLAMA2 = ("llama2-70b-99", "llama2-70b-99.9")
_LLAMA2_MODEL = dict(
    kind="model",
    form="the Hugging Face checkpoint meta-llama/Llama-2-70b-chat-hf (fp16 safetensors)",
    run_path=".",
    document=f"{_INFERENCE}/language/llama2-70b/README.md#L78-L85",
    # the README pins no revision
    hub=HubFiles(repo_id="meta-llama/Llama-2-70b-chat-hf", revision="main", patterns=_LLAMA_PATTERNS, gated=True),
)
_LLAMA2_DATASET = dict(
    kind="dataset",
    form="the reference's preprocessed OpenOrca set open_orca_gpt4_tokenized_llama.sampled_24576.pkl (24,576 "
    "samples, a pickled DataFrame), as MLCommons serves it (gzip-compressed)",
    run_path="open_orca_gpt4_tokenized_llama.sampled_24576.pkl",
    document=f"{_R2_METADATA}/llama-2-70b-open-orca-dataset.md5",
    files=(
        AssetFile(
            name="open_orca_gpt4_tokenized_llama.sampled_24576.pkl.gz",
            url=f"{_R2}/open_orca/open_orca_gpt4_tokenized_llama.sampled_24576.pkl.gz",
            md5="c247a315b9328365f66d2c2585b35cd4",
            unpack="gz",
        ),
    ),
)

_GPTJ = ("gptj-99", "gptj-99.9")
# gpt-j-model-checkpoint.md5: every file of the checkpoint MLCommons serves, with its md5.
_GPTJ_FILES = (
    ("README.md", "03063eb354bd7d3cc1e2846a9d2fb87f"),
    ("added_tokens.json", "ca7e2d07705a39856dbcca4244508bcf"),
    ("config.json", "82b1b65105da74c01fa4ea537a452979"),
    ("generation_config.json", "6bc47803cbe40672a5884df92090e3b6"),
    ("merges.txt", "75a37753dd7a28a2c5df80c28bf06e4e"),
    ("pytorch_model-00001-of-00003.bin", "ea3dbd2d8810c1132b3e29df6cbdf4e0"),
    ("pytorch_model-00002-of-00003.bin", "55ca89d791b65fe2c6769d6f0ddca783"),
    ("pytorch_model-00003-of-00003.bin", "43dec250d3b8bf2447ce627e5d6a5339"),
    ("pytorch_model.bin.index.json", "d7a2ecdb707c22e253c56248bd04c112"),
    ("special_tokens_map.json", "6d363e9825a4feb89a3c32dfe036d722"),
    ("tokenizer_config.json", "04b97791420d35946866969497319147"),
    ("trainer_state.json", "f3d3fb5c2ab359e46c76723b66bc62df"),
    ("vocab.json", "bfe120ed87c2489c38daf0ebcf0bd64b"),
)
_GPTJ_MODEL = dict(
    kind="model",
    form="MLCommons' GPT-J 6B checkpoint fine-tuned on CNN-DailyMail (Hugging Face format, fp32 .bin shards)",
    run_path=".",
    document=f"{_R2_METADATA}/gpt-j-model-checkpoint.md5",
    files=tuple(AssetFile(name=name, url=f"{_R2}/gpt-j/checkpoint-final/{name}", md5=md5) for name, md5 in _GPTJ_FILES),
)
# No gptj data set: MLCommons serves no processed cnn_eval.json for GPT-J; the reference builds it with
# language/gpt-j/download_cnndm.py from the Hugging Face cnn_dailymail 3.0.0 validation split (docs/assets.md).

ASSETS: tuple[Asset, ...] = (
    *_variants(_BERT, **_BERT_MODEL),
    *_variants(_BERT, **_BERT_DATASET),
    _LLAMA31_8B_MODEL,
    _LLAMA31_8B_DATASET,
    *_variants(_LLAMA2, **_LLAMA2_MODEL),
    *_variants(_LLAMA2, **_LLAMA2_DATASET),
    *_variants(_GPTJ, **_GPTJ_MODEL),
)


# What subtool cannot fetch for a benchmark it can fetch something of, and how a team gets it instead.
NOT_SERVED = {
    ("gptj", "dataset"): "MLCommons serves no processed cnn_eval.json for GPT-J: build it with "
    "language/gpt-j/download_cnndm.py from the MLCommons inference repository (docs/assets.md) and pass it with "
    "--dataset-path",
}


def not_served(benchmark: str, kind: str) -> str | None:
    """Why `kind` of `benchmark` is not fetched, and what to do instead; None where it is (or nothing is known)."""
    family = benchmark.split("-")[0]
    return NOT_SERVED.get((family, kind))


def assets_for(benchmark: str) -> tuple[Asset, ...]:
    """The assets of one benchmark (model first, then data set); () for one subtool cannot fetch."""
    return tuple(sorted((a for a in ASSETS if a.benchmark == benchmark), key=lambda a: KINDS.index(a.kind)))


def asset(benchmark: str, kind: str) -> Asset | None:
    return next((a for a in ASSETS if a.benchmark == benchmark and a.kind == kind), None)
