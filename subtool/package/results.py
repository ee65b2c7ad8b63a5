"""Write one result into a (staging) tree: LoadGen logs, truncated accuracy logs with their hash, the
measurements file, user.conf, README.md and the compliance runs, at the places the layout names.

Only the files the official checker expects are copied (it rejects unexpected files in the log directories);
LoadGen traces and harness extras stay behind, untruncated accuracy logs go to the full-logs directory.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.mlperf.layout import Layout, ResultKey
from subtool.package.importers import ImportedResult, refuse_non_file
from subtool.package.text_files import read_text, small_file_bytes
from subtool.package.truncate import (
    MAX_ACCURACY_LOG_SIZE,
    append_hash,
    is_already_truncated,
    read_hash,
    truncate_accuracy_log,
)

LOG_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
ACCURACY_LOG = "mlperf_log_accuracy.json"
# Compliance tests whose accuracy log the official tool truncates (and hashes).
TRUNCATED_TESTS = ("TEST01", "TEST07", "TEST09")
# Compliance tests whose tree folder holds no performance logs (the official verification copies only the
# accuracy log next to its verify_accuracy.txt).
LOG_ONLY_TESTS = ("TEST06",)
COMPLIANCE_TOP_FILES = ("verify_accuracy.txt", "verify_performance.txt", "verify_output_len.txt")
COMPLIANCE_ACC_FILES = ("accuracy.txt", "baseline_accuracy.txt", "compliance_accuracy.txt")


@dataclass
class WrittenResult:
    accuracy_sha256: str
    full_logs: list[Path]
    outside: list[Path]


def _fresh(path: Path) -> Path:
    """Staging files may be hard links shared with the live tree: never write through one, replace it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return path


def _write(path: Path, text: str) -> None:
    """Plain write: the staging tree is published as a whole (and made durable) by the package stage."""
    _fresh(path).write_text(text, encoding="utf-8")


def _copy(src: Path, dst: Path) -> None:
    shutil.copyfile(src, _fresh(dst))


def _copy_text(src: Path, dst: Path, what: str) -> None:
    """A small text file (a conf, a verdict), checked before it is copied: see text_files."""
    _fresh(dst).write_bytes(small_file_bytes(src, what))


def _copy_logs(src_dir: Path, dst_dir: Path, *, what: str) -> None:
    for name in LOG_FILES:
        src = src_dir / name
        refuse_non_file(src, name)
        if not src.is_file():
            raise SubtoolError(
                f"{what} has no {name}",
                path=src,
                rule="import.missing_log",
                hint="copy the directory LoadGen wrote, with all its files",
            )
        _copy(src, dst_dir / name)


def _copy_small_accuracy_log(src_dir: Path, dst_dir: Path) -> None:
    """A performance run's accuracy log is optional in the tree; keep it when it is small (usually `[]`)."""
    src = src_dir / ACCURACY_LOG
    if src.is_file() and src.stat().st_size <= MAX_ACCURACY_LOG_SIZE:
        _copy(src, dst_dir / ACCURACY_LOG)


def _stage_accuracy(
    src_dir: Path,
    dst_dir: Path,
    accuracy_txt: str | None,
    full_copy: Path | None,
    *,
    need_entries: bool,
    written: list[Path],
    hash_only: bool = False,
    link: bool = False,
) -> tuple[str | None, Path | None]:
    """Truncate + hash an accuracy directory's log the official way; returns (sha256, full copy path)."""
    src_log = src_dir / ACCURACY_LOG
    refuse_non_file(src_log, "the accuracy log")
    if not src_log.is_file():
        raise SubtoolError(
            "accuracy log is missing",
            path=src_log,
            rule="import.missing_log",
            hint="the accuracy run writes mlperf_log_accuracy.json; copy it with the other logs",
        )
    dst_txt = dst_dir / "accuracy.txt"
    if accuracy_txt is not None and is_already_truncated(accuracy_txt, src_log):
        _copy(src_log, dst_dir / ACCURACY_LOG)  # truncated before (by the official tool or subtool)
        _write(dst_txt, accuracy_txt)
        return read_hash(accuracy_txt), None
    outcome = truncate_accuracy_log(
        src_log, dst_dir / ACCURACY_LOG, full_copy=full_copy, need_entries=need_entries, written=written, link=link
    )
    existing = read_hash(accuracy_txt)
    if existing and existing != outcome.sha256:
        raise SubtoolError(
            f"accuracy.txt carries hash={existing[:12]}…, but {ACCURACY_LOG} hashes to "
            f"{outcome.sha256[:12]}…: they are from different runs",
            path=src_dir / "accuracy.txt",
            rule="import.accuracy_hash_mismatch",
            hint="give the accuracy.txt that was computed from this accuracy log",
        )
    if hash_only:
        text = f"hash={outcome.sha256}\n"  # TEST07/TEST09: the official tool writes only the hash
    elif existing:
        text = accuracy_txt
    else:
        text = append_hash(accuracy_txt or "", outcome.sha256)
    _write(dst_txt, text)
    return outcome.sha256, outcome.full_copy


