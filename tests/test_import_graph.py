"""The package's import graph has no circles, and dependencies point one way.

Every ``import`` statement of every module counts, at module level or inside a function (a
lazy import that only hides a circle is still a circle); only ``if TYPE_CHECKING:`` blocks are
left out (they never run). Edges are resolved to modules of ``model_manager``; the test fails on
any strongly connected component of more than one module, naming the modules and the edges.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import model_manager

ROOT = Path(model_manager.__file__).parent
PACKAGE = "model_manager"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (i for n in node.orelse for i in _imports_of(n))
            continue
        yield from _imports_of(node)


def _imports_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _imports(node)


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
        return {_longest_known(n, known) for n in names if n.split(".")[0] == PACKAGE} - {None}  # type: ignore[operator]
    base_parts = module.split(".") if is_package else module.split(".")[:-1]
    if node.level:
        base_parts = base_parts[: len(base_parts) - (node.level - 1)]
        base = ".".join([*base_parts, *([node.module] if node.module else [])])
    else:
        base = node.module or ""
    if base.split(".")[0] != PACKAGE:
        return set()
    found = set()
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        found.add(candidate if candidate in known else _longest_known(base, known))
    return {f for f in found if f}


def _longest_known(name: str, known: set[str]) -> str | None:
    parts = name.split(".")
    while parts:
        if ".".join(parts) in known:
            return ".".join(parts)
        parts.pop()
    return None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _imports(tree):
            edges |= _targets(name, is_package, node, known)
        graph[name] = edges - {name}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walker_sees_lazy_imports_and_resolves_relative_ones() -> None:
    graph = import_graph()
    # optimized_loader imports the planner at module level; the planner imports hardware
    assert "model_manager.optim.planner" in graph["model_manager.optimized_loader"]
    assert "model_manager.optim.hardware" in graph["model_manager.optim.planner"]
    # a function-level import is an edge too (the registry of architectures is imported lazily here)
    assert any(graph.values()) and len(graph) > 60


def test_the_walker_finds_a_planted_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]


def test_model_manager_has_no_import_circles() -> None:
    graph = import_graph()
    cycles = strongly_connected(graph)
    described = [
        f"{' <-> '.join(c)}: " + "; ".join(f"{a} -> {b}" for a in c for b in sorted(graph[a]) if b in c)
        for c in cycles
    ]
    assert not cycles, "import circles:\n" + "\n".join(described)


def test_dependencies_point_one_way() -> None:
    """Nothing below the manager imports it, the CLI or the loader; the strategy table and the
    progress channel are leaves; candidate plugins import no registry and no other plugin."""
    graph = import_graph()
    top = {"model_manager.manager", "model_manager.optimized_loader"}
    cli = {m for m in graph if m.startswith("model_manager.cli")}
    for module, edges in graph.items():
        if module.startswith(("model_manager.optim", "model_manager.cache", "model_manager.runners")):
            assert not edges & (top | cli), f"{module} imports {sorted(edges & (top | cli))}"
    assert graph["model_manager.progress"] == set()
    assert graph["model_manager.optim.strategies"] <= {"model_manager.errors"}
    plugins = {
        m
        for m in graph
        if m.startswith("model_manager.optim.candidates.") and m.rsplit(".", 1)[1] not in ("base", "registry")
    }
    for plugin in plugins:
        bad = graph[plugin] & ({"model_manager.optim.candidates.registry"} | plugins)
        assert not bad, f"plugin {plugin} imports {sorted(bad)}"
    assert graph["model_manager.optim.candidates.base"].isdisjoint(plugins)
