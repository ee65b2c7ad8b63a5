"""The official sources `subtool fetch` downloads (subtool/mlperf/assets.py): every benchmark subtool runs has
them, each file is fetchable and verifiable as written, and what gets installed is what `subtool run` reads.

The runner's names are read from the runner's own light modules (no torch): the LLM specs' dataset files, the BERT
reference checkpoint's file names and format detection, the LLM checkpoint's weight files.
"""

from __future__ import annotations

import re
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest

from subtool.mlperf.assets import ASSETS, CHECKSUM_ORIGINS, KINDS, UNPACK_KINDS, Asset, AssetFile, asset, assets_for
from subtool.mlperf.benchmarks import BENCHMARKS, runnable
from subtool.runner.bert.checkpoint import REFERENCE_CONFIG, REFERENCE_WEIGHTS, checkpoint_format
from subtool.runner.llm.checkpoint import WEIGHT_FILES
from subtool.runner.llm.specs import LLM_SPECS

# (benchmark, kind) that subtool runs but cannot fetch, each with its reason. An entry here is checked to be really
# missing from ASSETS, so a source found later makes this table shrink rather than go stale.
EXCEPTIONS = {
    # MLCommons serves no processed cnn_eval.json for GPT-J: the reference builds it with
    # language/gpt-j/download_cnndm.py from the Hugging Face cnn_dailymail 3.0.0 validation split (its prompts
    # differ from llama3.1-8b's cnn_eval.json, so that file is not a stand-in). docs/assets.md says how to make it.
    ("gptj-99", "dataset"): "no processed data set served; built by the reference's download_cnndm.py",
    ("gptj-99.9", "dataset"): "no processed data set served; built by the reference's download_cnndm.py",
}
BERT_DATASET_FILE = "dev-v1.1.json"  # squad.read_squad_examples reads the SQuAD v1.1 dev file; it has no constant
LLAMA_FAMILIES = ("llama3.1", "llama2")
HEX = {"md5": re.compile(r"[0-9a-f]{32}"), "sha256": re.compile(r"[0-9a-f]{64}")}
COMMIT = re.compile(r"[0-9a-f]{40}")


def _files() -> list[tuple[Asset, AssetFile]]:
    return [(a, f) for a in ASSETS for f in a.files]


def _id(item) -> str:
    a, f = item if isinstance(item, tuple) else (item, None)
    return f"{a.benchmark}:{a.kind}" + (f":{f.name}" if f else "")


def test_every_runnable_benchmark_has_a_model_and_a_dataset_or_a_stated_exception():
    missing = [
        (b.name, kind)
        for b in runnable()
        for kind in KINDS
        if asset(b.name, kind) is None and (b.name, kind) not in EXCEPTIONS
    ]
    assert not missing, f"no official source for {missing}: add an Asset or an EXCEPTIONS entry with the reason"
    stale = [key for key in EXCEPTIONS if asset(*key) is not None]
    assert not stale, f"EXCEPTIONS lists {stale}, which now have an Asset"
    runs = {b.name for b in runnable()}
    assert {name for name, _ in EXCEPTIONS} <= runs and all(kind in KINDS for _, kind in EXCEPTIONS)


def test_one_asset_per_known_benchmark_and_kind_with_something_to_fetch():
    keys = [(a.benchmark, a.kind) for a in ASSETS]
    assert len(keys) == len(set(keys)), "two Assets for one (benchmark, kind)"
    runs = {b.name for b in runnable()}
    for a in ASSETS:
        assert a.benchmark in BENCHMARKS and a.benchmark in runs, f"{_id(a)}: not a benchmark subtool runs"
        assert a.kind in KINDS, f"{_id(a)}: kind {a.kind!r}"
        assert a.files or a.hub, f"{_id(a)}: neither files nor a Hub repository"
        assert a.form.strip(), f"{_id(a)}: no form"
        names = [f.name for f in a.files]
        assert len(names) == len(set(names)), f"{_id(a)}: a file name twice"
    assert [a.kind for a in assets_for("bert-99")] == ["model", "dataset"]


