"""The foundation modules import nothing from Harbour, so every layer may use them without a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import harbour.util

UTIL = Path(harbour.util.__file__).parent
MODULES = sorted(UTIL.glob("*.py"))


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_there_are_foundation_modules() -> None:
    assert {p.name for p in MODULES} >= {"__init__.py", "strictjson.py", "cbor.py", "files.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_a_foundation_module_imports_nothing_from_harbour(path: Path) -> None:
    own = {name for name in imported(path) if name.split(".")[0] == "harbour" or name.startswith(".")}
    assert not own, f"{path.name} imports {sorted(own)}"
