"""The import rules of docs/architecture.md, read from the source: every module of subtool/ parsed with `ast`,
every import counted, at module level and inside functions (a lazy import is still an edge: it runs sooner or
later, and a circle through it breaks as soon as both ends load in another order).

The rules:
  (a) no import circle among subtool's modules;
  (b) a stage imports another stage only along a declared edge (DECLARED_EDGES); only cli.py and pipeline.py
      import across stages otherwise; no stage (nor mlperf/ or a shared module) imports cli.py or pipeline.py;
  (c) mlperf/ imports nothing of subtool's but itself, errors.py, fsutil.py and schemas/;
  (d) the stages that run no model never import torch, transformers or LoadGen, directly or through another of
      subtool's modules.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "subtool"
STAGES = ("runner", "package", "checker", "pack", "publish", "scoring", "fetch", "ci")
DECLARED_EDGES = {
    ("pack", "checker"),  # pack --verify and the summary re-check the tree
    ("scoring", "checker"),  # score re-checks each hand-in
    ("scoring", "pack"),  # score reads hand-ins the way pack writes them (safe extraction, manifest)
    ("ci", "checker"),  # ci checks the submitters a pull request changes
    ("runner", "fetch"),  # run finds the checkpoints and data sets that fetch installed (fetch.store)
}
# the only modules that sequence stages: the CLI (cli.py and its cli_*.py parts), pipeline.py (+ pipeline_*.py)
# and the MCP server (mcp_*.py: the CLI's commands as tools)
TOP = tuple(
    f"subtool.{p.stem}" for p in sorted(PACKAGE_ROOT.glob("*.py")) if p.stem.split("_")[0] in ("cli", "pipeline", "mcp")
)
SHARED = ("subtool.mlperf", "subtool.errors", "subtool.fsutil", "subtool.schemas")
HEAVY = ("torch", "transformers", "mlperf_loadgen")
LIGHT_STAGES = ("mlperf", "checker", "package", "pack", "publish", "scoring", "fetch")


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # subtool module imported, or a top-level external package name
    line: int
    internal: bool

    def where(self) -> str:
        return f"{self.source} (line {self.line}) imports {self.target}"


@functools.cache
def modules() -> dict[str, tuple[Path, bool]]:
    """subtool's modules: dotted name → (file, is a package __init__)."""
    found = {}
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return found


def _resolve(name: str) -> str:
    """The longest prefix of `name` that is one of subtool's modules (`a.b.func` → `a.b`)."""
    mods = modules()
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name


def _imports_of(module: str) -> list[Import]:
    path, is_pkg = modules()[module]
    package = module if is_pkg else module.rpartition(".")[0]
    found: list[Import] = []

    def add(name: str, line: int) -> None:
        if name == "subtool" or name.startswith("subtool."):
            target = _resolve(name)
            if target and target != module:
                found.append(Import(module, target, line, True))
        else:
            found.append(Import(module, name.split(".")[0], line, False))

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:  # `from a import b` imports the module a.b when there is one
                sub = f"{origin}.{alias.name}"
                add(sub if sub in modules() else origin, node.lineno)
    return found


@functools.cache
def all_imports() -> tuple[Import, ...]:
    return tuple(imp for module in modules() for imp in _imports_of(module))


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in modules()}
    for imp in all_imports():
        if imp.internal:
            graph[imp.source].add(imp.target)
    return graph


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def _in(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


# ------------------------------------------------------------------------------------------------ circles
def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module, as one circle through it (a → b → … → a)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(root: str) -> None:  # Tarjan, iterative: deep chains must not hit the recursion limit
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return [_circle_through(group, graph) for group in sorted(groups)]


def _circle_through(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest circle from the group's first module back to itself, then every module of the group it missed."""
    members = set(group)
    start = group[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    circle = paths[node] + [start]
                    missed = sorted(members - set(circle))
                    return circle + ([f"(and {', '.join(missed)})"] if missed else [])
                if child not in paths:
                    paths[child] = paths[node] + [child]
                    nxt.append(child)
        frontier = nxt
    return group


def test_no_import_circle():
    circles = import_circles(_graph())
    assert not circles, "import circles:\n" + "\n".join("  " + " → ".join(c) for c in circles)


# ------------------------------------------------------------------------------------------------- stages
def stage_violations() -> list[str]:
    bad = []
    for imp in all_imports():
        if not imp.internal:
            continue
        src, dst = imp.source, imp.target
        if _in(dst, TOP) and not _in(src, TOP):
            bad.append(f"{imp.where()}: nothing below cli.py and pipeline.py imports them")
            continue
        if _in(src, TOP):
            continue
        a, b = stage_of(src), stage_of(dst)
        if b is None or a == b:
            continue
        if a is None:
            bad.append(f"{imp.where()}: a shared module imports a stage")
        elif (a, b) not in DECLARED_EDGES:
            bad.append(f"{imp.where()}: {a} → {b} is not a declared stage edge")
    return bad


def mlperf_violations() -> list[str]:
    return [
        f"{imp.where()}: mlperf/ imports only itself, errors, fsutil and schemas"
        for imp in all_imports()
        if imp.internal and _in(imp.source, ("subtool.mlperf",)) and not _in(imp.target, SHARED)
    ]


def heavy_violations() -> list[str]:
    """Light modules that import the model stack, directly or through another of subtool's modules."""
    graph = _graph()
    heavy_direct = {imp.source: imp for imp in all_imports() if not imp.internal and imp.target in HEAVY}
    bad = []
    for module in sorted(modules()):
        if stage_of(module) not in LIGHT_STAGES and not _in(module, ("subtool.mlperf",)):
            continue
        seen, todo, via = {module}, [module], {module: None}
        while todo:
            node = todo.pop()
            if node in heavy_direct:
                chain = [node]
                while via[chain[-1]] is not None:
                    chain.append(via[chain[-1]])
                route = " → ".join(reversed(chain))
                bad.append(f"{module} imports {heavy_direct[node].target} ({route}, line {heavy_direct[node].line})")
                break
            for child in graph[node] - seen:
                seen.add(child)
                via[child] = node
                todo.append(child)
    return bad


def test_stages_import_each_other_only_along_declared_edges():
    bad = stage_violations()
    assert not bad, "\n".join(bad)


def test_mlperf_imports_only_itself_and_the_shared_modules():
    bad = mlperf_violations()
    assert not bad, "\n".join(bad)


def test_stages_that_run_no_model_never_import_the_model_stack():
    bad = heavy_violations()
    assert not bad, "\n".join(bad)


# --------------------------------------------------------------------- the reader itself (so the rules bite)
def test_the_reader_sees_lazy_imports_and_resolves_names():
    edges = {(i.source, i.target) for i in all_imports()}
    # a module-level `from subtool.checker.registry import define`
    assert ("subtool.checker.rules.inputs", "subtool.checker.registry") in edges
    # a lazy import inside a function (cli imports its stages inside the commands)
    assert ("subtool.cli", "subtool.checker.api") in edges
    # `from pkg import module` is an edge to the module, `from module import name` to the module
    assert ("subtool.checker.rules", "subtool.checker.rules.accuracy") in edges


def test_the_rules_catch_what_they_name():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d2"}, "d2": set()}
    (circle,) = import_circles(graph)
    assert circle == ["a", "b", "c", "a"]
    assert stage_of("subtool.pack.api") == "pack" and stage_of("subtool.ci") == "ci"
    assert stage_of("subtool.mlperf.layout") is None and stage_of("subtool.cli") is None