def _https(url: str | None) -> bool:
    parts = urlsplit(url or "")
    return parts.scheme == "https" and bool(parts.hostname) and " " not in (url or "") and not parts.username


def _safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return (
        bool(name)
        and "\\" not in name
        and not path.is_absolute()
        and ".." not in path.parts
        and not re.match(r"^[A-Za-z]:", name)
        and all(part not in ("", ".") for part in name.split("/"))
        and name.isprintable()
    )


@pytest.mark.parametrize("item", _files(), ids=_id)
def test_file_has_an_https_url_and_a_safe_name(item):
    a, f = item
    assert _https(f.url), f"{_id(item)}: {f.url!r} is not an https URL"
    assert _safe_name(f.name), f"{_id(item)}: {f.name!r} could land outside the asset folder"
    assert f.size is None or (isinstance(f.size, int) and f.size > 0), f"{_id(item)}: size {f.size!r}"
    assert f.unpack is None or f.unpack in UNPACK_KINDS, f"{_id(item)}: unpack {f.unpack!r}"
    if f.unpack == "gz":
        assert f.name.endswith(".gz") and _safe_name(f.installed_name or ""), f"{_id(item)}: a .gz file's name"


@pytest.mark.parametrize("item", _files(), ids=_id)
def test_file_checksum_is_official_or_from_the_commit_or_recorded_at_first_download(item):
    a, f = item
    assert f.checksum_origin in CHECKSUM_ORIGINS and f.checksum_origin != "hub", f"{_id(item)}: {f.checksum_origin!r}"
    given = {kind: value for kind, value in (("md5", f.md5), ("sha256", f.sha256)) if value is not None}
    if f.checksum_origin == "first-download":
        assert not given, f"{_id(item)}: origin first-download but a checksum is written ({given})"
        return
    assert given, f"{_id(item)}: origin {f.checksum_origin} without a checksum"
    for kind, value in given.items():
        assert HEX[kind].fullmatch(value), f"{_id(item)}: {kind} {value!r} is not {HEX[kind].pattern}"
    if f.checksum_origin == "git-commit":
        # the sha256 of one blob: the URL must name that exact commit, and so must the document
        parts = urlsplit(f.url)
        assert f.sha256 and parts.hostname == "raw.githubusercontent.com", f"{_id(item)}: git-commit needs a raw URL"
        assert COMMIT.fullmatch(parts.path.split("/")[3]), f"{_id(item)}: {f.url} is not at a pinned commit"
        assert f.document and parts.path.split("/")[3] in f.document, f"{_id(item)}: document at another commit"


@pytest.mark.parametrize("a", ASSETS, ids=_id)
def test_documents_are_https(a):
    assert _https(a.document), f"{_id(a)}: document {a.document!r}"
    for f in a.files:
        assert f.document is None or _https(f.document), f"{_id((a, f))}: document {f.document!r}"


@pytest.mark.parametrize("a", ASSETS, ids=_id)
def test_run_path_is_the_file_the_runner_reads(a):
    if a.kind == "model":
        assert a.run_path == ".", f"{_id(a)}: a checkpoint is its folder, run_path {a.run_path!r}"
        return
    spec = LLM_SPECS.get(a.benchmark)
    expected = spec.dataset_file if spec else BERT_DATASET_FILE
    assert a.run_path == expected, f"{_id(a)}: run_path {a.run_path!r}, the runner reads {expected!r}"
    installed = {f.installed_name for f in a.files}
    assert a.run_path in installed, f"{_id(a)}: run_path {a.run_path!r} is none of the installed files {installed}"


def _installed_names(a: Asset) -> set[str]:
    return {f.installed_name for f in a.files if f.installed_name}


@pytest.mark.parametrize("name", sorted({a.benchmark for a in ASSETS if a.benchmark.startswith("bert")}))
def test_bert_checkpoint_is_the_reference_format_the_runner_detects(name, tmp_path):
    a = asset(name, "model")
    for file_name in _installed_names(a):
        (tmp_path / file_name).write_bytes(b"")
    assert checkpoint_format(tmp_path) == "mlperf-pytorch"
    assert {REFERENCE_WEIGHTS, REFERENCE_CONFIG, "vocab.txt"} <= _installed_names(a)


