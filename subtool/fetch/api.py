"""`subtool fetch`: a benchmark's official checkpoint and data set, downloaded (or brought in with `--from`),
verified, and installed where `subtool run` finds them.

Three entry points, one per CLI form: `plan()` (--plan: every URL, size, checksum), `fetch()` (download) and
`install_from()` (--from DIR: files copied in by hand). Each takes the benchmark's assets from the catalogue
(subtool/mlperf/assets.py), or the `assets` given (tests, other catalogues). Exit codes: 2 for bad input (an
unknown benchmark, a corrupt or missing file under --from, a gated repository without HF_TOKEN), 3 for the network
(unreachable, HTTP errors, a download whose checksum is wrong, the Hub refusing the token).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from subtool.errors import EXIT_USAGE, SubtoolError, os_error
from subtool.fetch import http, store
from subtool.fetch.install import (
    Verified,
    accept,
    already_verified,
    check_asset_folder,
    check_staging,
    install,
    install_twin,
    intact,
    staging_dir,
    twin,
)
from subtool.fetch.names import check_base_url
from subtool.fetch.plan import (
    PLAN_NAME,
    Source,
    file_source,
    identity,
    plan_asset,
    plan_dict,
    read_plan,
)
from subtool.fsutil import cache_root, exclusive, remove_dirs, wrong_kind
from subtool.mlperf import assets as catalogue
from subtool.mlperf.assets import KINDS, Asset
from subtool.mlperf.round import INTERACTIVE_CONF_SUFFIX

MIRROR_ENV = "SUBTOOL_FETCH_MIRROR"
Say = Callable[[str], None]


@dataclass
class Outcome:
    benchmark: str
    kind: str
    status: str  # "installed" | "already installed"
    installed: store.Installed
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        i = self.installed
        return {
            "benchmark": self.benchmark,
            "kind": self.kind,
            "status": self.status,
            "folder": str(i.root),
            "run_path": str(i.run_path),
            "revision": i.revision,
            "files": [f.__dict__ for f in i.files],
            "notes": self.notes,
        }


@dataclass
class FetchResult:
    benchmark: str
    root: Path  # the cache root it installed under
    in_cache: bool  # False with --to: run finds it with --assets <root> (or SUBTOOL_CACHE=<root>)
    outcomes: list[Outcome]

    def to_dict(self) -> dict:
        return {
            "benchmark": self.benchmark,
            "root": str(self.root),
            "in_cache": self.in_cache,
            "assets": [o.to_dict() for o in self.outcomes],
        }


def fetchable(assets: tuple[Asset, ...] | None = None) -> list[str]:
    return sorted({a.benchmark for a in (catalogue.ASSETS if assets is None else assets)})


def select(benchmark: str, kinds: tuple[str, ...] = KINDS, assets: tuple[Asset, ...] | None = None) -> list[Asset]:
    """The assets of `benchmark` of the kinds asked, model first; one line listing what can be fetched if none."""
    pool = catalogue.ASSETS if assets is None else assets
    # an interactive benchmark (v5.0's llama2-70b-interactive-99, a round's llama3.1-8b-interactive) runs the same
    # checkpoint on the same data set as its plain one: subtool runs it as that model's Interactive scenario
    plain = benchmark.replace(INTERACTIVE_CONF_SUFFIX, "")
    mine = sorted((a for a in pool if a.benchmark in (benchmark, plain)), key=lambda a: KINDS.index(a.kind))
    if not mine:
        can = ", ".join(fetchable(pool)) or "none yet"
        raise SubtoolError(f"subtool cannot fetch {benchmark!r}; it can fetch: {can}", rule="fetch.unknown_model")
    chosen = [a for a in mine if a.kind in kinds]
    if not chosen:
        why = next(filter(None, (catalogue.not_served(benchmark, k) for k in kinds)), None)
        if why is not None:
            raise SubtoolError(f"{benchmark}: {why}", rule="fetch.not_served")
        raise SubtoolError(f"{benchmark} has no {' or '.join(kinds)} to fetch", rule="fetch.unknown_model")
    return chosen


def _mirror(mirror: str | None) -> str | None:
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    if mirror:
        check_base_url(mirror, what="the mirror", rule="fetch.mirror")
    return mirror


def plan(
    benchmark: str,
    *,
    kinds: tuple[str, ...] = KINDS,
    mirror: str | None = None,
    assets: tuple[Asset, ...] | None = None,
) -> dict:
    """Every file to download: URL, size, checksum, where it goes for --from. Needs no network except the Hub's
    listing; without the Hub the plan says which repository, revision, patterns and token."""
    chosen = select(benchmark, kinds, assets)
    mirror = _mirror(mirror)
    return plan_dict(benchmark, [plan_asset(a, mirror, need_hub=False) for a in chosen])


def fetch(
    benchmark: str,
    *,
    kinds: tuple[str, ...] = KINDS,
    to: Path | None = None,
    mirror: str | None = None,
    assets: tuple[Asset, ...] | None = None,
    say: Say = lambda line: None,
    progress: bool = False,
    settings: http.Settings | None = None,
    verify: bool = False,
) -> FetchResult:
    """Download and install what is not installed and intact (`verify`: every installed file hashed again)."""
    chosen = select(benchmark, kinds, assets)
    mirror = _mirror(mirror)
    root = Path(to) if to is not None else cache_root()
    bar = http.Progress(progress)
    outcomes = []
    for asset in chosen:
        outcome = _already(asset, root, say, verify)
        if outcome is None:
            with _one_writer(root, asset):
                outcome = _download_asset(asset, root, mirror, bar, say, settings or http.Settings())
        outcomes.append(outcome)
    return FetchResult(benchmark, root, to is None, outcomes)


@contextlib.contextmanager
def _one_writer(root: Path, asset: Asset) -> Iterator[None]:
    """One fetch at a time per benchmark and cache: a second one stops with one line (the first one's staging
    files are its own)."""
    staging = staging_dir(root, asset.benchmark, asset.kind)
    check_staging(root, staging)  # before the lock file is made in it
    check_asset_folder(store.asset_dir(asset.benchmark, asset.kind, root))
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive(staging.parent, tidy=True))
        except SubtoolError as err:
            if err.rule != "out.locked":
                raise
            raise SubtoolError(
                f"another subtool fetch is installing {asset.benchmark} here",
                path=store.asset_dir(asset.benchmark, asset.kind, root),
                rule="fetch.locked",
                hint="let it finish, then run the same command again",
            ) from None
        # before the lock goes, the staging folders that hold nothing (a part with bytes stays, for a resume)
        stack.callback(remove_dirs, [staging, *(staging / name for name in ("parts", "files", "tree"))])
        yield


def _already(asset: Asset, root: Path, say: Say, verify: bool = False) -> Outcome | None:
    """Installed and intact: nothing to do. The same source installed for a twin benchmark (the -99 and -99.9
    variants share files): linked in, nothing downloaded. Intact means every file hashed again with `verify`,
    else unchanged since the install (size, mtime, inode) or hashed again when not."""
    changed: list[str] = []
    found = intact(asset, root, identity(asset), verify=verify, changed=changed)
    for name in changed:  # said before the new download, which may fail: the user learns it either way
        say(f"{asset.benchmark} {asset.kind}: {name} is not the file installed (its sha256 changed): fetching it again")
    if found is not None:
        how = "every file hashed again" if verify else "sizes and times as installed; --verify hashes every file"
        say(f"{asset.benchmark} {asset.kind}: already installed and intact in {found.root} ({how}); nothing downloaded")
        return Outcome(asset.benchmark, asset.kind, "already installed", found)
    other = twin(asset, root, identity(asset), verify=verify)
    if other is None:
        return None
    with _one_writer(root, asset):
        done = install_twin(asset, other, root, identity(asset))
    how = "every file hashed again" if verify else "as installed there; --verify hashes them"
    say(f"{asset.benchmark} {asset.kind}: the same files as {other.benchmark}'s ({how}), linked into {done.root}")
    return Outcome(asset.benchmark, asset.kind, "installed", done, [f"linked from {other.root}"])


def _download_asset(asset: Asset, root: Path, mirror: str | None, bar, say: Say, settings: http.Settings) -> Outcome:
    from subtool.fetch import hub

    if asset.hub is not None:
        hub.require_token(asset.hub)
    p = plan_asset(asset, mirror, need_hub=True)
    staging = staging_dir(root, asset.benchmark, asset.kind)
    hub_settings = replace(settings, headers={**settings.headers, **hub.auth_headers()})
    verified, notes = [], []
    for src in p.sources:
        v = _download(asset, src, staging, hub_settings if src.origin == "hub" else settings, bar, say)
        if src.origin == "first-download":
            notes.append(f"{src.name}: no official checksum; sha256 {v.digests.sha256} recorded from this download")
            say(f"{asset.benchmark}/{asset.kind}/{notes[-1]}")
        verified.append(v)
    done = install(asset, verified, root, commit=p.commit, identity=identity(asset))
    say(f"{asset.benchmark} {asset.kind}: installed {len(done.files)} files in {done.root}")
    return Outcome(asset.benchmark, asset.kind, "installed", done, notes)


def _download(asset: Asset, src: Source, staging: Path, settings: http.Settings, bar, say: Say) -> Verified:
    """One file downloaded and verified. A file that was resumed (bytes kept from an earlier run, or a connection
    dropped mid-body) and does not verify is downloaded once more from its first byte before it is refused: the
    kept bytes may be another version's or damaged, which a download from the start does not repeat."""
    files = staging / "files"
    v = already_verified(src, files)
    if v is not None:
        return v
    label = f"{asset.benchmark}/{asset.kind}/{src.name}"
    part = staging / "parts" / f"{src.name}.part"
    resumed = _to_part(asset, src, part, settings, bar)
    try:
        return accept(src, part, files, label=label)
    except SubtoolError as err:
        if not resumed or err.rule not in ("fetch.checksum", "fetch.size"):
            raise
        say(f"{label}: the resumed download does not verify ({err.rule}): downloading it again from its first byte")
    _to_part(asset, src, part, settings, bar)  # accept removed the part: this one starts at byte 0
    return accept(src, part, files, label=label)


