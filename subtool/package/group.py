"""Build one `<division>/<submitter>` directory inside its staging root: replace the results asked for, add the
system descriptions, write the results (several at once), merge model_mapping.json, and write the documents."""

from __future__ import annotations

import contextvars
import json
import os
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.mlperf.layout import Layout, ResultKey
from subtool.package import documents
from subtool.package.records import PackagedResult, PackageResult, Planned
from subtool.package.results import WrittenResult, write_result
from subtool.package.staging import remove_empty_dirs, write_text
from subtool.package.system import SystemDescription
from subtool.package.system_merge import stage_system

FILE_SIZE_LIMIT = 50 * 1024 * 1024  # the official checker's per-file limit
MAX_PARALLEL_RESULTS = 4


@dataclass
class Group:
    """One submitter directory being staged, and what the user asked for it."""

    root: Path  # the staging root; the tree's `<division>/<submitter>` is below it
    layout: Layout
    division: str
    submitter: str
    out: Path  # the tree the user named (for paths in messages and results)
    full_logs: Path
    force: bool
    system_file: Path | None
    result: PackageResult


def stage_group(
    group: Group,
    items: list[Planned],
    descriptions: dict[tuple[str, str], SystemDescription],
    confirm: Callable[[str], bool] | None,
    durable: list[Path],
) -> None:
    """Build `<root>/<division>/<submitter>` (a linked copy of the current one) with the new results."""
    replaced = _clear_replaced(group, items, confirm)
    _stage_systems(group, items, descriptions)
    written = _write_results(group, items)
    for p, w in zip(items, written):
        durable += w.outside
        group.result.results.append(_packaged(group, p, replaced=p.key in replaced))
    _merge_model_mapping(group, items)
    write_documents(group.root, group.layout, group.division, group.submitter, items)
    _tidy_and_measure(group, items)


def _clear_replaced(group: Group, items: list[Planned], confirm: Callable[[str], bool] | None) -> set[ResultKey]:
    """Remove the results these replace: only with --force or a yes."""
    root, layout = group.root, group.layout
    existing = [p for p in items if any((root / d).exists() for d in layout.owned_dirs(p.key))]
    if existing and not group.force:
        labels = [p.key.label() for p in existing]
        if not _confirm_replace(labels, confirm):
            raise SubtoolError(
                f"the tree already has {', '.join(labels)}; nothing was changed",
                path=group.out,
                rule="package.result_exists",
                hint="pass --force to replace it (other results are kept)",
            )
    for p in existing:
        for d in layout.owned_dirs(p.key):
            if (root / d).is_dir():
                shutil.rmtree(root / d)
    return {p.key for p in existing}


def _confirm_replace(labels: list[str], confirm: Callable[[str], bool] | None) -> bool:
    if confirm is None and sys.stdin is not None and sys.stdin.isatty() and sys.stderr.isatty():
        from rich.prompt import Confirm

        def confirm(question: str) -> bool:  # noqa: E306
            return Confirm.ask(question, default=False)

    if confirm is None:
        return False
    return bool(confirm(f"Replace {len(labels)} result(s) already in the tree ({', '.join(labels)})?"))


def _stage_systems(group: Group, items: list[Planned], descriptions: dict) -> None:
    """System descriptions of this division's results: never silently overwrite one that is there."""
    for (div, system), desc in descriptions.items():
        if div != group.division or not any(p.key.system == system for p in items):
            continue
        rel = group.layout.system_json(group.division, group.submitter, system)
        group.result.notes += stage_system(
            group.root, rel, desc, out=group.out, system_file=group.system_file, force=group.force
        )
        group.result.systems.append(group.out / rel)


