"""Mutation check: does each named test fail when the one line of code it guards is broken?

    .venv/bin/python tests/mutations.py            # every mutation; exit 1 when one survives
    .venv/bin/python tests/mutations.py --list     # the mutations, their lines and tests
    .venv/bin/python tests/mutations.py --only best-result-worst --only pack-gzip-clock

Each mutation is one line of the project changed (file, original line, mutated line) and the test that must
catch it. The script copies the repository's files (tracked and untracked, not ignored ones: `git ls-files`) into
a scratch folder once, never touching the working tree; for each mutation it first runs the test on the
unmutated copy (it must pass: a test that fails or skips anyway proves nothing), applies the mutation, runs the
test again with that copy first on PYTHONPATH, and restores the line. A mutation is `caught` when the test fails,
`SURVIVED` when it passes, `skipped` when the test did not run (then the mutation is not proven caught either),
`stale` when the original line is not in the file any more (update the list), `broken` when the test fails on the
unmutated copy. Exit 0 only when every mutation run is caught.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    id: str
    file: str  # relative to the repository root
    original: str  # one line, stripped of its indentation; must occur exactly once (after `anchor`, if given)
    mutated: str  # the replacement line, same indentation
    test: str  # pytest node id (or file) that must fail
    why: str
    anchor: str = ""  # text before the line, when `original` alone is not unique


MUTATIONS = (
    Mutation(
        "test01-self-compare",
        "subtool/runner/session.py",
        "v_acc = comp.verify_accuracy(reference_acc, sampled_log)",
        "v_acc = comp.verify_accuracy(sampled_log, sampled_log)",
        "tests/runner/bert/test_bert_full.py",
        "TEST01 compares the audited run's sampled log with itself: it can never fail",
    ),
    Mutation(
        "stream-join-space",
        "subtool/runner/llm/sut_openai.py",
        'text = "".join(self.pieces)  # BPE pieces: nothing goes between them',
        'text = " ".join(self.pieces)  # BPE pieces: nothing goes between them',
        "tests/runner/llm/test_llm_network.py::test_text_only_bpe_server_pieces_join_with_nothing_between",
        "streamed pieces joined with a space: a real BPE tokenizer re-tokenizes differently",
    ),
    Mutation(
        "publish-recovery-raise",
        "subtool/publish/forge.py",
        "return None",
        "raise",
        "tests/publish",
        "a 422 'already exists' after a retried POST (applied, answer lost) is an error, not a recovery",
        anchor='if exc.status == 422 and "already exists" in _describe(exc.data):',
    ),
    Mutation(
        "accuracy-half-point-low",
        "subtool/mlperf/round.py",
        "return self.reference * self.fraction",
        "return self.reference * self.fraction - 0.5",
        "tests/checker/test_accuracy_boundary.py",
        "every accuracy metric passes 0.5 points under the round's threshold (checker, pack and score)",
    ),
    Mutation(
        "accuracy-half-point-low-scoring",
        "subtool/mlperf/round.py",
        "return self.reference * self.fraction",
        "return self.reference * self.fraction - 0.5",
        "tests/scoring/test_score_accuracy_boundary.py",
        "the same, seen from `subtool score`: a team 0.01 under the F1 threshold is ranked",
    ),
    Mutation(
        "accuracy-half-point-low-pack",
        "subtool/mlperf/round.py",
        "return self.reference * self.fraction",
        "return self.reference * self.fraction - 0.5",
        "tests/pack/test_accuracy_boundary_pack.py",
        "the same, seen from `subtool package` + `subtool pack`: a tree 0.01 under the threshold packs PASS",
    ),
    Mutation(
        "pack-member-clock",
        "subtool/pack/tarball.py",
        "info.mtime = mtime",
        "info.mtime = int(__import__('time').time())",
        "tests/pack/test_pack.py::test_two_packs_of_the_same_tree_give_identical_bytes",
        "every member's mtime is the packing time: two packs of one tree differ",
    ),
    Mutation(
        "pack-gzip-clock",
        "subtool/pack/tarball.py",
        'with gzip.GzipFile(filename="", mode="wb", fileobj=sink, compresslevel=compresslevel, mtime=0) as gz:',
        'with gzip.GzipFile(filename="", mode="wb", fileobj=sink, compresslevel=compresslevel, mtime=None) as gz:',
        "tests/pack/test_pack.py::test_two_packs_of_the_same_tree_give_identical_bytes",
        "the gzip header carries the packing time: two packs of one tree differ",
    ),
    Mutation(
        "best-result-worst",
        "subtool/scoring/ranking.py",
        "return (min if task.lower_is_better else max)(good, key=lambda r: r.value)",
        "return (max if task.lower_is_better else min)(good, key=lambda r: r.value)",
        "tests/scoring/test_score_best_result.py",
        "a team with several results is ranked on its worst",
    ),
    Mutation(
        "metrics-avg-is-max",
        "subtool/scoring/metrics.py",
        '{**group, "count": len(values), "min": min(values), "max": max(values), "avg": sum(values) / len(values)}',
        '{**group, "count": len(values), "min": min(values), "max": max(values), "avg": max(values)}',
        "tests/scoring/test_score_metrics.py",
        "VirtualClient metrics: the average over repeated runs is not the average",
    ),
    Mutation(
        "nvml-mig-ignored",
        "subtool/hostinfo/gpu.py",
        "if not mode or mode[0] != nv.NVML_DEVICE_MIG_ENABLE:",
        "if True:",
        "tests/package/test_system_detect.py::test_mig_partitioned_a100_is_described_by_its_instances",
        "a MIG-partitioned GPU is described as the whole card (80 GB) instead of the instances a run sees",
    ),
    Mutation(
        "amdsmi-import-prints",
        "subtool/hostinfo/gpu.py",
        "with contextlib.redirect_stdout(io.StringIO()):",
        "if True:",
        "tests/package/test_system_detect.py::test_amdsmi_without_rocm_is_silent_and_the_sysfs_reader_answers",
        "amdsmi without ROCm prints into stdout, where `subtool system` writes its JSON",
    ),
    Mutation(
        "nodes-differ-silently",
        "subtool/package/system_merge.py",
        "if (differ or fields[name] == NOT_DETECTED) and name not in guessed:",
        "if fields[name] == NOT_DETECTED and name not in guessed:",
        "tests/package/test_system_nodes.py::test_nodes_that_differ_leave_the_field_to_the_user_and_idle_nodes_do_not_count",
        "nodes of a multi-node run that disagree (8 GPUs here, 4 there) pass as one, unflagged",
    ),
    Mutation(
        "explain-override-unnamed",
        "subtool/cli.py",
        'desc = apply_overrides(desc, from_set, source="override: --set")',
        "desc = apply_overrides(desc, from_set)",
        "tests/package/test_system_detect.py::test_cli_explain_names_each_fields_source",
        "`subtool system --explain` no longer says which values the user set with --set",
    ),
    Mutation(
        "md-table-padded-rule",
        "subtool/md_table.py",
        'return "|" + "|".join("---" for _ in colwidths) + "|"',
        'return "|" + "|".join("-" * w for w in colwidths) + "|"',
        "tests/test_md_table.py",
        "the Markdown tables' rule follows the column widths: every CI summary and README changes bytes",
    ),
    Mutation(
        "lint-nothing-checked-passes",
        ".ci/lint-workflows",
        "exit 3",
        "exit 0",
        "tests/ci/test_ci_scripts.py",
        "the workflow linter script passes when no linter could be installed",
        anchor='note "no linter available: nothing was checked"',
    ),
)


# ----------------------------------------------------------------------------------------------- scratch
def scratch_copy(dest: Path) -> Path:
    """The repository's files (tracked, and untracked but not ignored) copied into dest; no .venv, no .git."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = raw.decode()
        src = ROOT / rel
        if not src.is_file():
            continue  # deleted in the work tree but still in the index
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dest