def _to_part(asset: Asset, src: Source, part: Path, settings: http.Settings, bar) -> bool:
    """Download `src` into `part`; True when some of its bytes were resumed rather than read from byte 0."""
    had, starts = (part.stat().st_size if part.exists() else 0), []
    try:
        with bar.file(src.name, src.size) as (advance, restart):

            def on_restart(have: int) -> None:
                starts.append(have)
                restart(have)

            http.fetch_to_part(src.url, part, size=src.size, settings=settings, on_bytes=advance, on_restart=on_restart)
    except http.RemoteError as err:
        if src.origin == "hub" and err.status in (401, 403) and asset.hub is not None:
            from subtool.fetch.hub import refused

            raise refused(asset.hub, err.status) from None
        raise
    return any(starts) if starts else had > 0  # no request at all: the part was whole already


# ------------------------------------------------------------------------------------------------ --from DIR
def install_from(
    benchmark: str,
    source_dir: Path,
    *,
    kinds: tuple[str, ...] = KINDS,
    to: Path | None = None,
    assets: tuple[Asset, ...] | None = None,
    say: Say = lambda line: None,
    verify: bool = False,
) -> FetchResult:
    """Verify the files copied by hand into `<source_dir>/<benchmark>/<kind>/<name>` and install them. A missing
    or corrupt file is refused by name (exit 2); nothing is installed for that asset then."""
    chosen = select(benchmark, kinds, assets)
    if not Path(source_dir).is_dir():
        raise SubtoolError(
            f"--from {wrong_kind(source_dir)}: it takes a folder", path=source_dir, rule="fetch.from_dir"
        )
    root = Path(to) if to is not None else cache_root()
    hub_plan = _read_hub_plan(Path(source_dir) / benchmark / PLAN_NAME)
    outcomes = []
    for asset in chosen:
        outcome = _already(asset, root, say, verify)
        if outcome is None:
            with _one_writer(root, asset):
                outcome = _from_asset(asset, Path(source_dir), root, hub_plan, say)
        outcomes.append(outcome)
    return FetchResult(benchmark, root, to is None, outcomes)


