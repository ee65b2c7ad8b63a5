"""The human-readable files of the tree: each result's README.md, `documentation/`, and `src/` (`code/` in v5).

A README says where the result came from, how it was run (short runs are labelled not submittable, demo runs
are labelled demo) and how to reproduce it. `src/` holds what produced the logs: for subtool's own runs a copy
of the subtool source that ran; for imported logs a note naming the harness, for the submitter to complete.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from pathlib import Path

from subtool import __version__
from subtool.md_table import markdown_table
from subtool.mlperf.layout import ResultKey, layout_for
from subtool.mlperf.run_record import run_assets
from subtool.package.importers import ImportedResult

DEMO_BANNER = (
    "> **DEMO** — produced by subtool's embedded demo (random weights, generated data). It shows the "
    "workflow; it is not a benchmark result and must not be published as one.\n"
)
SHORT_LINE = "Run style: short — not submittable: min_duration waived"
_SETTINGS = (
    "scenario",
    "test_mode",
    "target_qps",
    "target_latency_ns",
    "samples_per_query",
    "min_duration_ms",
    "min_query_count",
    "max_query_count",
    "performance_sample_count",
    "accuracy_sample_count",
    "max_async_queries",
    "qsl_rng_seed",
    "sample_index_rng_seed",
    "schedule_rng_seed",
)
_SOURCES = {
    "run_dir": "a subtool run directory",
    "mlc": "MLC's raw results layout",
    "loose": "LoadGen log directories given on the command line",
}
_RESULT_FIELDS = {
    "Offline": "result_samples_per_second",
    "Server": "result_completed_samples_per_sec",
    "SingleStream": "early_stopping_latency_ss",
    "MultiStream": "early_stopping_latency_ms",
    "Interactive": "result_completed_samples_per_sec",
}


def spread_line(run: dict) -> str | None:
    """How the run was spread over devices, from run.json's SUT record: tensor parallelism (one engine over N
    GPUs/processes) or Ray workers (engines and nodes); None for one engine on one device."""
    sut = run.get("sut") if isinstance(run.get("sut"), dict) else {}
    tp = sut.get("tensor_parallel")
    if isinstance(tp, int) and not isinstance(tp, bool) and tp >= 1:
        gpus = sut.get("accelerators_per_engine")
        where = f"{tp} GPUs" if isinstance(gpus, int) and gpus > 0 else f"{tp} CPU processes"
        group = sut.get("process_group") if sut.get("process_group") in ("nccl", "gloo") else "?"
        return f"- Spread: one engine, each layer split over {where} (tensor parallel {tp}, {group})"
    workers = sut.get("per_worker")
    if isinstance(workers, list) and workers:
        nodes = {(str(w.get("node")), str(w.get("node_ip") or "")) for w in workers if isinstance(w, dict)}
        n = len(workers)
        return f"- Spread: {n} Ray worker{'s' if n != 1 else ''} (one engine each) on {len(nodes)} node(s)"
    return None


def _result_value(imp: ImportedResult) -> str:
    key = _RESULT_FIELDS.get(imp.scenario)
    value = imp.perf_log.get(key) if key else None
    if value is None:
        return "not in the log"
    if imp.scenario in ("SingleStream", "MultiStream"):
        return f"{float(value) / 1e6:.3f} ms ({key})"
    return f"{value} ({key})"


SOURCE_DIR = f"subtool-{__version__}"


def install_command(src: str = "src") -> str:
    """Installs the copy of subtool the tree holds (no package index needed), run from the submitter folder."""
    return f"pip install {shlex.quote(f'./{src}/{SOURCE_DIR}[run]')}"


def _retarget(cmd: list[str], key: ResultKey) -> list[str]:
    """`subtool all` as run, with the submitter, division and system this result was packaged under: re-packaged
    under another name, the command that reproduces it names the tree's, not the first one."""
    if len(cmd) < 2 or cmd[1] != "all":
        return cmd
    out = list(cmd)
    for flag, value, always in (
        ("--submitter", key.submitter, True),
        ("--division", key.division, False),
        ("--system", key.system, False),
    ):
        for i, arg in enumerate(out):
            if arg == flag and i + 1 < len(out):
                out[i + 1] = value
                break
            if arg.startswith(flag + "="):
                out[i] = f"{flag}={value}"
                break
        else:
            if always:
                out[2:2] = [flag, value]
    return out


