"""Files installed into a cache as `subtool fetch` installs them: copied into the asset's folder, then the real
store's MANIFEST.json written last (subtool/fetch/store.py). Tests use the demo generator's checkpoint and SQuAD
file (real formats) as the "official" files."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from subtool.fetch.store import Installed, InstalledFile, asset_dir, write_manifest

DOCUMENT = "https://example.org/reference/README.md"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def install_as_fetched(
    cache: Path, benchmark: str, kind: str, src: Path, *, origin: str = "official", revision: str | None = None
) -> Installed:
    """`src` (a checkpoint folder or a data set file) installed as `benchmark`'s fetched `kind` in `cache`."""
    root = asset_dir(benchmark, kind, cache)
    root.mkdir(parents=True)
    if Path(src).is_dir():
        shutil.copytree(src, root, dirs_exist_ok=True)
        run_path = root
    else:
        run_path = root / Path(src).name
        shutil.copyfile(src, run_path)
    files = tuple(
        InstalledFile(str(p.relative_to(root)), p.stat().st_size, sha256(p), origin)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    )
    asset = Installed(benchmark, kind, root, run_path, DOCUMENT, revision, "2026-12-02T00:00:00Z", files)
    write_manifest(asset)
    return asset
