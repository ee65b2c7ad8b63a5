"""Which benchmark a result is filed as in the round it is packaged for, when the round does not list its own.

A round may keep only one accuracy variant of a model: v6.1 lists llama2-70b-99.9 and no longer llama2-70b-99.
Both are the same LoadGen model on the same data set and differ only in the accuracy target, so a -99 result
can still be handed in to the open division, in a folder of its own name that model_mapping.json files as the
variant the round knows. The closed division reads no model_mapping.json: there the result must be run as the
listed variant, or packaged for a round that lists it.

A benchmark the default round does not know at all (gptj, last run in v5.0) goes, unless --version says
otherwise, to the newest round that lists it: choose_round and its tree and run-directory forms decide that for
`subtool all` and the stage commands, and the runner then gives LoadGen that round's RNG seeds.

A submission tree also shows its generation of rounds: v5.x trees keep measurements/ and compliance/ beside
results/, v6.x trees keep src/ (layout.GENERATION_FOLDERS). Checked or packed without --version, a tree that
shows only the v5 layout is taken for the latest v5.x round (said in one line), since every v6.x round would fail
it on its folders; --version always wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.mlperf.benchmarks import BENCHMARKS, Benchmark, benchmark
from subtool.mlperf.layout import DIVISIONS, GENERATION_FOLDERS, generation_of, generation_rounds, subdirs
from subtool.mlperf.rounds import DEFAULT_VERSION, VERSIONS, check_version


def _listed(name: str, version: str, mapping: Mapping[str, str] | None = None) -> bool:
    """`version` lists `name`, itself or through a model_mapping.json entry."""
    from subtool.mlperf.round import round_config

    rules = round_config(version)
    return rules.model(rules.resolve(name, mapping)) is not None


def stand_in(bench: Benchmark, version: str) -> Benchmark | None:
    """The variant of `bench` that `version` lists instead of it (None when it lists `bench`, or no variant)."""
    if _listed(bench.name, version):
        return None
    for other in BENCHMARKS.values():
        if other.conf_name == bench.conf_name and other.name != bench.name and _listed(other.name, version):
            return other
    return None


def rounds_listing(name: str) -> list[str]:
    """The rounds that list `name`, oldest first."""

    return [v for v in VERSIONS if _listed(name, v)]


def refuse_closed(bench: Benchmark, version: str, *, path=None) -> None:
    """A closed-division result of a benchmark the round replaced by a variant: one line saying what to use."""
    other = stand_in(bench, version)
    if other is None:
        return
    older = rounds_listing(bench.name)
    raise SubtoolError(
        f"{bench.name} is not a {version} benchmark ({version} lists {other.name}: the same model and data set "
        f"with its own accuracy target), and the closed division cannot file one as the other",
        path=path,
        rule="package.model_not_in_round",
        hint=f"run --model {other.name} for the closed division, or use --division open (model_mapping.json "
        f"files it as {other.name})"
        + (f", or --version {older[-1]} for run and package (the run then uses that round's seeds)" if older else ""),
    )


def filed_as(bench: Benchmark, version: str, division: str, *, path=None) -> Benchmark:
    """The benchmark a result of `bench` is filed as in `version`: itself, or (open division) its stand-in."""
    if division != "open":
        refuse_closed(bench, version, path=path)
        return bench
    return stand_in(bench, version) or bench


# ------------------------------------------------------------------------------------ choosing the round
@dataclass(frozen=True)
class RoundChoice:
    """The round a command works for, and why, when it is not the one the user gave or the default."""

    version: str
    reason: str | None = None  # None: given with --version, or the default round fits


def _fits(name: str, version: str, mapping: Mapping[str, str] | None = None) -> bool:
    """`version` takes `name`: it lists it, files it through model_mapping.json, or lists a variant of it (the
    open division files that one; the closed division refuses it with a hint, see refuse_closed)."""
    if _listed(name, version, mapping):
        return True
    bench = benchmark(name)
    return bench is not None and stand_in(bench, version) is not None


@dataclass(frozen=True)
class TreeGeneration:
    """The layout generation a tree shows (subtool.mlperf.layout.GENERATION_FOLDERS), and where."""

    name: str  # "v5" | "v6"
    submitter: str  # the first submitter folder that shows it, e.g. closed/TeamX
    folders: tuple[str, ...]  # the folders there that show it

    def reason(self, rounds: tuple[str, ...]) -> str:
        shown = ", ".join(f"{f}/" for f in self.folders)
        where = f"{self.submitter} holds {shown}"
        return f"the tree is laid out for {', '.join(rounds)} ({where}); {rounds[-1]} is the latest of them"


def choose_round(
    models: Iterable[str],
    version: str | None,
    *,
    mapping: Mapping[str, str] | None = None,
    generation: TreeGeneration | None = None,
) -> RoundChoice:
    """--version when given; else the default round, unless the tree's layout belongs to older rounds (then the
    latest of those), or the round does not know one of `models` (gptj-99 left after v5.0): then the newest
    round of that layout that lists them all. None of them anywhere: that layout's latest (the checker says why)."""

    if version is not None:
        return RoundChoice(check_version(version))  # refused here, before any stage starts (round.unknown)
    rounds = generation_rounds(generation.name) if generation is not None else VERSIONS
    latest = DEFAULT_VERSION if DEFAULT_VERSION in rounds else rounds[-1]
    said = [generation.reason(rounds)] if latest != DEFAULT_VERSION and generation is not None else []
    names = sorted(set(models))
    strangers = [n for n in names if not _fits(n, latest, mapping)]
    older = next((v for v in reversed(rounds) if v != latest and all(_listed(n, v, mapping) for n in names)), None)
    if strangers and older is not None:
        said.append(
            f"{', '.join(strangers)} {'is' if len(strangers) == 1 else 'are'} not in the {latest} model list; "
            f"{older} is the latest {'such ' if said else ''}round that lists "
            f"{'it' if len(names) == 1 else 'them all'}"
        )
        latest = older
    return RoundChoice(latest, "; ".join(said) + " (--version chooses another)" if said else None)


