"""Where the official checkpoints and data sets come from: one `Asset` per (benchmark, kind), each with the files
`subtool fetch` downloads, their sizes and checksums, and the document they were read from.

The entries are data, read from the reference implementations and MLCommons' documentation (each names its
`document`). A checksum is never guessed: a file without an official one has `checksum_origin="first-download"`,
and `subtool fetch` records the digest of the first verified download and says so. Files of a Hugging Face
repository (`hub`) take their checksums from the Hub's own metadata at a pinned revision.

`subtool/fetch/` downloads, verifies and installs them; `subtool run` finds what it installed.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("model", "dataset")
CHECKSUM_ORIGINS = ("official", "hub", "first-download")


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
    unpack: str | None = None  # "tar.gz" | "zip": an archive whose members become the asset's files


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


ASSETS: tuple[Asset, ...] = ()  # filled by the catalogue entries (one per benchmark subtool runs, per kind)


def assets_for(benchmark: str) -> tuple[Asset, ...]:
    """The assets of one benchmark (model first, then data set); () for one subtool cannot fetch."""
    return tuple(sorted((a for a in ASSETS if a.benchmark == benchmark), key=lambda a: KINDS.index(a.kind)))


def asset(benchmark: str, kind: str) -> Asset | None:
    return next((a for a in ASSETS if a.benchmark == benchmark and a.kind == kind), None)
