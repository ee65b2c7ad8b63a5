"""Reading the fetch cache: a folder or file that cannot be read is one line naming it, never a traceback nor a
silent "not installed" (a run would take the demo, a fetch would download again); and an installed file is trusted
on its size, mtime and inode, hashed again only by `--verify` or when they changed."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fetch_standins import sha256

from subtool.fetch import api, store
from subtool.fetch.http import Settings
from subtool.mlperf.assets import Asset, AssetFile

FAST = Settings(retries=1, backoff=0.0, timeout=(5, 5))
DEV = os.urandom(50_000)
VOCAB = os.urandom(3_000)
REPO = Path(__file__).resolve().parents[2]


def squad(server) -> Asset:
    server.files["/squad/dev-v1.1.json"] = DEV
    server.files["/squad/vocab.txt"] = VOCAB
    files = (
        AssetFile("dev-v1.1.json", server.url("/squad/dev-v1.1.json"), len(DEV), sha256=sha256(DEV)),
        AssetFile("vocab.txt", server.url("/squad/vocab.txt"), len(VOCAB), sha256=sha256(VOCAB)),
    )
    return Asset("bert-99", "dataset", "SQuAD", "dev-v1.1.json", "https://example.org/doc", files)


def fetch(asset: Asset, **kw):
    return api.fetch(asset.benchmark, kinds=(asset.kind,), assets=(asset,), settings=FAST, **kw)


# ------------------------------------------------------------------------------------------- unreadable
# Run in a child without the right to bypass file permissions (root keeps it otherwise): for every folder and
# file of an installed cache in turn made unreadable (mode 000), what `installed()`, `fetch()` and `subtool run`
# do. Each prints one JSON line per path: {"path", "installed", "fetch", "run": [exit code, stderr]}.
PROBE = """\
import dataclasses, json, os, shutil, subprocess, sys
from pathlib import Path
from subtool.errors import SubtoolError
from subtool.fetch import api, store
from subtool.fetch.http import Settings
from subtool.mlperf.assets import Asset, AssetFile
base, work = Path(sys.argv[1]), Path(sys.argv[2])
x = json.loads(sys.argv[3])
asset = Asset(**{**x, "files": tuple(AssetFile(**f) for f in x["files"])})
def outcome(call):
    try:
        r = call()
    except SubtoolError as e:
        return ["error", str(e.path), e.rule, e.one_line()]
    except BaseException as e:
        return ["crash", type(e).__name__, str(e)]
    return ["ok", r is not None and getattr(r, "outcomes", [r])[0] is not None]
for rel in sorted(str(p.relative_to(base)) for p in base.rglob("*")):
    if os.path.exists(work):
        shutil.rmtree(work)
    shutil.copytree(base, work, symlinks=True)
    mode = os.stat(work / rel).st_mode & 0o777
    os.chmod(work / rel, 0)
    os.environ["SUBTOOL_CACHE"] = str(work)
    row = {"path": rel, "installed": outcome(lambda: store.installed("bert-99", "dataset"))}
    code = "import sys; from subtool.cli import main; sys.argv = ['subtool'] + sys.argv[1:]; main()"
    run = subprocess.run(['true'])
    if rel in sys.argv[4:]:
        run = subprocess.run([sys.executable, "-c", code, "run", "--model", "bert-99", "--out", str(work.parent / "o"),
                          "--run-style", "short", "--mode", "accuracy"], capture_output=True, text=True, timeout=300)
    row["run"] = [run.returncode, (run.stderr or "").strip()[-600:]]
    fetched = lambda: api.fetch("bert-99", kinds=("dataset",), assets=(asset,), settings=Settings(retries=1,
                                backoff=0.0, timeout=(5, 5)))
    row["fetch"] = outcome(fetched)
    if os.path.exists(work / rel):
        os.chmod(work / rel, mode)
    print(json.dumps(row), flush=True)
