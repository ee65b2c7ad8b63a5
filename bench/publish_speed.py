"""How much `subtool publish` fetches and how long it takes when the results repository is large.

Builds a results repository whose base branch holds many other submitters' files (incompressible bytes, the
worst case for transfer), exposes it as a fork over file:// with partial clone allowed (as GitHub allows it),
and times: the first publish (fresh cache: shallow, blob-less fetch + push), a re-run with nothing changed, and
a re-run after one file changed. The cache size shows what was fetched: the base's trees, not its blobs.

    python bench/publish_speed.py [--mb 200] [--files 4000] [--out bench/results/publish_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's subtool, not another one
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmeta import Provenance  # noqa: E402

from subtool.publish.api import PublishOptions, publish_tree  # noqa: E402


def git(*args: str, cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.invalid",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.invalid",
    )
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build_repo(root: Path, total_mb: int, files: int) -> Path:
    seed = root / "seed"
    size = total_mb * 1_000_000 // files
    for i in range(files):
        team = f"Team{i % 40:02d}"
        path = seed / "closed" / team / "results" / "box" / f"model{i % 7}" / f"run{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    git("init", "-q", "-b", "main", cwd=seed)
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "other submitters", cwd=seed)
    bare = root / "owner" / "results.git"
    git("clone", "-q", "--bare", str(seed), str(bare))
    git("--git-dir", str(bare), "config", "uploadpack.allowFilter", "true")
    return bare


def build_tree(root: Path) -> Path:
    tree = root / "tree"
    res = tree / "open" / "TeamX" / "results" / "box" / "bert-99" / "Offline"
    for rel, size in (
        ("performance/run_1/mlperf_log_detail.txt", 200_000),
        ("accuracy/accuracy.txt", 100),
        ("accuracy/mlperf_log_accuracy.json", 8_200),
        ("measurements.json", 300),
    ):
        (res / rel).parent.mkdir(parents=True, exist_ok=True)
        (res / rel).write_bytes(os.urandom(size // 2).hex().encode()[:size])
    (tree / "open" / "TeamX" / "systems").mkdir(parents=True)
    (tree / "open" / "TeamX" / "systems" / "box.json").write_text('{"system_name": "box"}\n')
    return tree


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the other submitters' files in the base")
    parser.add_argument("--files", type=int, default=4000, help="number of those files")
    parser.add_argument("--out", type=Path, default=Path("bench/results/publish_speed.json"))
    return parser


def main() -> None:
    args = build_parser().parse_args()
    prov = Provenance()
    with tempfile.TemporaryDirectory(prefix="publish-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        bare = build_repo(root, args.mb, args.files)
        setup_s = time.perf_counter() - t0
        tree = build_tree(root)
        cache = root / "cache"
        opts = PublishOptions(tree=tree, fork=f"file://{bare}", upstream="comp/results", cache=cache)
        timings = {}
        for label in ("first_publish", "rerun_unchanged", "rerun_one_file_changed"):
            if label == "rerun_one_file_changed":
                (tree / "open/TeamX/systems/box.json").write_text('{"system_name": "box", "v": 2}\n')
            t0 = time.perf_counter()
            result = publish_tree(opts)
            timings[label] = {"seconds": round(time.perf_counter() - t0, 3), "pushed": result.pushed}
        # For scale: what a plain clone of the fork (what MLC's push step does) fetches and costs.
        t0 = time.perf_counter()
        git("clone", "-q", "--no-checkout", f"file://{bare}", str(root / "plain-clone"))
        plain = {"seconds": round(time.perf_counter() - t0, 3), "bytes": du(root / "plain-clone")}
        report = {
            "bench": "publish_speed",
            "base": {
                "files": args.files,
                "bytes": du(root / "seed" / "closed"),
                "bare_repo_bytes": du(bare),
                "build_seconds": round(setup_s, 2),
            },
            "cache_bytes_after": du(cache),
            "plain_clone_for_comparison": plain,
            "timings": timings,
        }
    prov.write(report, args.out, git=git("--version").strip())
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
