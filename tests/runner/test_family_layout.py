"""The runner's model families keep their imports one way (read from the source, imports inside functions too):
within a family nothing imports the workload back and there is no circle; one family never imports the other;
the shared modules (kernels/, ray_pool.py, demo_assets.py) import no family. And no family module or function
grows past the house limits."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parents[2] / "subtool" / "runner"
FAMILIES = ("bert", "llm")
SHARED = ("kernels", "ray_pool", "demo_assets")
# the runner's shared stages (every family runs through them): they reach a family only through the workload
# registry (runner/workload.py names the family modules as data), never by importing one
SHARED_STAGES = ("api", "session", "harness", "compliance", "find_perf", "sizing", "workload")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = path.relative_to(RUNNER.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """subtool.runner modules `path` imports anywhere in its body, resolved to the modules in `known`."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != here:
                found.add(name)
    return found


def import_graph(paths: list[Path]) -> dict[str, set[str]]:
    known = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, known) for p in paths}


def runner_modules() -> list[Path]:
    return [p for p in RUNNER.rglob("*.py") if "__pycache__" not in p.parts]


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return trail + [node, nxt]
            if nxt not in state:
                found = visit(nxt, trail + [node])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [])
            if found:
                return found
    return None


@pytest.fixture(scope="module")
def graph():
    return import_graph(runner_modules())


@pytest.mark.parametrize("family", FAMILIES)
def test_nothing_in_a_family_imports_its_workload_back_or_circles(graph, family):
    prefix = f"subtool.runner.{family}."
    inside = {m: {n for n in deps if n.startswith(prefix)} for m, deps in graph.items() if m.startswith(prefix)}
    back = sorted(m for m, deps in inside.items() if f"{prefix}workload" in deps)
    assert back == [], f"import the {family} workload back: {back}"
    assert cycle_in(inside) is None, f"import circle: {' -> '.join(cycle_in(inside))}"


def test_families_and_shared_modules_import_one_way(graph):
    wrong = []
    for module, deps in graph.items():
        mine = module.split(".")[2] if module.count(".") >= 2 else ""
        for dep in deps:
            theirs = dep.split(".")[2] if dep.count(".") >= 2 else ""
            if mine in FAMILIES and theirs in FAMILIES and theirs != mine:
                wrong.append(f"{module} -> {dep}")
            if (mine in SHARED or mine in SHARED_STAGES) and theirs in FAMILIES:
                wrong.append(f"{module} -> {dep}")
    assert wrong == []


def test_no_family_module_or_function_past_the_limits():
    too_long = []
    for path in runner_modules():
        if path.parent.name not in (*FAMILIES, "kernels") and path.stem not in SHARED:
            continue
        source = path.read_text(encoding="utf-8")
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{module_name(path)}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{module_name(path)}.{node.name}: {length} lines")
    assert too_long == []


def test_the_graph_reader_sees_imports_inside_functions():
    """The checks above only mean something if a lazy import inside a function counts as an import."""
    sut = RUNNER / "bert" / "sut_ray.py"
    deps = import_graph(runner_modules())[module_name(sut)]
    assert "subtool.runner.bert.ray_worker" in deps  # imported inside RayBertSUT._start_workers only
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
