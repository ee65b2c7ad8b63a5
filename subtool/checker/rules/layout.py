"""Which files a result needs, where they live for the round's layout, and tree-level layout problems."""

from __future__ import annotations

import os
from pathlib import Path

from subtool.checker.context import ResultContext
from subtool.checker.findings import Collector
from subtool.checker.registry import define
from subtool.mlperf.layout import DIVISIONS
from subtool.mlperf.round import LARGE_FILE_BYTES, MEASUREMENTS_FILES

MISSING_FILE = define(
    "layout.missing_file",
    "error",
    "A file every result needs is missing (performance or accuracy detail log, accuracy.txt, "
    "mlperf_log_accuracy.json, measurements.json, user.conf, README.md, systems/<system>.json).",
    "fails the result; crashes with a traceback when a detail log or the system JSON is missing",
)
MISSING_DIR = define(
    "layout.missing_dir",
    "error",
    "A folder the round requires is missing: results/, src/ (v6) or code/ (v5), measurements/ (v5).",
    "fails every result of the submitter (src/code); crashes when results/ or a v5 measurements folder is missing",
)
EMPTY_FILE = define(
    "layout.empty_file",
    "error",
    "user.conf or README.md of a result is empty.",
    "'is having empty' error, fails the result",
)
LEGACY_LAYOUT = define(
    "layout.wrong_generation",
    "error",
    "The tree is laid out for another generation of rounds (v5.x keeps measurements/ and compliance/ "
    "beside results/ and code/ instead of src/; v6.x keeps everything in the result folder).",
    "crashes (v5.x rules on a v6 tree) or reports the files as missing (v6.x rules on a v5 tree)",
)
STRAY_DIR = define(
    "layout.unknown_division",
    "warning",
    "A folder at the tree root that is not closed/, open/ or network/ is ignored.",
    "silently ignored",
)
DIVISION_FILE = define(
    "layout.division_not_folder",
    "warning",
    "A plain file at the tree root is named like a division (closed, open, network); it is ignored.",
    "silently ignored",
)
NO_RESULTS = define(
    "layout.no_results",
    "error",
    "The tree holds no result to check: no <division>/<submitter>/results/<system>/<model>/<scenario>/ folder "
    "(or none of the submitter asked for).",
    "reports 0 results and passes",
)
LARGE_FILE = define(
    "layout.large_file",
    "warning",
    "A file is over 50 MB; results repositories reject such files.",
    "not checked by the current checker (older versions rejected files over 50 MB)",
)
MISSING_SUMMARY = define(
    "layout.missing_summary",
    "warning",
    "A run folder has no mlperf_log_summary.txt (reviewers read it; the checker reads the detail log).",
    "not checked outside compliance and power runs",
)
POWER_UNCHECKED = define(
    "layout.power_not_checked",
    "warning",
    "The result has a performance/power folder; subtool does not check power measurements.",
    "runs the Power WG checks",
)


def check_result_files(ctx: ResultContext) -> None:
    """Report missing or empty files of one result, and the large-file / summary-log advisories."""
    out = ctx.out
    perf_present = ctx.is_file(ctx.perf_rel)
    acc_present = ctx.is_file(ctx.acc_rel)
    if not perf_present:
        out.add(
            MISSING_FILE,
            ctx.perf_rel,
            "performance detail log mlperf_log_detail.txt is missing",
            "copy the performance run's LoadGen logs into performance/run_1/",
        )
    if not acc_present:
        out.add(
            MISSING_FILE,
            ctx.acc_rel,
            "accuracy detail log mlperf_log_detail.txt is missing",
            "copy the accuracy run's LoadGen logs into accuracy/",
        )
    for name, hint in (
        (
            "accuracy.txt",
            "run the benchmark's accuracy script on mlperf_log_accuracy.json "
            "and save its output as accuracy/accuracy.txt",
        ),
        ("mlperf_log_accuracy.json", "copy the accuracy run's mlperf_log_accuracy.json (truncated) into accuracy/"),
    ):
        rel = f"{ctx.result_rel}/accuracy/{name}"
        if not ctx.is_file(rel):
            out.add(MISSING_FILE, rel, f"{name} is missing", hint)
    for run in ("performance/run_1", "accuracy"):
        folder = f"{ctx.result_rel}/{run}"
        if ctx.exists(folder) and not ctx.exists(f"{folder}/mlperf_log_summary.txt"):
            out.add(
                MISSING_SUMMARY,
                f"{folder}/mlperf_log_summary.txt",
                "mlperf_log_summary.txt is missing",
                "copy LoadGen's summary log beside the detail log",
            )
    if ctx.exists(f"{ctx.result_rel}/performance/power"):
        out.add(
            POWER_UNCHECKED,
            f"{ctx.result_rel}/performance/power",
            "power measurements are present but not checked by subtool",
            "run the official checker (subtool check --official PATH) for power results",
        )
    check_large_files(ctx)