def locate(text: str, m: Mutation) -> tuple[int, int, str] | str:
    """(start, end, indentation) of the one line to change, or why it cannot be found."""
    start = 0
    if m.anchor:
        start = text.find(m.anchor)
        if start < 0:
            return f"anchor not found: {m.anchor!r}"
    pattern = re.compile(r"^([ \t]*)" + re.escape(m.original) + r"[ \t]*$", re.MULTILINE)
    hits = list(pattern.finditer(text, start))
    if not hits:
        return f"line not found: {m.original!r}"
    if len(hits) > 1 and not m.anchor:
        return f"line occurs {len(hits)} times; give an anchor"
    hit = hits[0]
    return hit.start(), hit.end(), hit.group(1)


# ------------------------------------------------------------------------------------------------ running
@dataclass
class Outcome:
    status: str
    detail: str
    seconds: float


def official_env() -> dict[str, str]:
    """The scratch copy has no shared/ beside it: point the tests at the official checker this checkout finds."""
    if os.environ.get("SUBTOOL_OFFICIAL"):
        return {}
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import official_checker_dir

    found = official_checker_dir()
    return {"SUBTOOL_OFFICIAL": str(found)} if found else {}


def run_test(copy: Path, test: str, python: str, timeout: int) -> tuple[str, str]:
    """'passed', 'failed' or 'skipped', and the summary line."""
    env = {
        **os.environ,
        **official_env(),
        "PYTHONPATH": os.pathsep.join([str(copy), str(copy / "tests")]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    cmd = [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", test]
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "failed", f"timed out after {timeout} s"
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    summary = lines[-1] if lines else ""
    if proc.returncode == 0:
        return ("passed" if re.search(r"\d+ passed", summary) else "skipped"), summary
    if proc.returncode == 5:  # nothing collected
        return "skipped", summary
    return "failed", summary


def check_imports(copy: Path, python: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(copy)}
    where = subprocess.run(
        [python, "-c", "import subtool; print(subtool.__file__)"], cwd=copy, env=env, capture_output=True, text=True
    ).stdout.strip()
    if not where.startswith(str(copy)):
        sys.exit(f"mutations: `import subtool` resolves to {where or 'nothing'}, not the scratch copy {copy}")


def mutate(copy: Path, m: Mutation, python: str, timeout: int, baselines: dict[str, tuple[str, str]]) -> Outcome:
    started = time.monotonic()
    path = copy / m.file
    if not path.is_file():
        return Outcome("stale", f"no file {m.file}", 0.0)
    text = path.read_text()
    found = locate(text, m)
    if isinstance(found, str):
        return Outcome("stale", found, 0.0)
    test_file = copy / m.test.split("::")[0]
    if not test_file.exists():
        return Outcome("stale", f"no test {m.test}", 0.0)
    if m.test not in baselines:
        baselines[m.test] = run_test(copy, m.test, python, timeout)
    base, base_summary = baselines[m.test]
    if base != "passed":
        status = "skipped" if base == "skipped" else "broken"
        return Outcome(status, f"unmutated: {base_summary}", time.monotonic() - started)
    start, end, indent = found
    path.write_text(text[:start] + indent + m.mutated + text[end:])
    try:
        result, summary = run_test(copy, m.test, python, timeout)
    finally:
        path.write_text(text)
    status = {"failed": "caught", "passed": "SURVIVED", "skipped": "skipped"}[result]
    return Outcome(status, summary, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the mutations and exit")
    parser.add_argument("--only", action="append", default=[], metavar="ID", help="run only this mutation")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs pytest")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per test run")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m.id in args.only]
    unknown = set(args.only) - {m.id for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    if args.list:
        for m in chosen:
            print(f"{m.id}\n  {m.file}: {m.original}\n  → {m.mutated}\n  test: {m.test}\n  why: {m.why}")
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="subtool-mutations-"))
    try:
        copy = scratch_copy(scratch / "repo")
        check_imports(copy, args.python)
        baselines: dict[str, tuple[str, str]] = {}
        counts: dict[str, int] = {}
        for m in chosen:
            out = mutate(copy, m, args.python, args.timeout, baselines)
            counts[out.status] = counts.get(out.status, 0) + 1
            print(f"{out.status:9} {m.id:34} {out.seconds:6.1f}s  {m.test}\n{'':10}{out.detail}", flush=True)
        print("mutations: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        return 0 if counts.get("caught", 0) == len(chosen) else 1
    finally:
        if args.keep:
            print(f"scratch copy kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
