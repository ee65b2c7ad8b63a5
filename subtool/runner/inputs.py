"""What a run reads: the checkpoint and the data set the user gave, the ones `subtool fetch` installed, or the
embedded demo's. Decided once (`resolve_inputs`, called by the run stage's `decide` and by `subtool all` before
it picks the division), said in one line per file, and recorded in run.json's `assets` (`assets_record`).

- both paths given: those; --demo: the demo (never with a path);
- neither given: the fetched model and data set when both are installed (a closed-eligible run), an error that
  names the `subtool fetch` command when only one is, else the embedded demo (open division only);
- one given: the other one fetched, else an error.

"Fetched" means installed in the cache (fsutil.cache_root()), or with `--assets DIR` under DIR, where
`subtool fetch --to DIR` installed them (nothing there is an error then, never the demo).

A fetched file's checksum is the manifest's (fetch verified it; a checkpoint is never re-hashed here). The data
set is small next to a run: a fetched one is hashed again before the run (a file changed since the fetch is
refused by name), and the run's own hash of it must match the manifest too.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

from subtool.errors import SubtoolError, os_error
from subtool.fetch.store import Installed, InstalledFile, asset_dir, installed
from subtool.fsutil import wrong_kind
from subtool.mlperf.run_record import NOT_VERIFIED

VERIFY_LIMIT = 1 << 30  # a fetched data set file at most this large is hashed again before the run
_WORDS = {"model": "checkpoint", "dataset": "data set"}
_FLAGS = {"model": "--model-path", "dataset": "--dataset-path"}


@dataclass(frozen=True)
class RunInputs:
    """What `resolve_inputs` decided: the demo, or the paths with the assets fetch installed behind them."""

    demo: bool
    model: Installed | None = None  # the fetched checkpoint, when the run uses it
    dataset: Installed | None = None  # the fetched data set, when the run uses it


def resolve_inputs(opts, say):
    """`opts` (RunOptions) with its paths decided and `inputs` set; unchanged when already decided."""
    if opts.inputs is not None:
        return opts
    given = {"model": opts.model_path, "dataset": opts.dataset_path}
    cache = _assets_dir(opts, given)
    if opts.demo:
        if any(given.values()):
            raise SubtoolError("--demo runs the embedded demo: drop --model-path/--dataset-path", rule="run.inputs")
        return dataclasses.replace(opts, inputs=RunInputs(demo=True))
    if all(given.values()):
        return dataclasses.replace(opts, inputs=RunInputs(demo=False))
    found = {kind: installed(opts.model, kind, cache=cache) for kind, path in given.items() if path is None}
    if not any(given.values()) and not any(found.values()):
        if cache is not None:
            raise _nothing_there(opts.model, cache)
        _say_nothing_fetched(opts.model, say)
        return dataclasses.replace(opts, inputs=RunInputs(demo=True))
    missing = [kind for kind, asset in found.items() if asset is None]
    if missing:
        raise _missing_error(opts.model, missing[0], given, cache)
    if found.get("dataset") is not None:
        _verify_dataset(found["dataset"])
    for asset in found.values():
        say(describe(asset), soft_wrap=True)  # a path stays whole, for copying
    model, dataset = found.get("model"), found.get("dataset")
    return dataclasses.replace(
        opts,
        model_path=model.run_path if model else opts.model_path,
        dataset_path=dataset.run_path if dataset else opts.dataset_path,
        inputs=RunInputs(demo=False, model=model, dataset=dataset),
    )


def _assets_dir(opts, given: dict) -> Path | None:
    """--assets DIR: where `subtool fetch --to DIR` installed (DIR/assets/<model>/<kind>/); None: the cache."""
    cache = getattr(opts, "assets", None)
    if cache is None:
        return None
    if opts.demo or all(given.values()):
        what = "--demo runs the embedded demo" if opts.demo else "--model-path and --dataset-path name the files"
        raise SubtoolError(f"{what}: drop --assets (where fetched files are)", rule="run.inputs")
    if not Path(cache).is_dir():
        raise SubtoolError(f"--assets {wrong_kind(cache)}: it takes a folder", path=cache, rule="run.inputs")
    return Path(cache)


def _nothing_there(model: str, cache: Path) -> SubtoolError:
    return SubtoolError(
        f"--assets: nothing fetched there for {model} (no {asset_dir(model, 'model', cache).relative_to(cache)} "
        "or dataset folder with its MANIFEST.json)",
        path=cache,
        rule="run.inputs",
        hint=f"`subtool fetch {model} --to {cache}` installs them there",
    )


def _say_nothing_fetched(model: str, say) -> None:
    from subtool.mlperf.assets import assets_for

    kinds = {a.kind for a in assets_for(model)}
    if kinds:
        what = "the official checkpoint and data set" if kinds == {"model", "dataset"} else "the official checkpoint"
        say(f"nothing fetched for {model} (`subtool fetch {model}` gets {what})")


def _missing_error(model: str, kind: str, given: dict, cache: Path | None = None) -> SubtoolError:
    """Neither path given and only one of the two fetched; or one path given and the other one not fetched."""
    from subtool.mlperf.assets import not_served

    only = "--dataset-only" if kind == "dataset" else "--model-only"
    fetch = f"`subtool fetch {model} {only}`"
    why = not_served(model, kind)
    if why is not None:  # no fetch would get it: say what will
        return SubtoolError(
            f"{_FLAGS[kind]} is missing ({_WORDS[kind]} for {model}): {why}",
            path=asset_dir(model, kind, cache) if not any(given.values()) else None,
            rule="run.inputs",
        )
    if any(given.values()):
        return SubtoolError(
            f"{_FLAGS[kind]} is missing: give both --model-path and --dataset-path, or neither for the embedded demo",
            rule="run.inputs",
            hint=f"or fetch the official {_WORDS[kind]}: {fetch}",
        )
    other = "dataset" if kind == "model" else "model"
    return SubtoolError(
        f"the {_WORDS[other]} is fetched but not the {_WORDS[kind]}: run {fetch}, give {_FLAGS[kind]}, "
        f"or --demo for the embedded demo",
        path=asset_dir(model, kind, cache),
        rule="run.inputs",
    )


def _escape(text: object) -> str:
    from rich.markup import escape

    return escape(str(text))


def _main_file(asset: Installed) -> InstalledFile | None:
    """The manifest's entry for the run path when it is a file (a data set), else None (a checkpoint folder)."""
    rel = str(asset.run_path.relative_to(asset.root)) if asset.run_path != asset.root else "."
    return next((f for f in asset.files if f.name == rel), None)