def write_result(
    root: Path,
    layout: Layout,
    key: ResultKey,
    imp: ImportedResult,
    *,
    accuracy_txt: str,
    measurements: dict,
    readme: str,
    user_conf_text: str,
    full_logs: Path,
) -> WrittenResult:
    """Lay one imported result out below `root` (a staging copy of the tree)."""
    result_dir = root / layout.result_dir(key)
    meas_dir = root / layout.measurements_dir(key)
    full_base = full_logs / key.division / key.submitter / key.system / key.model / key.scenario
    kept: list[Path] = []
    outside: list[Path] = []  # files written outside the staging tree (full logs), to make durable

    perf_dst = result_dir / "performance" / "run_1"
    _copy_logs(imp.perf_dir, perf_dst, what="performance run")
    _copy_small_accuracy_log(imp.perf_dir, perf_dst)

    acc_dst = result_dir / "accuracy"
    _copy_logs(imp.acc_dir, acc_dst, what="accuracy run")
    link = imp.kind == "run_dir"  # subtool's run directories are replaced whole, never rewritten in place
    full_copy = full_base / "accuracy" / ACCURACY_LOG
    sha, full = _stage_accuracy(
        imp.acc_dir, acc_dst, accuracy_txt, full_copy, need_entries=True, written=outside, link=link
    )
    if full:
        kept.append(full)

    _write(root / layout.measurements_file(key), json.dumps(measurements, indent=2) + "\n")
    _write(meas_dir / "user.conf", user_conf_text)
    _write(meas_dir / "README.md", readme)
    if imp.mlperf_conf is not None:
        _copy_text(imp.mlperf_conf, meas_dir / "mlperf.conf", "mlperf.conf")

    for test, src in sorted(imp.compliance.items()):
        dst = root / layout.compliance_dir(key, test)
        _write_compliance(test, src, dst, full_base / test / "accuracy" / ACCURACY_LOG, kept=kept, outside=outside)
    return WrittenResult(accuracy_sha256=sha or "", full_logs=kept, outside=outside)


def _write_compliance(test: str, src: Path, dst: Path, full_copy: Path, *, kept: list[Path], outside: list[Path]):
    """One compliance test's folder: the verdicts, its performance logs, its accuracy files."""
    for name in COMPLIANCE_TOP_FILES:
        if (src / name).is_file():
            _copy_text(src / name, dst / name, f"{test} {name}")
    perf_src = src / "performance" / "run_1"
    # TEST06's verification hands in only its verdict and the sampled answers; the audited run's own logs
    # stay with the run
    if perf_src.is_dir() and test not in LOG_ONLY_TESTS:
        _copy_logs(perf_src, dst / "performance" / "run_1", what=f"{test} performance run")
        _copy_small_accuracy_log(perf_src, dst / "performance" / "run_1")
    acc_src = src / "accuracy"
    if acc_src.is_dir():
        _write_compliance_accuracy(test, acc_src, dst / "accuracy", full_copy, kept=kept, outside=outside)
    if not dst.exists():
        raise SubtoolError(
            f"{test} directory holds none of the files the checker reads",
            path=src,
            rule="import.compliance_empty",
            hint="give the directory run_verification.py wrote (verify_*.txt, performance/, accuracy/)",
        )


def _write_compliance_accuracy(
    test: str, acc_src: Path, acc_dst: Path, full_copy: Path, *, kept: list[Path], outside: list[Path]
) -> None:
    for name in COMPLIANCE_ACC_FILES:
        if (acc_src / name).is_file():
            _copy_text(acc_src / name, acc_dst / name, f"{test} accuracy/{name}")
    if not (acc_src / ACCURACY_LOG).is_file():
        return
    if test not in TRUNCATED_TESTS:
        _copy(acc_src / ACCURACY_LOG, acc_dst / ACCURACY_LOG)
        return
    txt = acc_src / "accuracy.txt"
    what = f"{test} accuracy/accuracy.txt"
    _, full = _stage_accuracy(
        acc_src,
        acc_dst,
        read_text(txt, what, "import.unreadable_file", lenient=True) if txt.is_file() else None,
        full_copy,
        need_entries=False,
        written=outside,
        hash_only=test in ("TEST07", "TEST09"),
    )
    if full:
        kept.append(full)
