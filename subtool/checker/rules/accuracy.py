"""The accuracy run: accuracy.txt against the round's thresholds, the truncated log, the dataset coverage."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

from subtool.checker.context import ResultContext
from subtool.checker.registry import define
from subtool.checker.rules.inputs import NOT_FINITE
from subtool.mlperf.logs import read_text_lines
from subtool.mlperf.round import ACCURACY_PATTERNS, HASH_LINE, MAX_ACCURACY_LOG_BYTES
from subtool.wording import plain_number

LOG_CORRUPT = define(
    "acc.log_corrupt",
    "error",
    "The accuracy detail log is not a clean LoadGen log (wrong first line, cut short, invalid JSON, garbage).",
    "crashes with a traceback",
)
LOADGEN_ERROR = define(
    "acc.loadgen_error",
    "error",
    "LoadGen logged an error during the accuracy run.",
    "'has loadgen errors', fails the result",
)
RESULT_UNREADABLE = define(
    "acc.result_unreadable",
    "error",
    "accuracy.txt cannot be read as text.",
    "an exception inside the check, reported as a failed check",
)
BELOW = define(
    "acc.below_threshold",
    "error",
    "A closed-division accuracy metric is below the round's threshold (e.g. bert-99 F1 ≥ 89.96526). In the "
    "open division it is reported as info.",
    "'accuracy not met', fails closed results; open results pass",
)
ABOVE = define(
    "acc.above_upper_limit",
    "error",
    "A metric with an upper limit is above it (llama2-70b tokens_per_sample ≤ 323.895, llama3.1-8b gen_len "
    "≤ 8984408.4). Info in the open division.",
    "'accuracy not met: upper limit', fails closed results",
)
METRIC_MISSING = define(
    "acc.metric_missing",
    "error",
    'accuracy.txt has no line the benchmark\'s metric pattern matches (e.g. {"exact_match": …, "f1": …}). '
    "Warning in the open division.",
    "fails closed results silently (the metric is simply not seen); open results pass",
)
METRIC_UNPARSEABLE = define(
    "acc.metric_unparseable",
    "error",
    "A metric in accuracy.txt is not a number.",
    "an exception inside the check, reported as a failed check",
)
HASH_MISSING = define(
    "acc.hash_missing",
    "error",
    "accuracy.txt has no 'hash=<sha256 of the full accuracy log>' line (written when the log is truncated). "
    "Warning in the open division.",
    "'not hash value for accuracy.txt', fails closed results; open results pass",
)
NOT_TRUNCATED = define(
    "acc.not_truncated",
    "error",
    "accuracy/mlperf_log_accuracy.json is over 10240 bytes.",
    "'is not truncated', fails the result",
)
DATASET_SIZE = define(
    "acc.dataset_size",
    "error",
    "The accuracy run did not cover the whole data set (accuracy sample count ≠ the benchmark's data set size, "
    "e.g. bert 10833), in both divisions.",
    "'accuracy run does not cover all dataset', fails the result",
)
NOT_ACCURACY_RUN = define(
    "acc.not_accuracy_run",
    "error",
    "The accuracy folder's mlperf_log_detail.txt is from a performance run (effective_test_mode PerformanceOnly or "
    "FindPeakPerformance): its accuracy log holds no answers, so accuracy.txt cannot come from it.",
    "not checked: a performance run's log in the accuracy folder passes",
)
EXTRA_FILES = define(
    "acc.extra_files",
    "error",
    "stable-diffusion-xl / wan-2.2 accuracy folders must hold the round's sample images / videos.",
    "'expected to have the following extra files', fails the result",
)

# Sample outputs some rounds require beside the accuracy log: {benchmark: {round: {folder: [file stems]}}}.
EXTRA_ACCURACY_FILES = {
    "stable-diffusion-xl": {
        "v5.0": {"images": ["4459", "4015", "2705", "1682", "4048", "4683", "3757", "1578", "3319", "95"]},
        "v5.1": {"images": ["2747", "2235", "2165", "1515", "1538", "1367", "2419", "4629", "3657", "4532"]},
        "v6.0": {"images": ["1311", "2476", "3644", "2188", "4114", "52", "388", "1195", "3427", "2289"]},
    },
    "wan-2.2-t2v-a14b": {
        "v6.0": {"videos": ["130", "106", "84", "59", "12", "31", "86", "122", "233", "96"]},
        "v6.1": {"videos": ["130", "106", "84", "59", "12", "123", "43", "22", "238", "32"]},
    },
}


def check_accuracy(ctx: ResultContext) -> None:
    out = ctx.out
    log = ctx.acc_log
    if log is not None:
        log.decode_all()
        if log.non_finite:
            out.add(
                NOT_FINITE,
                ctx.acc_rel,
                f"accuracy log values are not finite numbers: {log.non_finite_text()}",
                "copy the accuracy run's mlperf_log_detail.txt again; LoadGen never writes NaN or Infinity",
            )
        if not log.readable:
            out.add(
                LOG_CORRUPT,
                ctx.acc_rel,
                f"accuracy log {'; '.join(log.problems[:3])}",
                "copy the accuracy run's mlperf_log_detail.txt again; never edit it",
            )
        if log.errors:  # every error counts here, even "built with uncommitted changes" (as officially)
            out.add(
                LOADGEN_ERROR,
                ctx.acc_rel,
                f"LoadGen logged {len(log.errors)} error(s): {'; '.join(log.errors[:3])}",
                "fix the cause and re-run the accuracy run (a LoadGen built from a clean checkout or the "
                "PyPI wheel does not log 'uncommitted changes')",
            )
        mode = log["effective_test_mode"]
        if mode in ("PerformanceOnly", "FindPeakPerformance"):
            out.add(
                NOT_ACCURACY_RUN,
                ctx.acc_rel,
                f"the accuracy folder holds a {mode} run's log",
                "copy the AccuracyOnly run's mlperf_log_detail.txt, mlperf_log_accuracy.json and accuracy.txt",
            )
        if ctx.rules is not None:
            _dataset(ctx, log)
    if ctx.rules is not None:
        _accuracy_txt(ctx)
        _extra_files(ctx)
    _truncated(ctx)


def _dataset(ctx: ResultContext, log) -> None:
    want = ctx.rules.accuracy_sample_count(ctx.scenario)
    key = (
        "effective_accuracy_sample_count" if log.has("effective_accuracy_sample_count") else "qsl_reported_total_count"
    )
    found = log[key]
    if found != want:
        ctx.out.add(
            DATASET_SIZE,
            ctx.acc_rel,
            f"the accuracy run covered {found} samples, {ctx.job.mlperf_model} has {want}",
            f"run accuracy mode over the full data set ({want} samples; the QSL's total count must be {want})",
        )


@dataclass
class _MetricScan:
    """What accuracy.txt says about the benchmark's metrics, before any finding is made of it."""

    seen: list[bool]
    below: dict[str, tuple[str, float]] = field(default_factory=dict)
    above: dict[str, tuple[str, float]] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    unparseable: list[str] = field(default_factory=list)
    not_finite: dict[str, str] = field(default_factory=dict)  # metric → its text
    hash_value: str | None = None