def reproduce_command(imp: ImportedResult, key: ResultKey | None = None) -> str | None:
    cmd = (imp.run or {}).get("command")
    if isinstance(cmd, list) and cmd:
        args = [str(c) for c in cmd]
        return shlex.join(_retarget(args, key) if key is not None else args)
    if isinstance(cmd, str) and cmd:
        return cmd
    return None


def result_readme(key: ResultKey, imp: ImportedResult, *, version: str, accuracy_line: str | None) -> str:
    """A result folder's README.md: what ran (benchmark, scenario, result, LoadGen, backend), its assets, the
    LoadGen settings, how to reproduce it, and the import's notes."""
    lines = [f"# {key.model} {key.scenario} on {key.system}", ""]
    if imp.demo:
        lines += [DEMO_BANNER]
    if imp.run_style == "short":
        lines += [SHORT_LINE, ""]
    else:
        lines += ["Run style: valid (official minimum duration and query counts)", ""]
    lines += _facts(key, imp, version, accuracy_line)
    lines += assets_section(imp)
    lines += ["", "## Settings (from mlperf_log_detail.txt)", ""]
    settings = imp.perf_log.settings()
    rows = [[name, str(settings[name])] for name in _SETTINGS if name in settings]
    lines += markdown_table(["setting", "value"], rows)
    lines += ["", "## How to reproduce", ""]
    lines += _reproduce(key, imp, version)
    if imp.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in imp.notes]
    return "\n".join(lines) + "\n"


def _facts(key: ResultKey, imp: ImportedResult, version: str, accuracy_line: str | None) -> list[str]:
    """The README's list of what ran: benchmark, scenario, division, round, result, accuracy, LoadGen, backend."""
    lines = [
        f"- Benchmark: {imp.bench.name}"
        + (f" (custom model `{key.model}`, see model_mapping.json)" if imp.custom_model else ""),
        f"- Scenario: {key.scenario}",
        f"- Division: {key.division}",
        f"- Submitter: {key.submitter}",
        f"- Submission round: {version}",
        f"- Result: {_result_value(imp)}, LoadGen verdict {imp.perf_log.get('result_validity', 'unknown')}",
    ]
    if accuracy_line:
        lines.append(f"- Accuracy: `{accuracy_line}`")
    lines.append(f"- LoadGen: {imp.perf_log.loadgen_version or 'unknown'}")
    lines.append(f"- Imported from {_SOURCES.get(imp.kind, imp.kind)}; packaged by subtool {__version__}")
    run = imp.run or {}
    if run.get("backend") or run.get("precision"):
        lines.append(f"- Backend: {run.get('backend', '?')}, precision {run.get('precision', '?')}")
    if spread_line(run):
        lines.append(spread_line(run))
    if run.get("tstamps"):
        lines.append(
            f"- Run started {run['tstamps'][0]}" + (f", ended {run['tstamps'][-1]}" if len(run["tstamps"]) > 1 else "")
        )
    return lines


def _reproduce(key: ResultKey, imp: ImportedResult, version: str) -> list[str]:
    """How to reproduce: subtool's own command from the submission's copy of it, or where the command lives."""
    cmd = reproduce_command(imp, key)
    if cmd:
        src = layout_for(version).src_dir(key.division, key.submitter).name
        return [
            f"From `{key.division}/{key.submitter}/`, install the subtool that ran from its copy in `{src}/` "
            "(with the `run` extra: LoadGen, torch, transformers), then run the command:",
            "",
            "```bash",
            install_command(src),
            *fetch_commands(imp),
            cmd,
            "```",
        ]
    if imp.kind == "mlc":
        return [
            "These logs were produced with MLC (mlcommons mlperf-automations); see the README MLC wrote "
            "beside them for the exact `mlcr` command."
        ]
    return [
        "These logs were produced by the submitter's own harness; its code and command belong in "
        "`src/` (v5.x: `code/`)."
    ]


