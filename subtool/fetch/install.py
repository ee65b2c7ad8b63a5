"""From verified bytes to an installed asset: staging, verification, the one rename, the manifest last.

Every file is downloaded (or copied, for `--from`) into `<root>/assets/.staging/<benchmark>/<kind>/`, never into
the folder `run` reads. A file is moved from `parts/` to `files/` only once it verified; archives unpack into
`tree/`. The asset folder is then built beside the installed one (of hard links to the staged files, which
stay in staging until it is in place) and replaces it in one rename (fsutil.staged_directory), with
MANIFEST.json written last inside it: an interrupted fetch leaves the old copy (or nothing), never a mix, and
keeps what it verified.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from subtool.errors import EXIT_REMOTE, SubtoolError, os_error
from subtool.fetch import store
from subtool.fetch.http import Digests, digests, git_blob_sha1
from subtool.fetch.names import clash
from subtool.fetch.plan import Source, safe_name
from subtool.fetch.plan import identity as identity_of
from subtool.fetch.unpack import unpack
from subtool.fsutil import staged_directory
from subtool.mlperf.assets import ASSETS, Asset
from subtool.mlperf.assets import asset as catalogue_asset


def staging_dir(root: Path, benchmark: str, kind: str) -> Path:
    return root / "assets" / ".staging" / benchmark / kind


def check_staging(root: Path, staging: Path) -> None:
    """Refuse a staging folder another user could have prepared: subtool makes no link there, so a symbolic
    link at or below `<root>/assets/.staging` (which writes would follow to someone's files), or a folder there
    that is not the user's, is a finding (one line, naming it) before anything is written or locked."""
    top = root / "assets" / ".staging"
    rel = staging.relative_to(top).parts
    for here in [top, *(top.joinpath(*rel[: i + 1]) for i in range(len(rel)))]:
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            return  # nothing below a folder that is not there yet
        except OSError as exc:
            raise os_error(exc, action="cannot read the fetch's staging folder", path=here) from None
        _refuse_planted(here, st)
    for folder, dirs, files in os.walk(staging):  # what an earlier fetch left: parts, verified files
        for name in dirs + files:
            path = Path(folder) / name
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                _refuse_planted(path, st)


def check_asset_folder(folder: Path) -> None:
    """The folder an install replaces is a folder or not there. A symbolic link there (a checkpoint moved to
    another disk and linked back) was replaced by a folder on the cache's disk, the link left beside it as
    `.<kind>.old-<pid>` for good; a dangling one or a file failed the last rename after every download. One
    line now, before anything is downloaded; the link's target is left as it is."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise os_error(exc, action="cannot read the asset folder", path=folder) from None
    if stat.S_ISDIR(st.st_mode):
        return
    what = f"a symbolic link (to {os.readlink(folder)})" if stat.S_ISLNK(st.st_mode) else "not a folder"
    raise SubtoolError(
        f"is {what}: fetch installs a folder of its own there",
        path=folder,
        rule="fetch.store",
        hint="remove it (a link's target is not touched), or install on another disk with --to DIR",
    )


def _refuse_planted(path: Path, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise SubtoolError(
            f"is a symbolic link (to {os.readlink(path)}) in fetch's staging folder, where subtool makes none",
            path=path,
            rule="fetch.staging",
            hint="someone else may have put it there: remove it (and check the folder's permissions), then run again",
        )
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise SubtoolError(
            f"belongs to another user (uid {st.st_uid}): fetch's staging folder must be yours alone",
            path=path,
            rule="fetch.staging",
            hint="fetch into a cache of your own (--to DIR or SUBTOOL_CACHE)",
        )


@dataclass(frozen=True)
class Verified:
    source: Source
    path: Path  # in staging
    digests: Digests


def check(src: Source, path: Path, *, label: str, exit_code: int = EXIT_REMOTE) -> Digests:
    """`path` against what `src` promises: size, then sha256 (or md5, or the Hub's git blob id). A source with
    no checksum at all must say so (`first-download`); otherwise it is refused, never passed silently."""
    d = digests(path, md5=bool(src.md5 and not src.sha256))
    if src.size is not None and d.size != src.size:
        raise SubtoolError(
            f"{d.size} bytes, the source says {src.size}",
            path=label,
            rule="fetch.size",
            hint=_page_hint(path),
            exit_code=exit_code,
        )
    expected, got, what = _checksum(src, d, path)
    if expected is None:
        if src.origin != "first-download":
            raise SubtoolError(
                f"the {src.origin} source gives no checksum", path=label, rule="fetch.no_checksum", exit_code=2
            )
        return d
    if got != expected:
        raise SubtoolError(
            f"{what} {got} is not the {src.origin} {expected}",
            path=label,
            rule="fetch.checksum",
            hint=_page_hint(path),
            exit_code=exit_code,
        )
    return d


_PAGE_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body")


def _page_hint(path: Path) -> str | None:
    """For a file that does not verify and starts like an HTML page: what a proxy's login page, a cluster's
    captive portal or a server's error page sends (with HTTP 200) in place of the file. None otherwise."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024).lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    except OSError:
        return None
    if not head.startswith(_PAGE_STARTS):
        return None
    return (
        "its bytes are an HTML page, not the file: a proxy's or portal's login page, or a server's error page, "
        "answered in its place (open the URL in a browser on that machine, or set https_proxy)"
    )


def _checksum(src: Source, d: Digests, path: Path) -> tuple[str | None, str | None, str]:
    if src.sha256:
        return src.sha256.lower(), d.sha256, "sha256"
    if src.md5:
        return src.md5.lower(), d.md5, "md5"
    if src.blob_id:
        return src.blob_id.lower(), git_blob_sha1(path), "git blob id"
    return None, None, ""


def accept(src: Source, part: Path, files: Path, *, label: str, exit_code: int = EXIT_REMOTE) -> Verified:
    """Verify a downloaded part; a bad one is removed (the next try starts clean) and refused by name."""
    try:
        d = check(src, part, label=label, exit_code=exit_code)
    except SubtoolError:
        part.unlink(missing_ok=True)
        raise
    target = files / src.name
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, target)
    return Verified(src, target, d)


def already_verified(src: Source, files: Path) -> Verified | None:
    """A file a previous, interrupted fetch verified and left in staging."""
    path = files / src.name
    try:
        if not path.is_file():
            return None
    except OSError as exc:
        raise os_error(exc, action="cannot read the fetch's staging folder", path=path) from None
    try:
        return Verified(src, path, check(src, path, label=src.name))
    except SubtoolError:
        path.unlink(missing_ok=True)
        return None


def _entry(rel: str, path: Path, origin: str, d: Digests | None = None) -> store.InstalledFile:
    d = d or digests(path)
    return store.InstalledFile(rel, d.size, d.sha256, origin)


def _stamped(f: store.InstalledFile, path: Path) -> store.InstalledFile:
    """`f` with the size, mtime_ns and inode of `path`, where it now lies (a rename of its folder keeps them)."""
    from dataclasses import replace

    st = path.stat()
    return replace(f, size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino)


def _unpacked(v: Verified, tree: Path) -> list[tuple[str, Path, str]]:
    dest = tree / v.source.name
    shutil.rmtree(dest, ignore_errors=True)
    made = unpack(v.path, v.source.unpack or "", dest, name=v.source.name)
    return [(p.as_posix(), dest / p, v.source.origin) for p in made]


def install(
    asset: Asset, verified: list[Verified], root: Path, *, commit: str | None, identity: dict
) -> store.Installed:
    """Move the verified files (archives unpacked) into the asset folder under `root`; manifest last."""
    staging = staging_dir(root, asset.benchmark, asset.kind)
    layout: list[tuple[str, Path, str]] = []
    known: dict[Path, Digests] = {}
    for v in verified:
        if v.source.unpack:
            layout += _unpacked(v, staging / "tree")
        else:
            layout.append((v.source.name, v.path, v.source.origin))
            known[v.path] = v.digests
    _refuse_clashes(asset, layout)
    final = store.asset_dir(asset.benchmark, asset.kind, root)
    when = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    with staged_directory(final) as tmp:
        entries = []
        for rel, path, origin in layout:
            entry = _entry(rel, path, origin, known.get(path))
            _place(path, tmp / rel)
            entries.append(_stamped(entry, tmp / rel))
        if not (tmp / asset.run_path).exists():
            raise SubtoolError(
                f"the installed files have no {asset.run_path!r} (the catalogue's run_path)",
                path=f"{asset.benchmark}/{asset.kind}",
                rule="fetch.run_path",
            )
        record = store.Installed(
            asset.benchmark, asset.kind, tmp, tmp / asset.run_path, asset.document, commit, when, tuple(entries)
        )
        store.write_manifest(record, source=identity)
    shutil.rmtree(staging, ignore_errors=True)
    return store.Installed(
        asset.benchmark, asset.kind, final, final / asset.run_path, asset.document, commit, when, tuple(entries)
    )


def _place(path: Path, target: Path) -> None:
    """`path` (verified, in staging) at `target` in the new asset folder, as a hard link: a failure before that
    folder is in place (Ctrl-C while an archive's files are hashed, a full disk, the final rename refused) then
    removes only the link, and the next run finds the file verified in staging instead of downloading it again.
    Moved where the file system makes no hard link."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(path, target)
    except OSError:
        os.replace(path, target)


def _refuse_clashes(asset: Asset, layout: list[tuple[str, Path, str]]) -> None:
    names = [rel for rel, _, _ in layout]
    bad = next((rel for rel in names if not safe_name(rel)), None) or clash([store.MANIFEST, *names])
    if bad is not None:
        raise SubtoolError(
            f"two files, a file and a folder, or a file and the manifest would be {bad!r}",
            path=f"{asset.benchmark}/{asset.kind}",
            rule="fetch.layout",
        )


def intact(
    asset: Asset, root: Path, identity: dict, *, verify: bool = False, changed: list[str] | None = None
) -> store.Installed | None:
    """The installed copy when it came from the same source and every file still has its recorded sha256.

    A file whose size, mtime_ns and inode are still those recorded at install is trusted without reading it;
    one that differs (or an older manifest without them) is hashed. `verify` hashes every file regardless (a
    byte changed in place with its time set back is found only then). The names of the files whose sha256 is
    no longer the recorded one are added to `changed`."""
    found = store.installed(asset.benchmark, asset.kind, cache=root)
    if found is None:
        return None
    record = store.read_manifest(found.root) or {}
    if record.get("source") != identity:
        return None
    bad = []
    try:
        for f in found.files:
            path = found.root / f.name
            if (verify or not f.unchanged(path)) and digests(path).sha256 != f.sha256:
                bad.append(f.name)
                if changed is None:
                    break
    except OSError as exc:
        if (err := store.unreadable(exc, found.root)) is not None:
            raise err from None
        return None
    if changed is not None:
        changed.extend(bad)
    return None if bad else found


def twin(asset: Asset, root: Path, identity: dict, *, verify: bool = False) -> store.Installed | None:
    """An intact install of the same source under another benchmark name (bert-99 and bert-99.9 share their
    checkpoint and data set): it can be linked in instead of downloaded again. Only the catalogue's twins of
    `asset` count, and only one this user owns, folder, manifest and files: in a shared cache another user's
    folder with a manifest naming the right source is a claim, and a hard link to their file would let them
    change the installed copy later."""
    from dataclasses import replace

    for name in _catalogue_twins(asset):
        try:
            found = intact(replace(asset, benchmark=name), root, identity, verify=verify)
        except SubtoolError:
            continue  # another benchmark's copy that cannot be read: download this one instead
        if found is not None and _owned_by_this_user(found):
            return found
    return None


def _catalogue_twins(asset: Asset) -> list[str]:
    """The benchmarks whose catalogue entry of `asset`'s kind has the same source as its own (bert-99.9 for
    bert-99): never an arbitrary folder someone made beside them."""
    own = catalogue_asset(asset.benchmark, asset.kind)
    if own is None:
        return []
    return sorted(
        a.benchmark
        for a in ASSETS
        if a.kind == asset.kind and a.benchmark != asset.benchmark and identity_of(a) == identity_of(own)
    )


def _owned_by_this_user(found: store.Installed) -> bool:
    paths = [found.root, found.root / store.MANIFEST, *(found.root / f.name for f in found.files)]
    try:
        return all(os.lstat(path).st_uid == os.getuid() for path in paths)
    except OSError:
        return False


def install_twin(asset: Asset, found: store.Installed, root: Path, identity: dict) -> store.Installed:
    """Install `found`'s verified files for `asset`: hard links where the file system allows (installed files
    are never written in place, only replaced), else copies; manifest last, as for a download."""
    final = store.asset_dir(asset.benchmark, asset.kind, root)
    when = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    with staged_directory(final) as tmp:
        files = []
        for f in found.files:
            (tmp / f.name).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(found.root / f.name, tmp / f.name)
            except OSError:
                shutil.copy2(found.root / f.name, tmp / f.name)
            files.append(_stamped(f, tmp / f.name))
        record = store.Installed(
            asset.benchmark, asset.kind, tmp, tmp / asset.run_path, asset.document, found.revision, when, tuple(files)
        )
        store.write_manifest(record, source=identity)
    return store.Installed(
        asset.benchmark, asset.kind, final, final / asset.run_path, asset.document, found.revision, when, tuple(files)
    )
