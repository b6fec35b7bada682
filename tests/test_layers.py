"""The tree shows the pipeline: each stage imports only from itself and the stages below it, and nothing loops."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bench"
STAGES = ("cli", "report", "run", "results", "plan", "worker", "backends", "measure")
"""Top first: a module may import from its own stage and those after it in this list, and from the shared modules."""
SHARED = ("job", "errors", "paths", "machine", "environments", "topology", "terminal", "text", "orphans", "cpu")
"""Modules directly under bench/ that every stage may use; they import only each other (and the registry)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    base = PACKAGE.parent / Path(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def imports_of(path: Path) -> set[str]:
    """Every bench module a file imports, at its top or inside a function (`from P import m`: m, not P)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("bench")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bench") and not node.level:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names}
            submodules = {m for m in submodules if is_module(m)}
            found |= submodules if len(submodules) == len(node.names) else submodules | {node.module}
    return {name for name in found if is_module(name)}


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def all_modules() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def test_no_stage_imports_from_a_stage_above_it():
    upward = []
    for module, imported in all_modules().items():
        here = stage_of(module)
        for other in imported:
            there = stage_of(other)
            if here and there and STAGES.index(there) < STAGES.index(here):
                upward.append(f"{module} -> {other}")
            if not here and module != "bench.__main__" and there:
                shared_ok = module.split(".")[-1] in SHARED and there == "backends" and other == "bench.backends"
                if not shared_ok:
                    upward.append(f"{module} (shared) -> {other}")
    assert upward == []


def test_no_import_cycle_between_modules():
    graph = all_modules()
    state: dict[str, int] = {}
    cycles = []

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt == node or nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]) if nxt in trail else f"{node} -> {nxt}")
            elif not state.get(nxt):
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if not state.get(node):
            visit(node, [node])
    assert cycles == []


def test_every_module_sits_in_a_stage_or_is_shared():
    loose = [m for m in all_modules() if m.count(".") == 1 and m.split(".")[1] not in STAGES + SHARED
             and m not in ("bench.__main__",)]
    assert loose == []