def _accuracy_txt(ctx: ResultContext) -> None:
    rel = f"{ctx.result_rel}/accuracy/accuracy.txt"
    if not ctx.is_file(rel):
        return  # reported by the layout rules
    lines, problem = read_text_lines(ctx.abs(rel))
    if lines is None:
        ctx.out.add(
            RESULT_UNREADABLE, rel, f"accuracy.txt {problem}", "write accuracy.txt again with the accuracy script"
        )
        return
    bounds = ctx.rules.accuracy(ctx.scenario)
    scan = _scan_metrics(lines, bounds, ctx.rules.accuracy_upper())
    ctx.accuracy_metrics = scan.metrics
    _report_metrics(ctx, rel, bounds, scan)


def _scan_metrics(lines: list[str], bounds, uppers) -> _MetricScan:
    scan = _MetricScan(seen=[False] * len(bounds))
    for line in lines:
        if HASH_LINE.match(line) and bounds:
            scan.hash_value = HASH_LINE.match(line).group(1)
        for i, bound in enumerate(bounds):
            m = ACCURACY_PATTERNS[bound.metric].match(line)
            if not m:
                continue
            text = m.group(1)
            try:
                number = float(text)
            except ValueError:
                scan.unparseable.append(f"{bound.metric}={text}")
                continue
            if not math.isfinite(number):  # (400 digits are a float infinity)
                scan.not_finite[bound.metric] = text[:40]
                continue
            if number >= bound.value:
                scan.seen[i] = True
            else:
                scan.below[bound.metric] = (text, bound.value)
            if text:
                scan.metrics[bound.metric] = text
        for bound in uppers:
            m = ACCURACY_PATTERNS[bound.metric].match(line)
            if m:
                try:
                    if not float(m.group(1)) <= bound.value:  # (Infinity is above, never NaN-silently below)
                        scan.above[bound.metric] = (m.group(1)[:40], bound.value)
                    elif float(m.group(1)) < 0:  # below a maximum, and no length: the official reader sees none
                        scan.unparseable.append(f"{bound.metric}={m.group(1)[:40]} (negative)")
                except ValueError:
                    scan.unparseable.append(f"{bound.metric}={m.group(1)}")
        if all(scan.seen) and scan.hash_value:
            break  # the official reader stops here too; later lines are not looked at
    return scan


