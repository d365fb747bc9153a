"""methods/ computes; render/ draws. No module of convscope.methods imports convscope.render, so
a method returns arrays and small result types and the data plane adds the pictures."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import convscope.methods


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, at any depth (also inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_method_module_imports_render() -> None:
    folder = Path(convscope.methods.__file__).parent
    modules = [folder / f"{info.name}.py" for info in pkgutil.iter_modules([str(folder)])]
    assert len(modules) > 10  # the walk found the package's modules
    offenders = {
        path.name: sorted(
            name for name in imported_modules(path) if name == "convscope.render" or name.startswith("convscope.render.")
        )
        for path in modules
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_walk_sees_an_import_of_render_inside_a_function(tmp_path: Path) -> None:
    source = tmp_path / "drawing.py"
    source.write_text("def draw():\n    from convscope.render.montage import grid\n    return grid\n")
    assert "convscope.render.montage" in imported_modules(source)
