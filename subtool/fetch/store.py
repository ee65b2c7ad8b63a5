"""Where fetched assets live and how `subtool run` finds them.

One folder per (benchmark, kind): `<cache_root()>/assets/<benchmark>/<kind>/`, holding the asset's files and, written
last and atomically, `MANIFEST.json`: what was installed, with every file's size and sha256. A folder without a
manifest (an interrupted fetch) or whose manifest does not read is not installed; nothing else is trusted.

MANIFEST.json: {"format": 1, "benchmark", "kind", "run_path", "document", "revision": str|null,
"installed_at": ISO time, "files": [{"name", "size", "sha256", "origin", "mtime_ns", "inode"}], "source": {...}}.
`mtime_ns` and `inode` (optional: older manifests lack them) are the file's as installed: a later lookup trusts a
file whose size, mtime_ns and inode are still those instead of hashing it again (a 140 GB checkpoint costs minutes);
`subtool fetch --verify` hashes every file regardless. `origin` is the
checksum's: "official" (the document's), "hub" (the Hub's metadata at `revision`) or "first-download" (no official
one: recorded here). `source` (optional, fetch's own) is what the asset was installed from: the catalogue's files
(url, size, checksums) and Hub repository, so that a later fetch tells a copy of the same source from an older one.
"""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass
from pathlib import Path

from subtool.errors import SubtoolError, os_error
from subtool.fsutil import atomic_write_json, cache_root

MANIFEST = "MANIFEST.json"
FORMAT = 1
_MAX_MANIFEST = 4 << 20  # a manifest lists a checkpoint's shards: a few kB


@dataclass(frozen=True)
class InstalledFile:
    name: str
    size: int
    sha256: str
    origin: str
    mtime_ns: int | None = None  # as installed; None: not recorded (an older manifest), always hashed
    inode: int | None = None

    def unchanged(self, path: Path) -> bool:
        """`path` still has the size, mtime_ns and inode recorded at install (False when none were recorded)."""
        if self.mtime_ns is None or self.inode is None:
            return False
        st = path.stat()
        return (st.st_size, st.st_mtime_ns, st.st_ino) == (self.size, self.mtime_ns, self.inode)


@dataclass(frozen=True)
class Installed:
    benchmark: str
    kind: str
    root: Path  # the asset's folder
    run_path: Path  # what run passes as --model-path / --dataset-path
    document: str
    revision: str | None
    installed_at: str
    files: tuple[InstalledFile, ...]


def asset_dir(benchmark: str, kind: str, cache: Path | None = None) -> Path:
    return (cache or cache_root()) / "assets" / benchmark / kind


def write_manifest(installed: Installed, source: dict | None = None) -> Path:
    """The last step of an install: after it, `installed()` finds the asset."""
    record = {
        "format": FORMAT,
        "benchmark": installed.benchmark,
        "kind": installed.kind,
        "run_path": str(installed.run_path.relative_to(installed.root)),
        "document": installed.document,
        "revision": installed.revision,
        "installed_at": installed.installed_at,
        "files": [f.__dict__ for f in installed.files],
    }
    if source is not None:
        record["source"] = source
    return atomic_write_json(installed.root / MANIFEST, record)


# an asset folder that cannot be read for one of these reasons is an error naming it, never "not installed": a run
# would fall back to the demo and a fetch would download 140 GB again over a copy that is only unreadable
_UNREADABLE = (errno.EACCES, errno.EPERM, errno.EIO)


def unreadable(exc: OSError, path: Path) -> SubtoolError | None:
    """The one-line error for a cache entry that is there but cannot be read; None for one that is not there."""
    if isinstance(exc, SubtoolError):
        return exc
    if exc.errno in _UNREADABLE:
        err = os_error(exc, action="cannot read the fetched files", path=exc.filename or path)
        err.hint = "fix the permissions of the fetch cache, or set SUBTOOL_CACHE to one you can read"
        return err
    return None


def read_manifest(root: Path) -> dict | None:
    """The manifest of the asset folder `root` as a dict of format 1, or None. Never raises on its bytes; a
    manifest or folder that is there but cannot be read is a SubtoolError naming it (io.eacces)."""
    try:
        with open(root / MANIFEST, "rb") as fh:
            data = fh.read(_MAX_MANIFEST + 1)
        record = json.loads(data) if len(data) <= _MAX_MANIFEST else None
    except OSError as exc:
        if (err := unreadable(exc, root / MANIFEST)) is not None:
            raise err from None
        return None
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None
    return record


def _file(entry: object) -> InstalledFile | None:
    if not isinstance(entry, dict):
        return None
    name, size, digest, origin = (entry.get(k) for k in ("name", "size", "sha256", "origin"))
    if not (isinstance(name, str) and isinstance(size, int) and isinstance(digest, str) and isinstance(origin, str)):
        return None
    mtime_ns, inode = entry.get("mtime_ns"), entry.get("inode")
    if not (_whole(mtime_ns) and _whole(inode)):
        mtime_ns = inode = None  # not recorded, or not numbers: the file is hashed on lookup
    return InstalledFile(name, size, digest, origin, mtime_ns, inode)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _files_in_place(root: Path, files: list[InstalledFile], run_path: str) -> bool:
    resolved = root.resolve()
    for f in files:
        path = (root / f.name).resolve()
        if not path.is_relative_to(resolved) or not path.is_file() or path.stat().st_size != f.size:
            return False
    target = (root / run_path).resolve()
    return target.is_relative_to(resolved) and target.exists()


def installed(benchmark: str, kind: str, *, cache: Path | None = None) -> Installed | None:
    """The asset as fetch installed it, or None (never installed, interrupted, or a manifest that does not read,
    names a file that is missing or has another size); reads no file but the manifest's list. A folder or file of
    it that is there but cannot be read (permissions) is one SubtoolError naming it (io.eacces); nothing else
    raises."""
    root = asset_dir(benchmark, kind, cache)
    record = read_manifest(root)
    if record is None:
        return None
    if record.get("benchmark") != benchmark or record.get("kind") != kind:
        return None
    files = [_file(e) for e in record.get("files") or []] if isinstance(record.get("files"), list) else [None]
    run_path = record.get("run_path")
    if not files or None in files or not isinstance(run_path, str):
        return None
    try:
        if not _files_in_place(root, files, run_path):
            return None
    except OSError as exc:
        if (err := unreadable(exc, root)) is not None:
            raise err from None
        return None  # a name too long, a loop of links
    except ValueError:  # a name with a NUL byte
        return None
    document, revision, when = record.get("document"), record.get("revision"), record.get("installed_at")
    return Installed(
        benchmark,
        kind,
        root,
        root / run_path,
        document if isinstance(document, str) else "",
        revision if isinstance(revision, str) else None,
        when if isinstance(when, str) else "",
        tuple(files),
    )