def _read_hub_plan(path: Path) -> dict | None:
    from subtool.mlperf.logs import describe_os_error, read_file

    try:
        data = read_file(path, 32 << 20, follow_links=True)  # a regular file: a FIFO there would block forever
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SubtoolError(f"cannot read the plan: {describe_os_error(exc)}", path=path, rule="fetch.plan") from None
    found = read_plan(data)
    if found is None:
        raise SubtoolError("not a plan written by `subtool fetch --plan --json`", path=path, rule="fetch.plan")
    return found


def _from_sources(asset: Asset, source_dir: Path, hub_plan: dict | None) -> tuple[list[Source], str | None]:
    sources = [file_source(f, None) for f in asset.files]
    if asset.hub is None:
        return sources, None
    listed = (hub_plan or {}).get((asset.benchmark, asset.kind))
    if listed is None:
        plan_path = source_dir / asset.benchmark / PLAN_NAME
        raise SubtoolError(
            f"the Hub's checksums of {asset.hub.repo_id} are needed: save the plan there "
            f"(`subtool fetch {asset.benchmark} --plan --json {plan_path}` on a machine that reaches the Hub)",
            path=plan_path,
            rule="fetch.plan",
        )
    hub = asset.hub
    stray = [s.name for s in listed.sources if not any(fnmatch.fnmatchcase(s.name, p) for p in hub.patterns)]
    if (listed.repo_id, listed.revision) != (hub.repo_id, hub.revision) or stray:
        raise SubtoolError(
            f"the plan lists {listed.repo_id}@{listed.revision}"
            + (f" with {stray[0]}" if stray else "")
            + f"; the catalogue wants {hub.repo_id}@{hub.revision} files {', '.join(hub.patterns)}"
            + ": make the plan again",
            path=source_dir / asset.benchmark / PLAN_NAME,
            rule="fetch.plan",
        )
    if not listed.sources:
        raise SubtoolError(
            f"the plan lists no file of {hub.repo_id}: an empty checkpoint is no checkpoint; make the plan again",
            path=source_dir / asset.benchmark / PLAN_NAME,
            rule="fetch.plan",
        )
    return sources + list(listed.sources), listed.commit


