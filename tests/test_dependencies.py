"""What the service and client import is what pyproject.toml declares (scipy and threadpoolctl
were imported without being declared), and nothing declared goes unused."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys

import tomllib

from tests.conftest import REPO

OWN = {"convscope", "convscope_client"}


def imported_modules() -> set[str]:
    names: set[str] = set()
    for path in [*(REPO / "service").rglob("*.py"), *(REPO / "clients" / "python").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - OWN - set(sys.stdlib_module_names)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(specs: list[str]) -> set[str]:
    return {normalized(re.split(r"[<>=!~ ;\[]", spec, maxsplit=1)[0]) for spec in specs}


# Runtime extras: imported only when a user asks for them (convscope[ray]: methods/ray_jobs.py).
RUNTIME_EXTRAS = ("ray",)


def test_runtime_imports_are_declared_and_declared_dependencies_are_used() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = _names(project["dependencies"])
    optional = set().union(*(_names(project["optional-dependencies"][extra]) for extra in RUNTIME_EXTRAS))
    providers = importlib.metadata.packages_distributions()
    used = {normalized(dist) for module in imported_modules() for dist in providers.get(module, [module])}
    assert used - declared - optional == set(), "imported but not declared"
    assert optional - used == set(), "a runtime extra imported nowhere"
    # onnxruntime-gpu provides 'onnxruntime'; grpcio's extras provide grpc_health / grpc_reflection.
    assert declared - used == set(), "declared but imported nowhere"