def _fetches(a: Asset, name: str) -> bool:
    if a.hub:
        return any(fnmatch(name, pattern) for pattern in a.hub.patterns)  # huggingface_hub's allow_patterns rule
    return name in _installed_names(a)


@pytest.mark.parametrize("name", sorted(LLM_SPECS))
def test_llm_checkpoint_brings_config_weights_and_tokenizer(name):
    a = asset(name, "model")
    assert a is not None
    assert _fetches(a, "config.json"), f"{_id(a)}: no config.json"
    weights = ("model.safetensors.index.json", "model-00001-of-00002.safetensors") if a.hub else WEIGHT_FILES
    assert any(_fetches(a, w) for w in weights), f"{_id(a)}: none of {WEIGHT_FILES}"
    tokenizers = ("tokenizer.json", "tokenizer.model", "vocab.json")
    assert any(_fetches(a, t) for t in tokenizers), f"{_id(a)}: no tokenizer"
    if a.hub:  # the repos' duplicate .bin shards and Meta's original/ weights are not fetched
        for unwanted in ("pytorch_model-00001-of-00015.bin", "pytorch_model.bin.index.json", "original/params.json"):
            assert not _fetches(a, unwanted), f"{_id(a)}: fetches {unwanted}"
        assert _fetches(a, "tokenizer_config.json") and _fetches(a, "generation_config.json")


@pytest.mark.parametrize("a", [a for a in ASSETS if a.hub], ids=_id)
def test_hub_repository_and_revision(a):
    assert re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", a.hub.repo_id), f"{_id(a)}: repo id {a.hub.repo_id!r}"
    assert COMMIT.fullmatch(a.hub.revision) or a.hub.revision == "main", f"{_id(a)}: revision {a.hub.revision!r}"
    assert a.hub.patterns and all(p and not p.startswith("/") and ".." not in p for p in a.hub.patterns)


@pytest.mark.parametrize("a", ASSETS, ids=_id)
def test_gated_exactly_for_the_llama_checkpoints(a):
    spec = LLM_SPECS.get(a.benchmark)
    llama = a.kind == "model" and spec is not None and spec.family in LLAMA_FAMILIES
    assert a.gated == llama, f"{_id(a)}: gated={a.gated}, a Llama checkpoint: {llama}"


def test_99_and_999_variants_share_their_sources():
    pairs = [(b.name, b.name + ".9") for b in runnable() if b.name.endswith("-99") and b.name + ".9" in BENCHMARKS]
    assert pairs, "no -99/-99.9 pair found"
    for low, high in pairs:
        for kind in KINDS:
            x, y = asset(low, kind), asset(high, kind)
            if x is None or y is None:
                assert x is y is None, f"{low}/{high} {kind}: one variant has a source, the other none"
                continue
            assert (x.files, x.hub, x.document, x.run_path) == (y.files, y.hub, y.document, y.run_path), (
                f"{low}/{high} {kind}: the variants' sources differ"
            )


def test_installed_name_of_each_unpack_kind():
    assert AssetFile("a.pkl.gz", "https://h/a.pkl.gz", unpack="gz").installed_name == "a.pkl"
    assert AssetFile("a.json", "https://h/a.json").installed_name == "a.json"
    assert AssetFile("m.tar.gz", "https://h/m.tar.gz", unpack="tar.gz").installed_name is None
    assert Path(AssetFile("b.gz", "https://h/b.gz", unpack="gz").installed_name or "").name == "b"


def test_docs_list_every_source():
    """docs/assets.md is the people's copy of ASSETS: every checksum, Hub repository and data set file is in it."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "assets.md").read_text(encoding="utf-8")
    wanted = {f.md5 or f.sha256 for _, f in _files() if f.md5 or f.sha256}
    wanted |= {a.hub.repo_id for a in ASSETS if a.hub} | {a.run_path for a in ASSETS if a.kind == "dataset"}
    absent = sorted(w for w in wanted if w not in text)
    assert not absent, f"docs/assets.md does not list {absent}"