def check_measurement_files(ctx: ResultContext) -> None:
    folder = ctx.measurements_rel
    for name in MEASUREMENTS_FILES:
        rel = f"{folder}/{name}"
        if not ctx.is_file(rel):
            out_hint = (
                "the user.conf LoadGen loaded for this run"
                if name == "user.conf"
                else "a README.md saying how to reproduce the run"
            )
            ctx.out.add(MISSING_FILE, rel, f"{name} is missing", f"add {out_hint} to {folder}/")
        elif ctx.size(rel) == 0:
            ctx.out.add(EMPTY_FILE, rel, f"{name} is empty", f"fill {name}; the official checker rejects empty files")


def check_large_files(ctx: ResultContext) -> None:
    """The files that grow without bound: LoadGen traces and untruncated accuracy logs."""
    for run in ("performance/run_1", "accuracy"):
        folder = f"{ctx.result_rel}/{run}"
        for name in ("mlperf_log_trace.json", "mlperf_log_accuracy.json"):
            size = ctx.size(f"{folder}/{name}") if ctx.is_file(f"{folder}/{name}") else None
            if size is not None and size > LARGE_FILE_BYTES:
                ctx.out.add(
                    LARGE_FILE,
                    f"{folder}/{name}",
                    f"file is {size / 1e6:.1f} MB (over 50 MB)",
                    "truncate accuracy logs and leave traces (mlperf_log_trace.json) out of the tree",
                )


# what check_large_files reports per result; any other file is reported where the tree walk finds it
PER_RESULT_LARGE_FILES = ("mlperf_log_trace.json", "mlperf_log_accuracy.json")


def note_large_file(out: Collector, root: Path, rel: str) -> None:
    """Any other file over 50 MB in a division folder (the official checker before v5.0 refused them all)."""
    if rel.rpartition("/")[2] in PER_RESULT_LARGE_FILES:
        return
    try:
        size = os.lstat(root / rel).st_size
    except OSError:
        return
    if size > LARGE_FILE_BYTES:
        out.add(
            LARGE_FILE,
            rel,
            f"file is {size / 1e6:.1f} MB (over 50 MB)",
            "keep model weights, data sets and traces out of the tree; results repositories reject such files",
        )


def note_no_results(out: Collector, submitter: str | None, root: Path | None = None) -> None:
    whose = f" of submitter {submitter!r}" if submitter else ""
    inner = _tree_below(root) if root is not None else None
    out.add(
        NO_RESULTS,
        ".",
        f"no result{whose} to check: nothing passes an empty tree",
        f"did you mean {inner}? It holds {', '.join(d + '/' for d in DIVISIONS if (inner / d).is_dir())}"
        if inner is not None
        else "point the checker at the tree's root (the folder holding closed/, open/ or network/)",
    )


def _tree_below(root: Path) -> Path | None:
    """A folder one or two levels down that holds a division folder, where `root` holds none (the checker was
    pointed at `subtool all`'s --out, whose tree is OUT/submission, or at an unpacked tarball's parent)."""
    if any((root / d).is_dir() for d in DIVISIONS):
        return None
    level = [root]
    for _depth in range(2):
        below = []
        for folder in level:
            try:
                entries = sorted(e.name for e in os.scandir(folder) if e.is_dir(follow_symlinks=False))[:64]
            except OSError:
                continue
            for name in entries:
                if _holds_tree(folder / name):
                    return folder / name
                below.append(folder / name)
        level = below
    return None


def _holds_tree(folder: Path) -> bool:
    """`<division>/<submitter>/results` or `systems` below `folder`: a submission tree, not the full logs beside
    it (`full_logs/open/<team>/<system>/…`), which hold division folders too."""
    for division in DIVISIONS:
        try:
            submitters = [e.name for e in os.scandir(folder / division) if e.is_dir(follow_symlinks=False)][:64]
        except OSError:
            continue
        if any((folder / division / s / part).is_dir() for s in submitters for part in ("results", "systems")):
            return True
    return False


def note_stray_dir(out: Collector, name: str) -> None:
    out.add(
        STRAY_DIR,
        name,
        f"'{name}' is not a division folder and is ignored",
        "put results under closed/, open/ or network/",
    )


def note_division_file(out: Collector, name: str) -> None:
    out.add(
        DIVISION_FILE,
        name,
        f"'{name}' is a file, not a division folder, and is ignored",
        f"remove it, or make {name}/ the folder that holds the division's submitters",
    )
