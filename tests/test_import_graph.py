"""The package's import graph: ``mpc/`` has no import circle, at module level or inside functions.

A circle between two modules means neither can be read (or loaded) without the
other, and a function-level import is only a way of hiding one; so every
``import harbour...`` and ``from harbour... import ...`` counts, wherever it stands.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "harbour"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module ``name`` is, or the package that defines it as an attribute."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Module -> the harbour modules it imports (relative imports resolved; packages count as modules)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # ``from harbour.mpc import runner`` imports the module runner, not just the package.
                targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
            for target in targets:
                if not target.startswith("harbour"):
                    continue
                resolved = _resolve(target, modules)
                if resolved is not None and resolved != module:
                    graph[module].add(resolved)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_graph_sees_function_level_imports() -> None:
    graph = import_graph()
    assert "harbour.mpc.keyshare" in graph["harbour.mpc.ecdsa_setup"]
    assert "harbour.mpc.runner" in graph["harbour.cli.session"]


def test_mpc_has_no_import_circle() -> None:
    graph = import_graph()
    mpc = {
        m: {t for t in targets if t.startswith("harbour.mpc.")}
        for m, targets in graph.items()
        if m.startswith("harbour.mpc.")
    }
    assert cycles(mpc) == []


def test_harbour_has_no_import_circle() -> None:
    assert cycles(import_graph()) == []


def test_mpc_and_crypto_import_nothing_above_them() -> None:
    graph = import_graph()
    below = ("harbour.mpc", "harbour.crypto")
    foundation = "harbour.util."  # imports nothing from Harbour (tests/test_foundation.py): every layer may use it
    upward = {
        (m, t)
        for m, targets in graph.items()
        if m.startswith(below)
        for t in targets
        if not t.startswith((*below, foundation)) and t.count(".") > 1
    }
    assert upward == set()