def _write_results(group: Group, items: list[Planned]) -> list[WrittenResult]:
    """SHA-256 is the bottleneck (one core per log), so several results are hashed at once."""

    def write_one(p: Planned) -> WrittenResult:
        readme = documents.result_readme(p.key, p.imp, version=group.layout.version, accuracy_line=p.accuracy_line)
        return write_result(
            group.root,
            group.layout,
            p.key,
            p.imp,
            accuracy_txt=p.accuracy_txt,
            measurements=p.measurements,
            readme=readme,
            user_conf_text=p.user_conf_text,
            full_logs=group.full_logs,
        )

    workers = max(1, min(len(items), os.cpu_count() or 1, MAX_PARALLEL_RESULTS))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # each in a copy of this context: the kept full logs wait for the swap (truncate.deferred_keeps)
        futures = [pool.submit(contextvars.copy_context().run, write_one, p) for p in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            _finish_running(futures)
            raise


def _finish_running(futures) -> None:
    """Wait until no worker writes any more, even through another Ctrl-C: the caller then removes the staging
    folder, and a worker still writing would make it again (found: a second interrupt inside the pool's own
    join left a half-written staging folder behind)."""
    import concurrent.futures

    while True:
        try:
            concurrent.futures.wait(futures)
            return
        except KeyboardInterrupt:
            continue


def _packaged(group: Group, p: Planned, *, replaced: bool) -> PackagedResult:
    return PackagedResult(
        division=group.division,
        submitter=group.submitter,
        system=p.key.system,
        model=p.key.model,
        scenario=p.key.scenario,
        path=group.out / group.layout.result_dir(p.key),
        run_style=p.imp.run_style,
        demo=p.imp.demo,
        benchmark=p.imp.bench.name,
        source=str(p.imp.source),
        replaced=replaced,
        notes=list(p.imp.notes),
    )


def _merge_model_mapping(group: Group, items: list[Planned]) -> None:
    """Open division: custom model names → official benchmarks, added to the mapping already there."""
    custom = {p.key.model: p.imp.bench.name for p in items if p.imp.custom_model}
    if not custom:
        return
    rel = group.layout.model_mapping(group.division, group.submitter)
    target = group.root / rel
    mapping = json.loads(target.read_text(encoding="utf-8")) if target.exists() else {}
    for name, official in custom.items():
        if mapping.get(name, official) != official:
            raise SubtoolError(
                f"model_mapping.json maps {name} to {mapping[name]}, not {official}; nothing was changed",
                path=group.out / rel,
                rule="package.model_mapping_conflict",
                hint="use another custom model name",
            )
        mapping[name] = official
    write_text(target, json.dumps(mapping, indent=2, sort_keys=True) + "\n")


def _tidy_and_measure(group: Group, items: list[Planned]) -> None:
    """Drop the empty directories the checker rejects; note the files it would reject as too large."""
    root = group.root
    for p in items:
        for d in group.layout.owned_dirs(p.key):
            remove_empty_dirs(root / d)
            for f in (root / d).rglob("*") if (root / d).is_dir() else []:
                if f.is_file() and f.stat().st_size > FILE_SIZE_LIMIT:
                    group.result.notes.append(
                        f"{f.relative_to(root)} is {f.stat().st_size / 1e6:.0f} MB; the "
                        f"official checker rejects files over 50 MB"
                    )


def _add_lines(path: Path, items: list[str], headings: tuple[str, ...] = ()) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return  # not ours to repair: the checker reads the tree as it is
    updated = documents.add_list_items(text, items, headings)
    if updated != text:
        write_text(path, updated)


def write_documents(root: Path, layout: Layout, division: str, submitter: str, items: list[Planned]) -> None:
    """documentation/ and src/ (code/): written when missing, never overwritten (the submitter may edit them)."""
    entries = [(p.key, p.imp) for p in items]
    doc = root / layout.documentation_dir(division, submitter)
    if not (doc / "README.md").exists():
        write_text(
            doc / "README.md", documents.documentation_readme(submitter, division, entries, version=layout.version)
        )
    else:  # results joining a tree: listed too (the rest of the file is the submitter's)
        _add_lines(doc / "README.md", [documents.result_line(k, i) for k, i in entries], documents.RESULTS_HEADINGS)
    if not (doc / "calibration.md").exists():
        write_text(doc / "calibration.md", documents.calibration_md(entries, {p.key: p.measurements for p in items}))
    _write_src(root / layout.src_dir(division, submitter), items, entries)


def _write_src(src: Path, items: list[Planned], entries: list) -> None:
    copied = None
    if any(p.imp.kind == "run_dir" for p in items):
        import subtool

        copied = documents.SOURCE_DIR
        if not (src / copied).exists():
            documents.copy_source_tree(Path(subtool.__file__).parent, src / copied / "subtool")
        # an installable project: `pip install './src/subtool-<version>[run]'` works from the tree alone
        for name, text in (("pyproject.toml", documents.source_pyproject()), ("README.md", documents.source_readme())):
            if not (src / copied / name).exists():
                write_text(src / copied / name, text)
    if not (src / "README.md").exists():
        write_text(src / "README.md", documents.src_readme(entries, copied=copied))
    else:
        _add_lines(src / "README.md", [documents.src_line(k, i) for k, i in entries])
    for model in sorted({p.key.model for p in items}):
        target = src / model / "README.md"
        if not target.exists():
            write_text(target, documents.model_src_readme(model, [e for e in entries if e[0].model == model]))
