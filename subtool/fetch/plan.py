"""What to download for an asset (its `Source`s), the plan `--plan` prints and `--json` writes, and its reader.

A plan lists every file with its URL, size and checksum and where it goes for `--from DIR`
(`<DIR>/<benchmark>/<kind>/<name>`), so that a machine with internet fetches them and a cluster without installs
them. A Hub asset's files are listed only where the Hub answers; otherwise the plan names the repository,
revision, patterns and the token needed. `read_plan` reads a plan back for `--from` and never raises.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from subtool.errors import EXIT_REMOTE, SubtoolError
from subtool.fetch.names import safe_name
from subtool.mlperf.assets import Asset, AssetFile

FORMAT = 1
PLAN_KIND = "subtool-fetch-plan"
PLAN_NAME = "plan.json"  # `--from DIR` reads <DIR>/<benchmark>/plan.json for the Hub's checksums
_MAX_PLAN = 16 << 20
_HEX = {key: re.compile(f"[0-9a-f]{{{n}}}") for key, n in (("sha256", 64), ("md5", 32), ("blob_id", 40))}


@dataclass(frozen=True)
class Source:
    """One file to download and verify (a catalogue file, or one file of a Hub repository)."""

    name: str  # path inside the asset folder (an archive: its name in staging)
    url: str  # where to download it (a --mirror applied)
    size: int | None
    sha256: str | None
    md5: str | None
    blob_id: str | None  # the Hub's git blob id (small files kept in git, not LFS)
    origin: str  # "official" | "hub" | "first-download" | "git-commit"
    unpack: str | None = None


@dataclass(frozen=True)
class AssetPlan:
    asset: Asset
    sources: tuple[Source, ...]
    commit: str | None = None  # the Hub commit the revision resolved to
    hub_problem: str | None = None  # why the Hub's files are not listed (the plan says so)


def mirror_url(url: str, mirror: str | None) -> str:
    """`url` on an internal mirror: <mirror>/<host><path>[?query]."""
    if not mirror:
        return url
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{mirror.rstrip('/')}/{parts.netloc}{parts.path}{query}"


def file_source(f: AssetFile, mirror: str | None) -> Source:
    return Source(f.name, mirror_url(f.url, mirror), f.size, f.sha256, f.md5, None, f.checksum_origin, f.unpack)


def identity(asset: Asset) -> dict:
    """What an install of `asset` came from (recorded in the manifest): an installed copy with the same identity
    and intact files is the same asset. A mirror does not change it."""
    files = [
        {"name": f.name, "url": f.url, "size": f.size, "sha256": f.sha256, "md5": f.md5, "unpack": f.unpack}
        for f in asset.files
    ]
    hub = asset.hub
    return {
        "files": files,
        "hub": {"repo_id": hub.repo_id, "revision": hub.revision, "patterns": list(hub.patterns)} if hub else None,
    }


def plan_asset(asset: Asset, mirror: str | None, *, need_hub: bool) -> AssetPlan:
    """The sources of `asset`. The Hub's files need the Hub: with `need_hub` a failure raises (fetch); without,
    the plan records why they are not listed (--plan on a machine that cannot reach the Hub)."""
    sources = [file_source(f, mirror) for f in asset.files]
    if asset.hub is None:
        return AssetPlan(asset, tuple(sources))
    from subtool.fetch import hub

    try:
        listing = hub.listing(asset.hub)
    except SubtoolError as err:
        if need_hub or err.exit_code != EXIT_REMOTE:
            raise
        return AssetPlan(asset, tuple(sources), None, err.one_line())
    for f in listing.files:
        sources.append(Source(f.name, f.url, f.size, f.sha256, None, f.blob_id, "hub"))
    return AssetPlan(asset, tuple(sources), listing.commit)


def _hub_dict(p: AssetPlan) -> dict | None:
    hub = p.asset.hub
    if hub is None:
        return None
    from subtool.fetch.hub import endpoint, license_page

    token = (
        f"HF_TOKEN, of an account that accepted the license on {license_page(hub)}"
        if hub.gated
        else "none (HF_TOKEN if your mirror asks for one)"
    )
    return {
        "repo_id": hub.repo_id,
        "revision": hub.revision,
        "commit": p.commit,
        "patterns": list(hub.patterns),
        "endpoint": endpoint(),
        "gated": hub.gated,
        "token": token,
        "listed": p.hub_problem is None,
        "problem": p.hub_problem,
    }


def plan_dict(benchmark: str, plans: list[AssetPlan]) -> dict:
    assets = []
    for p in plans:
        a = p.asset
        files = [{**asdict(s), "path": f"{a.benchmark}/{a.kind}/{s.name}"} for s in p.sources]
        assets.append(
            {
                "benchmark": a.benchmark,
                "kind": a.kind,
                "form": a.form,
                "document": a.document,
                "run_path": a.run_path,
                "files": files,
                "hub": _hub_dict(p),
            }
        )
    return {
        "format": FORMAT,
        "kind": PLAN_KIND,
        "benchmark": benchmark,
        "from_layout": f"<DIR>/{benchmark}/<kind>/<name>; this plan as <DIR>/{benchmark}/{PLAN_NAME}",
        "assets": assets,
    }


def _source(entry: object) -> Source | None:
    if not isinstance(entry, dict) or not safe_name(entry.get("name")) or not isinstance(entry.get("url"), str):
        return None
    size = entry.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        return None
    digests = {}
    for key, pattern in _HEX.items():
        value = entry.get(key)
        if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
            return None
        digests[key] = value
    if entry.get("origin") != "hub" or not (digests["sha256"] or digests["blob_id"]):
        return None
    return Source(entry["name"], entry["url"], size, digests["sha256"], None, digests["blob_id"], "hub")


@dataclass(frozen=True)
class HubPlan:
    """The Hub files a plan lists for one asset, with the repository and commit they were listed at."""

    repo_id: str
    revision: str
    commit: str
    sources: tuple[Source, ...]


def read_plan(data: bytes) -> dict[tuple[str, str], HubPlan] | None:
    """The Hub files a plan lists, per (benchmark, kind). None for bytes that are not a plan
    (any entry that does not read makes the whole plan unread: a half-trusted list is worse than none)."""
    try:
        record = json.loads(data) if len(data) <= _MAX_PLAN else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("kind") != PLAN_KIND:
        return None
    assets = record.get("assets")
    if not isinstance(assets, list):
        return None
    out = {}
    for a in assets:
        if not isinstance(a, dict):
            return None
        hub_record, files = a.get("hub"), a.get("files")
        if hub_record is None:
            continue  # a plain asset: --from verifies it against the catalogue, not the plan
        if not isinstance(hub_record, dict) or not isinstance(files, list):
            return None
        fields = [hub_record.get(k) for k in ("repo_id", "revision", "commit")] + [a.get("benchmark"), a.get("kind")]
        if not all(isinstance(v, str) for v in fields):
            continue  # the Hub was not listed when the plan was made
        sources = [_source(e) for e in files if isinstance(e, dict) and e.get("origin") == "hub"]
        if None in sources:
            return None
        repo_id, revision, commit, benchmark, kind = fields
        out[(benchmark, kind)] = HubPlan(repo_id, revision, commit, tuple(sources))
    return out