def announce(choice: RoundChoice, console) -> RoundChoice:
    """One line on `console` when subtool chose the round (not given, not the default): which, and why."""
    if choice.reason:
        from rich.markup import escape

        console.print(f"[cyan]round {choice.version}[/]: {escape(choice.reason)}", highlight=False, soft_wrap=True)
    return choice


def tree_models(tree: Path) -> tuple[list[str], dict[str, str]]:
    """The model folders of a submission tree (<division>/<submitter>/results/<system>/<model>) and the
    model_mapping.json entries of its submitters."""
    from subtool.mlperf.logs import read_json_object

    models: set[str] = set()
    mapping: dict[str, str] = {}
    for results in Path(tree).glob("*/*/results"):
        if results.parts[-3] not in DIVISIONS or not results.is_dir():
            continue
        models.update(p.name for p in results.glob("*/*") if p.is_dir())
        loaded, _problem = read_json_object(results.parent / "model_mapping.json")  # the checker reports it
        if loaded is not None:
            mapping.update({k: v for k, v in loaded.items() if isinstance(v, str)})
    return sorted(models), mapping


def tree_generation(tree: Path) -> TreeGeneration | None:
    """The layout generation the tree's submitter folders show, when those that show one agree (a submitter
    folder holding both generations' folders shows none)."""
    seen: dict[str, TreeGeneration] = {}
    for division in DIVISIONS:
        for submitter in subdirs(Path(tree) / division):
            folders = subdirs(Path(tree) / division / submitter)
            gen = generation_of(folders)
            if gen is not None and gen not in seen:
                own = tuple(f for f in GENERATION_FOLDERS[gen] if f in folders)
                seen[gen] = TreeGeneration(gen, f"{division}/{submitter}", own)
    return next(iter(seen.values())) if len(seen) == 1 else None


def choose_round_for_tree(tree: Path, version: str | None) -> RoundChoice:
    """The round a submission tree is checked or packed under: --version, else the one its layout and its models
    point to."""
    if version is not None:
        return RoundChoice(check_version(version))  # refused here, before any stage starts (round.unknown)
    models, mapping = tree_models(tree)
    return choose_round(models, None, mapping=mapping, generation=tree_generation(tree))


def choose_round_for_runs(
    run_dirs: Iterable[Path], models: Iterable[str], version: str | None, *, tree: Path | None = None
) -> RoundChoice:
    """The round results are packaged for: --version, else the round whose LoadGen seeds every run was made with
    (run.json's seeds.round, where it fits their benchmarks and the layout `tree` already shows), else the one
    their benchmarks point to (each run directory's run.json names its benchmark; loose logs name theirs with
    --model), among the rounds of the layout that `tree` (the tree packaged into, when it exists) already shows."""
    if version is not None:
        return RoundChoice(check_version(version))  # refused here, before any stage starts (round.unknown)
    names, seeded = _runs_benchmarks_and_round(run_dirs)
    names += [m for m in models if m]
    generation = tree_generation(tree) if tree is not None else None
    if seeded is not None and all(_fits(n, seeded) for n in names):
        if generation is None or seeded in generation_rounds(generation.name):
            said = f"the runs were made with {seeded}'s LoadGen seeds (run.json) (--version chooses another)"
            return RoundChoice(seeded, None if seeded == DEFAULT_VERSION else said)
    return choose_round(names, None, generation=generation)


def _runs_benchmarks_and_round(run_dirs: Iterable[Path]) -> tuple[list[str], str | None]:
    """The benchmarks the run directories' run.json name, and the round whose seeds they all ran with (None when
    one has no run.json, records no such round, or they differ: package's checker then says which is which)."""
    from subtool.mlperf.run_record import load_run_record

    names: list[str] = []
    rounds: set[str | None] = set()
    for run_dir in run_dirs:
        record, _problem = load_run_record(Path(run_dir) / "run.json")  # none: the importer says what it is
        record = record if isinstance(record, dict) else {}
        if isinstance(record.get("model"), str):
            names.append(record["model"])
        seeds = record.get("seeds")
        seeded = seeds.get("round") if isinstance(seeds, dict) else None
        rounds.add(seeded if seeded in VERSIONS else None)
    return names, (next(iter(rounds)) if len(rounds) == 1 else None)
