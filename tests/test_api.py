"""The public surface: exports, docstrings, typing marker, and the layering rule."""

from __future__ import annotations

import ast
import pathlib

import greenwire

PACKAGE = pathlib.Path(greenwire.__file__).parent


def test_everything_exported_exists_and_is_documented() -> None:
    assert len(set(greenwire.__all__)) == len(greenwire.__all__)
    for name in greenwire.__all__:
        obj = getattr(greenwire, name)
        if callable(obj) and getattr(obj, "__module__", "").startswith("greenwire"):
            assert obj.__doc__, f"greenwire.{name} has no docstring"


def test_ships_py_typed() -> None:
    assert (PACKAGE / "py.typed").exists()


def _greenwire_imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("greenwire"):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("greenwire"))
    return found


def test_core_imports_nothing_above_it() -> None:
    for path in (PACKAGE / "_core").glob("*.py"):
        for module in _greenwire_imports(path):
            assert module.startswith("greenwire._core"), f"{path.name} imports {module}"


def test_upper_layers_use_only_what_core_exports() -> None:
    for path in PACKAGE.rglob("*.py"):
        if "_core" in path.parts:
            continue
        for module in _greenwire_imports(path):
            if module.startswith("greenwire._core"):
                assert module in ("greenwire._core", "greenwire._core.threadpool"), (
                    f"{path.relative_to(PACKAGE)} reaches into {module}"
                )