def describe(asset: Installed) -> str:
    """One line: which fetched folder or file the run reads, with its short sha256 (or its files')."""
    main = _main_file(asset)
    if main is not None:
        sums = f"sha256 {main.sha256[:12]}"
    else:
        biggest = sorted(asset.files, key=lambda f: -f.size)
        sums = f"{len(asset.files)} files: " + ", ".join(f"{f.name} {f.sha256[:12]}" for f in biggest[:3])
        sums += f", +{len(biggest) - 3} more" if len(biggest) > 3 else ""
    return f"{_WORDS[asset.kind]}: {_escape(asset.run_path)} (fetched; {_escape(sums)})"


def _verify_dataset(asset: Installed) -> None:
    """A fetched data set file hashed again (cheap next to a run): refused by name when it changed."""
    main = _main_file(asset)
    if main is None or main.size > VERIFY_LIMIT:
        return
    h = hashlib.sha256()
    try:
        with open(asset.run_path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    except OSError as exc:
        raise os_error(exc, action="cannot read the fetched data set", path=asset.run_path) from None
    _check_same(asset, main, h.hexdigest())


def _check_same(asset: Installed, main: InstalledFile, digest: str) -> None:
    if digest != main.sha256:
        raise SubtoolError(
            f"the data set changed since `subtool fetch` installed it (sha256 {digest[:12]}, installed "
            f"{main.sha256[:12]})",
            path=asset.run_path,
            rule="run.asset_changed",
            hint=f"fetch it again: `subtool fetch {asset.benchmark} --dataset-only`",
        )


def check_run_hash(inputs: RunInputs | None, dataset_sha256: str | None) -> None:
    """The run's own hash of the data set it read must be the fetched file's (a file swapped during the run)."""
    main = _main_file(inputs.dataset) if inputs and inputs.dataset else None
    if main is not None and dataset_sha256:
        _check_same(inputs.dataset, main, dataset_sha256)


def assets_record(inputs: RunInputs | None, model_path, dataset_path, dataset_sha256: str | None) -> list[dict]:
    """run.json "assets": every fetched file with the manifest's checksum and where it came from; a given path
    with the run's own hash of the data set, and a given checkpoint unverified. [] for the demo."""
    inputs = inputs if inputs is not None else RunInputs(demo=model_path is None and dataset_path is None)
    if inputs.demo:
        return []
    out: list[dict] = []
    for kind, asset, path in (("model", inputs.model, model_path), ("dataset", inputs.dataset, dataset_path)):
        if asset is not None:
            out += [_fetched(asset, f) for f in asset.files]
        elif path is not None:
            out.append(_given(kind, Path(path), dataset_sha256 if kind == "dataset" else None))
    return out


def _fetched(asset: Installed, f: InstalledFile) -> dict:
    return {
        "kind": asset.kind,
        "name": f.name,
        "path": str(asset.root / f.name),
        "sha256": f.sha256,
        "size": f.size,
        "origin": f.origin,
        "document": asset.document or None,
        "revision": asset.revision,
    }


def _given(kind: str, path: Path, sha256: str | None) -> dict:
    entry = {"kind": kind, "name": path.name, "path": str(path), "sha256": sha256, "origin": "given"}
    if kind == "dataset" and sha256:
        try:
            entry["size"] = path.stat().st_size
        except OSError:
            pass
    else:
        entry["note"] = NOT_VERIFIED
    return entry