ASSETS_HEADING = "## Checkpoint and data set"
_KIND_WORDS = {"model": "Checkpoint", "dataset": "Data set"}
_MAX_LISTED = 40  # files per kind; a 70B checkpoint has a few dozen shards, run.json lists every one
_ORIGINS = {
    "official": "fetched by `subtool fetch`; checksum from the official document",
    "hub": "fetched by `subtool fetch` from the Hugging Face Hub; checksum from the Hub's metadata",
    "first-download": "fetched by `subtool fetch`; no official checksum: the one recorded at its first verified "
    "download",
    "git-commit": "fetched by `subtool fetch`; checksum of the file at a pinned git commit of its repository",
}


_SHA256 = re.compile("[0-9a-f]{64}")


def _md_text(text: object, limit: int = 200) -> str:
    """`text` as one inline code span: no line break, no backtick, no control character, at most `limit` long
    (a file name comes from a manifest or a command line: it must not reshape the README)."""
    clean = "".join(c if c.isprintable() and c != "`" else "?" for c in str(text))
    return f"`{clean[:limit]}{'…' if len(clean) > limit else ''}`"


def _md_link(url: object) -> str | None:
    if isinstance(url, str) and re.fullmatch(r"https?://[^\s<>`]{1,1990}", url):
        return f"<{url}>"
    return _md_text(url) if url else None


def _asset_line(entry: dict) -> str:
    kind, origin = entry["kind"], entry.get("origin")
    name = entry.get("name") or Path(entry["path"]).name or entry["path"]
    facts = []
    if entry.get("sha256"):
        facts.append(f"sha256 `{entry['sha256']}`")
    if isinstance(entry.get("size"), int):
        facts.append(f"{entry['size']:,} bytes")
    if origin == "given":
        flag = "--model-path" if kind == "model" else "--dataset-path"
        how = f"given with `{flag}`; " + (
            "sha256 computed by subtool during the run" if entry.get("sha256") else "not verified by subtool"
        )
    else:
        how = _ORIGINS.get(str(origin), f"origin {_md_text(origin, 40)}")
    if entry.get("revision"):
        how += f", revision {_md_text(entry['revision'], 60)}"
    source = _md_link(entry.get("document"))
    if source and origin != "given":
        how += f" ({source})"
    return f"- {_KIND_WORDS[kind]} {_md_text(name)}: " + ", ".join(facts) + (" — " if facts else "") + how


def assets_section(imp: ImportedResult) -> list[str]:
    """The result README's "Checkpoint and data set": the files the run read, their sha256 and where they came
    from, from the run record (`subtool run` wrote it; a fetched file's checksum is the one fetch verified)."""
    if imp.run is None:
        return []
    if imp.demo:
        digest = imp.run.get("dataset_sha256")
        sha = f"; data set sha256 `{digest}`" if isinstance(digest, str) and _SHA256.fullmatch(digest) else ""
        return ["", ASSETS_HEADING, "", f"Generated by subtool's embedded demo (random weights){sha}."]
    entries = run_assets(imp.run)
    if not entries:
        return []
    lines = ["", ASSETS_HEADING, ""]
    for kind in _KIND_WORDS:
        mine = [e for e in entries if e["kind"] == kind]
        lines += [_asset_line(e) for e in mine[:_MAX_LISTED]]
        if len(mine) > _MAX_LISTED:
            lines.append(
                f"- … and {len(mine) - _MAX_LISTED} more {_KIND_WORDS[kind].lower()} files (run.json lists them)"
            )
    return lines


def fetch_commands(imp: ImportedResult) -> list[str]:
    """`subtool fetch MODEL` when the run read fetched files: its command names no path, and without the fetch
    it would run the embedded demo instead."""
    fetched = [e for e in run_assets(imp.run) if e.get("origin") in _ORIGINS] if imp.run and not imp.demo else []
    model = (imp.run or {}).get("model")
    return [shlex.join(["subtool", "fetch", model])] if fetched and isinstance(model, str) else []