def _from_asset(asset: Asset, source_dir: Path, root: Path, hub_plan: dict | None, say: Say) -> Outcome:
    import shutil

    sources, commit = _from_sources(asset, source_dir, hub_plan)
    staging = staging_dir(root, asset.benchmark, asset.kind)
    verified, notes = [], []
    for src in sources:
        given = source_dir / asset.benchmark / asset.kind / src.name
        if not given.is_file():
            raise SubtoolError("missing (the plan puts it there)", path=given, rule="fetch.from_missing")
        if src.size is not None and given.stat().st_size != src.size:  # before gigabytes are copied for nothing
            raise SubtoolError(f"{given.stat().st_size} bytes, the plan says {src.size}", path=given, rule="fetch.size")
        part = staging / "parts" / f"{src.name}.part"
        part.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(given, part)
        except OSError as exc:  # a full disk: the destination is named, and the partial copy does not stay
            part.unlink(missing_ok=True)
            raise os_error(exc, action=f"cannot copy {given} into the staging folder", path=part) from None
        v = accept(src, part, staging / "files", label=str(given), exit_code=EXIT_USAGE)
        if src.origin == "first-download":
            notes.append(f"{src.name}: no official checksum; sha256 {v.digests.sha256} recorded from this copy")
            say(f"{asset.benchmark}/{asset.kind}/{notes[-1]}")
        verified.append(v)
    done = install(asset, verified, root, commit=commit, identity=identity(asset))
    say(f"{asset.benchmark} {asset.kind}: verified and installed {len(done.files)} files in {done.root}")
    return Outcome(asset.benchmark, asset.kind, "installed", done, notes)
