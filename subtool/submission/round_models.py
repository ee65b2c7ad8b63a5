"""Which benchmark a result is filed as in the round it is packaged for, when the round does not list its own.

A round may keep only one accuracy variant of a model: v6.1 lists llama2-70b-99.9 and no longer llama2-70b-99.
Both are the same LoadGen model on the same data set and differ only in the accuracy target, so a -99 result
can still be handed in to the open division, in a folder of its own name that model_mapping.json files as the
variant the round knows. The closed division reads no model_mapping.json: there the result must be run as the
listed variant, or packaged for a round that lists it.
"""

from __future__ import annotations

from subtool.errors import SubtoolError
from subtool.submission.models import BENCHMARKS, Benchmark


def _listed(name: str, version: str) -> bool:
    from subtool.checker.config import round_config

    rules = round_config(version)
    return rules.model(rules.resolve(name)) is not None


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
    from subtool.checker.config import VERSIONS

    return [v for v in VERSIONS if _listed(name, v)]


def refuse_closed(bench: Benchmark, version: str, *, path=None) -> None:
    """A closed-division result of a benchmark the round replaced by a variant: one line saying what to use."""
    other = stand_in(bench, version)
    if other is None:
        return
    older = rounds_listing(bench.name)
    raise SubtoolError(
        f"{bench.name} is not a {version} benchmark ({version} lists {other.name}: the same model and data set "
        f"with its own accuracy target), and the closed division cannot file one as the other", path=path,
        rule="package.model_not_in_round",
        hint=f"run --model {other.name} for the closed division, or use --division open (model_mapping.json "
             f"files it as {other.name})"
             + (f", or --version {older[-1]} with runs of that round's LoadGen" if older else ""))


def filed_as(bench: Benchmark, version: str, division: str, *, path=None) -> Benchmark:
    """The benchmark a result of `bench` is filed as in `version`: itself, or (open division) its stand-in."""
    if division != "open":
        refuse_closed(bench, version, path=path)
        return bench
    return stand_in(bench, version) or bench