RESULTS_HEADING = "## Results in this tree"
RESULTS_HEADINGS = (RESULTS_HEADING, "## Results packaged in this run")  # the second: trees of earlier versions


def result_line(key: ResultKey, imp: ImportedResult) -> str:
    style = "short run, not submittable" if imp.run_style == "short" else "valid run"
    return f"- {key.system} / {key.model} / {key.scenario} — {style}" + (" — DEMO" if imp.demo else "")


def src_line(key: ResultKey, imp: ImportedResult) -> str:
    cmd = reproduce_command(imp, key)
    if cmd:
        return f"- {key.model} {key.scenario}: `{cmd}`"
    return (
        f"- {key.model} {key.scenario}: produced by {_SOURCES.get(imp.kind, imp.kind)}; add the harness code "
        f"and the command you used"
    )


def add_list_items(text: str, items: list[str], headings: tuple[str, ...] = ()) -> str:
    """`text` with the list items it lacks added after the last item of its list (the one under one of
    `headings`, else the last list in the text): a file written for the first results of a tree also names the
    ones that joined later. Unchanged when nothing is missing or the list is gone (the submitter rewrote it)."""
    lines = text.splitlines()
    missing = [i for i in items if i not in lines]
    if not missing:
        return text
    start = next((n for n, line in enumerate(lines) if line.strip() in headings), None) if headings else 0
    if start is None:
        return text
    in_list = [n for n in range(start, len(lines)) if lines[n].startswith("- ")]
    if headings:  # the items right under the heading, up to the next heading
        stop = next((n for n in range(start + 1, len(lines)) if lines[n].startswith("#")), len(lines))
        in_list = [n for n in in_list if n < stop]
    if not in_list:
        return text
    last = in_list[-1]
    return "\n".join(lines[: last + 1] + missing + lines[last + 1 :]) + ("\n" if text.endswith("\n") else "")


def documentation_readme(
    submitter: str, division: str, entries: Iterable[tuple[ResultKey, ImportedResult]], *, version: str
) -> str:
    entries = list(entries)
    demo = any(imp.demo for _, imp in entries)
    lines = [f"# {submitter} — MLPerf Inference {version} ({division} division)", ""]
    if demo:
        lines += [DEMO_BANNER]
    src = layout_for(version).src_dir(division, submitter).name
    lines += [
        f"This tree was laid out by subtool {__version__}; its source is in `{src}/{SOURCE_DIR}/` (install it "
        f"from the submitter folder with `{install_command(src)}`).",
        "Each result directory has a README.md with its settings and the command that reproduces it.",
        "Untruncated accuracy logs are kept outside the submitter folders (where `subtool package` said);",
        "their sha256 is the `hash=` line of each accuracy.txt.",
        "",
        RESULTS_HEADING,
        "",
    ]
    lines += [result_line(key, imp) for key, imp in entries]
    lines += [
        "",
        "## Reproduce",
        "",
        "From the submitter folder, the one above `documentation/` (each result's README.md has its exact command):",
        "",
        "```bash",
        install_command(src),
        f"subtool all --submitter {submitter}   # or: subtool run / package / check / pack",
        "```",
        "",
    ]
    return "\n".join(lines)


def calibration_md(entries: Iterable[tuple[ResultKey, ImportedResult]], measurements: dict) -> str:
    lines = ["# Calibration", ""]
    types = sorted({str(m.get("weight_data_types", "?")) for m in measurements.values()}) or ["?"]
    low_precision = [t for t in types if any(q in t.lower() for q in ("int", "fp8", "fp4", "nf4"))]
    if low_precision:
        lines += [
            f"Weights are {', '.join(types)}. Describe the calibration/quantization procedure and data "
            f"here (the rules require it for quantized closed-division submissions)."
        ]
    else:
        lines += [f"No calibration: the weights are used as released ({', '.join(types)}), without quantization."]
    return "\n".join(lines) + "\n"