def _report_metrics(ctx: ResultContext, rel: str, bounds, scan: _MetricScan) -> None:
    open_div = ctx.job.division == "open"
    soft = "info" if open_div else None
    for metric, (text, minimum) in scan.below.items():
        ctx.out.add(
            BELOW,
            rel,
            f"{metric} {text} is below the {ctx.cfg.version} threshold {plain_number(minimum)}",
            "open-division results report accuracy without a threshold"
            if open_div
            else "use the reference model/precision or fix preprocessing; closed results must reach the threshold",
            severity=soft,
        )
    for metric, (text, maximum) in scan.above.items():
        ctx.out.add(
            ABOVE,
            rel,
            f"{metric} {text} is above the upper limit {plain_number(maximum)}",
            "generation length is out of range: check max_new_tokens / stop tokens",
            severity=soft,
        )
    for metric, text in scan.not_finite.items():
        ctx.out.add(
            NOT_FINITE,
            rel,
            f"accuracy value {metric}={text} is not a finite number",
            "write accuracy.txt again with the accuracy script",
        )
    for text in scan.unparseable:
        ctx.out.add(
            METRIC_UNPARSEABLE,
            rel,
            f"accuracy value {text} is not a number",
            "write accuracy.txt again with the accuracy script",
        )
    for i, bound in enumerate(bounds):
        if not scan.seen[i] and bound.metric not in scan.below and bound.metric not in scan.not_finite:
            example = _example_line(bound.metric)
            ctx.out.add(
                METRIC_MISSING,
                rel,
                f"no {bound.metric} value found in accuracy.txt",
                f"accuracy.txt must contain the accuracy script's line, e.g. {example}",
                severity="warning" if open_div else None,
            )
    if not scan.hash_value:
        ctx.out.add(
            HASH_MISSING,
            rel,
            "accuracy.txt has no hash= line",
            "truncate the accuracy log the official way: keep the first and last 4096 bytes and "
            "append a blank line and hash=<sha256 of the full log> to accuracy.txt (subtool package "
            "does this)",
            severity="warning" if open_div else None,
        )


def _example_line(metric: str) -> str:
    return {
        "F1": '{"exact_match": 83.1, "f1": 90.8}',
        "ROUGE1": "{'rouge1': 44.4, 'rouge2': 22.0, 'rougeL': 28.6, ...}",
        "GEN_LEN": "{..., 'gen_len': 8167644, ...}",
        "TOKENS_PER_SAMPLE": "{..., 'tokens_per_sample': 294.4}",
    }.get(metric, f"a line with {metric}")


def _truncated(ctx: ResultContext) -> None:
    rel = f"{ctx.result_rel}/accuracy/mlperf_log_accuracy.json"
    size = ctx.size(rel)
    if size is None:
        return  # missing: reported by the layout rules
    if size > MAX_ACCURACY_LOG_BYTES:
        ctx.out.add(
            NOT_TRUNCATED,
            rel,
            f"mlperf_log_accuracy.json is {size} bytes (limit {MAX_ACCURACY_LOG_BYTES})",
            "keep the full log outside the tree and truncate this copy to its first and last 4096 bytes "
            "(subtool package does it and records the hash in accuracy.txt)",
        )


def _extra_files(ctx: ResultContext) -> None:
    wanted = EXTRA_ACCURACY_FILES.get(ctx.job.mlperf_model, {}).get(ctx.cfg.version)
    if not wanted:
        return
    acc = f"{ctx.result_rel}/accuracy"
    missing = []
    for folder, stems in wanted.items():
        try:
            present = {e.name.split(".")[0] for e in os.scandir(ctx.abs(f"{acc}/{folder}")) if e.is_file()}
        except OSError:
            missing.append(f"{folder}/")
            continue
        missing += [f"{folder}/{s}" for s in stems if s not in present]
    if missing:
        ctx.out.add(
            EXTRA_FILES,
            acc,
            f"missing sample outputs: {', '.join(missing[:10])}",
            "copy the listed sample outputs from the accuracy run into the accuracy folder",
        )


def accuracy_summary(metrics: dict[str, str]) -> str:
    """The Accuracy column of summary.csv, written the way the official checker writes it."""
    return json.dumps(metrics).replace(",", " ").replace('"', "").replace("{", "").replace("}", "").strip()