"""


RUN_AT = ("assets", "assets/bert-99/dataset", "assets/bert-99/dataset/MANIFEST.json")  # `subtool run` too


def _without_override() -> list[str]:
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def test_every_unreadable_folder_or_file_of_the_cache_is_one_line_naming_it(file_server, own_cache, tmp_path):
    prefix = _without_override()
    asset = squad(file_server)
    fetch(asset)
    for d, _, _ in os.walk(own_cache):
        os.chmod(d, 0o755)
    work = tmp_path / "probe" / "cache"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            *prefix,
            sys.executable,
            "-c",
            PROBE,
            str(own_cache),
            str(work),
            json.dumps(dataclasses.asdict(asset)),
            *RUN_AT,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {r["path"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert {*RUN_AT, "assets/bert-99/dataset/dev-v1.1.json"} <= set(rows)
    assert "assets/.staging" not in rows  # an installed fetch leaves no staging folder
    for rel, row in rows.items():
        for what in ("installed", "fetch"):
            assert row[what][0] in ("ok", "error"), (rel, what, row[what])  # never another exception
            if row[what][0] == "error":
                assert row[what][1].startswith(str(work)) and row[what][2] == "io.eacces", (rel, row[what])
        code, err = row["run"]
        assert "Traceback" not in err and (code == 0 or err.count("error:") == 1), (rel, err)
    # the asset's folder or its manifest unreadable: an error naming it, for a lookup, a fetch and a run alike
    # (not "nothing fetched": the run would take the demo, the fetch download again)
    for rel in RUN_AT:
        assert rows[rel]["installed"][0] == "error" and rows[rel]["fetch"][0] == "error", rows[rel]
        assert rows[rel]["run"][0] == 2 and str(work / rel) in rows[rel]["run"][1], rows[rel]["run"]
    # an unreadable file of an intact install is not read by a lookup (its size and times are): still installed
    assert rows["assets/bert-99/dataset/dev-v1.1.json"]["installed"] == ["ok", True]


# -------------------------------------------------------------------------------------- trusted by stat
def test_an_installed_file_is_trusted_on_size_and_times_and_verify_hashes_it(file_server):
    asset = squad(file_server)
    fetch(asset)
    found = store.installed("bert-99", "dataset")
    dev = found.root / "dev-v1.1.json"
    entry = next(f for f in found.files if f.name == "dev-v1.1.json")
    st = dev.stat()
    assert (entry.size, entry.mtime_ns, entry.inode) == (st.st_size, st.st_mtime_ns, st.st_ino)
    requests = len(file_server.requests)

    changed = bytearray(DEV)
    changed[1234] ^= 0xFF
    with open(dev, "r+b") as fh:  # one byte changed in place (same inode), its time set back (forged)
        fh.write(changed)
    os.utime(dev, ns=(st.st_atime_ns, st.st_mtime_ns))
    lines: list[str] = []
    assert fetch(asset, say=lines.append).outcomes[0].status == "already installed"  # not hashed: trusted
    assert "--verify hashes every file" in lines[0] and len(file_server.requests) == requests

    lines.clear()
    assert fetch(asset, verify=True, say=lines.append).outcomes[0].status == "installed"  # hashed: found, fetched
    assert dev.read_bytes() == DEV and len(file_server.requests) == requests + 2  # the asset, both files
    # and said by name, before the download (found by probing: --verify re-installed without a word)
    assert (
        lines[0] == "bert-99 dataset: dev-v1.1.json is not the file installed (its sha256 changed): fetching it again"
    )

    again = next(f for f in store.installed("bert-99", "dataset").files if f.name == "dev-v1.1.json")
    with open(dev, "ab") as fh:  # another size (its time forged too): found without --verify
        fh.write(b"x")
    os.utime(dev, ns=(st.st_atime_ns, again.mtime_ns))
    assert fetch(asset).outcomes[0].status == "installed" and dev.read_bytes() == DEV


def test_a_file_with_other_times_is_hashed_and_a_manifest_without_them_too(file_server):
    asset = squad(file_server)
    fetch(asset)
    root = store.installed("bert-99", "dataset").root
    dev = root / "dev-v1.1.json"
    dev.write_bytes(bytes(len(DEV)))  # same size, new time: hashed, found
    assert fetch(asset).outcomes[0].status == "installed" and dev.read_bytes() == DEV

    record = json.loads((root / store.MANIFEST).read_text())  # an older manifest: no times recorded
    for f in record["files"]:
        del f["mtime_ns"], f["inode"]
    (root / store.MANIFEST).write_text(json.dumps(record))
    st = dev.stat()
    dev.write_bytes(bytes(len(DEV)))
    os.utime(dev, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fetch(asset).outcomes[0].status == "installed" and dev.read_bytes() == DEV
