"""Per benchmark folder: is the benchmark known to the round, and (closed/network) are its scenarios complete?"""

from __future__ import annotations

from subtool.checker.findings import Collector
from subtool.checker.registry import define
from subtool.mlperf.round import SCENARIO_BY_LOWER, RoundConfig, round_config
from subtool.mlperf.rounds import VERSIONS

UNKNOWN_MODEL = define(
    "model.unknown",
    "error",
    "The model folder names no benchmark of the round (directly, by alias, or through the open division's "
    "model_mapping.json).",
    "crashes with a traceback in the closed division (TypeError in lower_list); fails the result in open",
)
MAPPING_INVALID = define(
    "model.mapping_invalid",
    "error",
    "open/<submitter>/model_mapping.json is not a JSON object of folder name → benchmark name.",
    "crashes with a traceback",
)
NOT_FOR_SYSTEM_TYPE = define(
    "scenario.not_for_system_type",
    "error",
    "The benchmark has no required scenarios for the system's type in this round (e.g. bert-99 on a "
    "datacenter-only system).",
    "crashes with a traceback (TypeError in lower_list)",
)
MISSING_REQUIRED = define(
    "scenario.missing_required",
    "error",
    "A closed/network benchmark lacks a required scenario (or one of Server/Interactive where the round asks "
    "for either); every result of the benchmark fails.",
    "'does not have all required scenarios', fails every scenario of the benchmark",
)
EMPTY_BENCHMARK = define(
    "scenario.empty_benchmark",
    "warning",
    "A benchmark folder with no scenario folder in it: it holds no result, so nothing in it is checked.",
    "skips it: a folder without scenario folders yields no result to check",
)
SCENARIO_SPELLING = define(
    "scenario.spelling",
    "error",
    "A scenario folder spelled neither as LoadGen names the scenario (Offline, SingleStream, …) nor in lowercase "
    "(OFFLINE, Singlestream): the results table has no unit for it.",
    "crashes with a traceback (KeyError in its units table) on the result's summary row",
)
UNKNOWN_SCENARIO = define(
    "scenario.unknown",
    "error",
    "A scenario folder the benchmark does not have in this round (closed/network).",
    "'has all unknown scenarios', fails every scenario of the benchmark",
)


def check_benchmark(
    cfg: RoundConfig,
    division: str,
    model_rel: str,
    folder: str,
    mlperf_model: str,
    system_type: object,
    scenario_dirs: list[str],
    out: Collector,
    generation: str | None = None,
) -> bool:
    """Findings for one model folder; returns False when its results cannot be checked at all. `generation`: the
    layout the submitter folder shows (a hint names only a round of that layout)."""
    if not scenario_dirs:
        out.add(EMPTY_BENCHMARK, model_rel, f"'{folder}' holds no scenario folder", "remove the empty folder")
        return False
    _spelling(model_rel, scenario_dirs, out)
    rules = cfg.model(mlperf_model)
    if rules is None:
        via = f" (resolved to '{mlperf_model}')" if mlperf_model != folder else ""
        hint = _other_rounds(cfg, mlperf_model, generation or cfg.layout.name)
        hint += "use an official benchmark name as the folder name: " + ", ".join(cfg.model_names)
        if division == "open":
            hint += "; or map the folder to one in open/<submitter>/model_mapping.json"
        out.add(UNKNOWN_MODEL, model_rel, f"'{folder}'{via} is not a {cfg.version} benchmark", hint)
        return False
    if division not in ("closed", "network") or not isinstance(system_type, str):
        return True
    pair = rules.scenarios(system_type)
    if pair is None or pair[0] is None:
        out.add(
            NOT_FOR_SYSTEM_TYPE,
            model_rel,
            f"{mlperf_model} is not a {system_type} benchmark in {cfg.version}",
            "fix system_type in the system description, or submit this benchmark in the open division",
        )
        return True
    required = [s.lower() for s in pair[0]]
    optional = [s.lower() for s in pair[1]]
    present = {s.lower() for s in scenario_dirs}
    missing = [s for s in pair[0] if s.lower() not in present]
    if {"interactive", "server"} <= set(optional) and not ({"interactive", "server"} & present):
        missing.append("Server or Interactive")
    unknown = [s for s in scenario_dirs if s.lower() not in set(required) | set(optional)]
    if missing:
        out.add(
            MISSING_REQUIRED,
            model_rel,
            f"{system_type} {mlperf_model} needs {', '.join(missing)} (found: {', '.join(scenario_dirs) or 'none'})",
            "run and package the missing scenarios, or submit in the open division",
        )
    if unknown:
        out.add(
            UNKNOWN_SCENARIO,
            model_rel,
            f"{', '.join(unknown)} is not a scenario of {mlperf_model} for {system_type} systems in {cfg.version}",
            "remove the folder or fix its name",
        )
    return True


def _other_rounds(cfg: RoundConfig, mlperf_model: str, generation: str) -> str:
    """The start of model.unknown's hint: the rounds that list the benchmark, and the latest of them whose trees
    are laid out as this one is (an older layout's round fails the tree on its folders)."""
    elsewhere = [v for v in VERSIONS if v != cfg.version and round_config(v).model(mlperf_model) is not None]
    if not elsewhere:
        return ""
    fitting = [v for v in elsewhere if round_config(v).layout.name == generation]
    if fitting:
        return f"{mlperf_model} is a benchmark of {', '.join(elsewhere)}: check with --version {fitting[-1]}; or "
    return (
        f"{mlperf_model} is a benchmark of {', '.join(elsewhere)} only, whose trees are not laid out as this "
        f"{generation} one is; "
    )


def _spelling(model_rel: str, scenario_dirs: list[str], out: Collector) -> None:
    for folder in scenario_dirs:
        canonical = SCENARIO_BY_LOWER.get(folder.lower())
        if canonical is not None and folder not in (canonical, canonical.lower()):
            out.add(
                SCENARIO_SPELLING,
                f"{model_rel}/{folder}",
                f"scenario folder '{folder}' is spelled neither {canonical} nor {canonical.lower()}",
                f"rename it {canonical}",
            )
