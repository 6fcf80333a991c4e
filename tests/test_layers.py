"""The floors hold: every module imports only its own floor or lower ones, and no two modules import each other.

    lib  <-  meters  <-  payments  <-  alarms  <-  energypay

The imports are read from the source with ``ast`` (module level and inside functions alike), so an
import hidden in a function to dodge a cycle at start-up still counts. Tests are not on a floor.
``lib`` is plain Python: besides no app, it imports no Django models.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOORS = ("lib", "meters", "payments", "alarms", "energypay")  # lowest first


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for floor in FLOORS for path in sorted((ROOT / floor).rglob("*.py"))}


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _resolve(name: str) -> str | None:
    """The project module ``name`` refers to (``meters.models.Household`` -> ``meters.models``), or None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, *, runtime_only: bool = False) -> Iterator[tuple[str, int]]:
    """(imported name, line) for every import statement in ``module``, wherever it stands."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    skipped: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and _type_checking_only(node):
                skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    package = module if _is_package(module) else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # "from meters import models" imports the module meters.models, not just the package.
                yield (f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base), node.lineno


def _floor(module: str) -> int:
    return FLOORS.index(module.split(".")[0])


def _edges() -> dict[str, dict[str, int]]:
    """module -> {project module it imports: line of the first such import}."""
    edges: dict[str, dict[str, int]] = {}
    for module in MODULES:
        targets = edges.setdefault(module, {})
        for name, line in _imports(module):
            target = _resolve(name)
            if target is not None and target != module:
                targets.setdefault(target, line)
    return edges


def _cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as one cycle's members."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _path_within(edges: dict[str, dict[str, int]], members: list[str]) -> list[str]:
    """One concrete loop through a cycle's members, for the message: a -> b -> ... -> a."""
    inside = set(members)
    start = members[0]
    trail = [start]
    seen = {start}
    while True:
        following = sorted(t for t in edges[trail[-1]] if t in inside)
        if start in following and len(trail) > 1:
            return [*trail, start]
        step = next((t for t in following if t not in seen), None)
        if step is None:
            return [*trail, start]
        trail.append(step)
        seen.add(step)


def test_the_floors_are_all_found():
    assert {module.split(".")[0] for module in MODULES} == set(FLOORS)
    assert "lib.periods" in MODULES and "meters.models" in MODULES


def test_no_module_imports_a_higher_floor():
    upward = [
        f"{module} (floor {module.split('.')[0]}) imports {target} (floor {target.split('.')[0]}), line {line}"
        for module, targets in _edges().items()
        for target, line in targets.items()
        if _floor(target) > _floor(module)
    ]
    assert not upward, "Upward imports (a floor may import only itself and lower ones):\n" + "\n".join(upward)


def test_no_two_modules_import_each_other_even_through_others():
    edges = _edges()
    loops = [
        f"{' -> '.join(_path_within(edges, members))} (all in the cycle: {', '.join(members)})"
        for members in _cycles(edges)
    ]
    assert not loops, "Import cycles (move the shared part into its own module):\n" + "\n".join(loops)


def test_lib_imports_no_django_models():
    offending = [
        f"{module} imports {name}, line {line}"
        for module in MODULES
        if module.split(".")[0] == "lib"
        for name, line in _imports(module, runtime_only=True)
        if name == "django.db.models" or name.startswith("django.db.models.") or name.endswith(".models")
    ]
    assert not offending, "lib/ is plain: no Django models:\n" + "\n".join(offending)


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b": 1}, "b": {"a": 1}}, [["a", "b"]]),
        ({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}, [["a", "b", "c"]]),
        ({"a": {"b": 1}, "b": {}}, []),
    ],
)
def test_the_cycle_finder_finds_direct_and_indirect_cycles(edges, expected):
    assert _cycles(edges) == expected
