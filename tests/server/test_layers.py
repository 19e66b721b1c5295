"""The dependency rules of the code base: layers point down and no module imports a cycle.

`config` wires the apps and may import anything; the apps use `core`, which imports no app;
`projects` may import `nodes`, never the other way round; the agent and the shared git-input
policy import nothing of the server. Lazy imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "config",
    "core",
    "accounts",
    "nodes",
    "projects",
    "credentials",
    "sync",
    "agent",
    "gitpolicy",
    "gitfleet_cli",
)
SERVER_APPS = {"accounts", "nodes", "projects", "credentials", "sync"}
DJANGO_FREE = {"agent", "gitpolicy", "gitfleet_cli"}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" in parts:
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every absolute module name `path` imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


GRAPH = {
    name: {imported for imported in _imports(path) if imported in MODULES and imported != name}
    for name, path in MODULES.items()
}


def _package(module: str) -> str:
    return module.split(".")[0]


def _imported_packages(package: str) -> set[str]:
    return {
        _package(imported)
        for module, imports in GRAPH.items()
        if _package(module) == package
        for imported in imports
    } - {package}


def test_core_imports_no_app_and_not_the_wiring():
    assert _imported_packages("core") & (SERVER_APPS | {"config"}) == set()


@pytest.mark.parametrize("app", sorted(SERVER_APPS))
def test_apps_never_import_the_wiring(app):
    assert "config" not in _imported_packages(app)


def test_nodes_never_imports_projects():
    assert "projects" not in _imported_packages("nodes")


@pytest.mark.parametrize("package", sorted(DJANGO_FREE))
def test_agent_side_imports_nothing_of_the_server(package):
    server_side = SERVER_APPS | {"config", "core"}
    assert _imported_packages(package) & server_side == set()
    third_party = {
        name.split(".")[0]
        for module, path in MODULES.items()
        if _package(module) == package
        for name in _imports(path)
    }
    assert "django" not in third_party and "rest_framework" not in third_party


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(GRAPH[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return cycles


def test_no_module_imports_a_cycle():
    assert _cycles() == []


def test_the_checks_see_the_code_base():
    # A check over an empty graph would pass whatever the code does.
    assert {"projects.domain", "core.errors", "agent.runner", "config.settings"} <= set(MODULES)
    assert "core.exceptions" in GRAPH["projects.domain"]
