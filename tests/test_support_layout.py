"""The test suite's own structure: helpers live in tests/support, benchmarks import them as a package."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import ROOT


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports by absolute name (`import a.b`, `from a.b import c`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_module_imports_a_test_module() -> None:
    """What tests share is in tests/support; a test module imported elsewhere would run its tests twice."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m.startswith("tests.test_"))
        for path in [*ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/**/*.py")]
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def test_benchmarks_do_not_edit_sys_path() -> None:
    """Benchmarks run as `python -m bench.NAME` from the repository root and import tests.support."""
    editing = [
        str(path.relative_to(ROOT))
        for path in ROOT.glob("bench/**/*.py")
        if "sys.path.insert" in path.read_text(encoding="utf-8")
        or "sys.path.append" in path.read_text(encoding="utf-8")
    ]
    assert editing == []
