"""Dependencies under pipelines/ point one way: no import cycle, and no Airflow.

Read from the source with ``ast`` (nothing is imported), counting every import statement wherever
it stands: at module level, inside functions, under ``TYPE_CHECKING``. A cycle hidden in a
function body still means two modules that cannot be understood, tested or split apart one
without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

from pipelines.config import REPO_ROOT

PACKAGE = "pipelines"
ROOT = REPO_ROOT / PACKAGE


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py")) if "__pycache__" not in p.parts}


def imported_names(name: str, path: Path, known: set[str] | frozenset[str] = frozenset()
                   ) -> list[str]:
    """Every module named by an import statement of ``path`` (relative imports resolved).

    ``from pkg import sub`` names ``pkg.sub`` when that is one of the ``known`` modules, else
    ``pkg`` (a name defined in ``pkg/__init__.py``).
    """
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(sub if sub in known else base)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = set()
        for target in imported_names(name, path, set(known)):
            if target.split(".")[0] != PACKAGE:
                continue
            while target not in known and "." in target:  # a name inside a module
                target = target.rsplit(".", 1)[0]
            if target in known and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def test_the_graph_sees_the_modules_and_their_imports():
    graph = import_graph()
    assert {"pipelines.context", "pipelines.config"} <= graph["pipelines.runner"]
    assert "pipelines.lineage" in graph["pipelines.runner"]  # imported inside run_step


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert find_cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle_among_pipelines_modules():
    cycles = find_cycles(import_graph())
    assert cycles == [], "import cycles under pipelines/ (each group imports itself back): " + \
        "; ".join(" <-> ".join(c) for c in cycles)


def test_nothing_under_pipelines_imports_airflow():
    offenders = sorted(
        f"{name} imports {target}"
        for name, path in modules().items()
        for target in imported_names(name, path)
        if target.split(".")[0] == "airflow"
    )
    assert offenders == []