def src_readme(entries: Iterable[tuple[ResultKey, ImportedResult]], *, copied: str | None) -> str:
    entries = list(entries)
    lines = ["# Code", ""]
    if copied:
        lines += [
            f"`{copied}/` is the source of subtool {__version__}, the harness that ran the subtool results "
            f"below (LoadGen SUT, QSL and accuracy scripts included). Install it from the folder above "
            f"`src/`: `{install_command()}`.",
            "",
        ]
    lines += [src_line(key, imp) for key, imp in entries]
    return "\n".join(lines) + "\n"


def model_src_readme(model: str, entries: Iterable[tuple[ResultKey, ImportedResult]]) -> str:
    lines = [f"# {model}", ""]
    for key, imp in entries:
        cmd = reproduce_command(imp, key)
        how = f"`{cmd}`" if cmd else f"imported from {_SOURCES.get(imp.kind, imp.kind)}"
        lines.append(f"- {key.scenario} on {key.system}: {how}")
    return "\n".join(lines) + "\n"


def copy_source_tree(src: Path, dst: Path) -> int:
    """Copy a Python package without caches or dot files (the checker rejects both); returns files copied."""
    import shutil

    count = 0
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if path.is_file() and path.suffix not in (".pyc", ".pyo") and " " not in path.name:
            target = dst / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            count += 1
    return count


# ------------------------------------------------------------------------------- installable source copy
def _requirements(dist) -> tuple[list[str], dict[str, list[str]]]:
    """Requires-Dist split into the core dependencies and the extras (`; extra == "run"` markers)."""
    import re

    core: list[str] = []
    extras: dict[str, list[str]] = {name: [] for name in dist.metadata.get_all("Provides-Extra") or []}
    for spec in dist.requires or []:
        req, _, marker = (part.strip() for part in spec.partition(";"))
        found = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if found:
            rest = re.sub(r"""\s*(and\s+)?extra\s*==\s*["'][^"']+["']\s*(and\s+)?""", " ", marker).strip()
            extras.setdefault(found.group(1), []).append(f"{req}; {rest}" if rest else req)
        else:
            core.append(f"{req}; {marker}" if marker else req)
    return core, extras


def _toml_list(items: list[str]) -> str:
    import json

    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def source_pyproject(dist_name: str = "mlperf-subtool") -> str:
    """A pyproject.toml that installs the copied source as the distribution that ran (name, version, Python,
    dependencies, extras and the `subtool` command, from the installed metadata)."""
    import importlib.metadata as md
    import json

    try:
        dist = md.distribution(dist_name)
        core, extras = _requirements(dist)
        python = dist.metadata.get("Requires-Python") or ">=3.10"
        scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    except md.PackageNotFoundError:  # run from a checkout that was never installed
        core, extras, python, scripts = [], {}, ">=3.10", {"subtool": "subtool.cli:main"}
    lines = [
        "# Written by subtool from the metadata of the installation that produced this submission.",
        "[build-system]",
        'requires = ["setuptools>=68"]',
        'build-backend = "setuptools.build_meta"',
        "",
        "[project]",
        f"name = {json.dumps(dist_name)}",
        f"version = {json.dumps(__version__)}",
        'readme = "README.md"',
        f"requires-python = {json.dumps(python)}",
        f"dependencies = {_toml_list(core)}",
        "",
        "[project.optional-dependencies]",
    ]
    lines += [f"{json.dumps(name)} = {_toml_list(reqs)}" for name, reqs in sorted(extras.items())]
    lines += ["", "[project.scripts]"] + [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in sorted(scripts.items())]
    lines += [
        "",
        "[tool.setuptools.packages.find]",
        'include = ["subtool*"]',
        "",
        "[tool.setuptools.package-data]",
        '"*" = ["*.json", "*.toml", "*.md"]',
        "",
    ]
    return "\n".join(lines)


def source_readme() -> str:
    return (
        f"# subtool {__version__}\n\nThe source of the subtool that produced this submission. Install it with "
        f"the `run` extra to re-run the benchmark: `pip install './{SOURCE_DIR}[run]'` from the folder above "
        f"this one.\n"
    )
