"""The package layout holds: no import circle anywhere (every import counts, also the ones
under ``TYPE_CHECKING`` or inside a function), the layers point one way, and ``search/`` keeps
its top level small."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("device_agent", "hwnas_bench", "hw_targets", "search")
#: a layer may import the ones before it, never one after it
LAYERS = ("device_agent", "hw_targets", "hwnas_bench", "search")
ALLOWED = {
    "device_agent": set(),
    "hw_targets": set(),
    "hwnas_bench": {"device_agent", "hw_targets"},
    "search": {"device_agent", "hw_targets", "hwnas_bench"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {
        module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if p.is_file()
    }


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module ``name`` imports, wherever in the file the import stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_module_graph_has_no_cycle() -> None:
    assert cycles(graph()) == []


def test_cycles_finds_a_circle() -> None:
    # the check itself can fail: the circle issue 17 removed, written as a graph
    circle = {
        "search.api": {"search.compress"},
        "search.compress": {"search.compress.pipeline"},
        "search.compress.pipeline": {"search.api"},
    }
    assert cycles(circle) == [sorted(circle)]


def test_layers_import_only_the_layers_below() -> None:
    wrong = [
        f"{name} imports {dep}"
        for name, deps in graph().items()
        for dep in deps
        if dep.split(".")[0] != name.split(".")[0]
        and dep.split(".")[0] not in ALLOWED[name.split(".")[0]]
    ]
    assert wrong == []


@pytest.mark.parametrize(
    ("first", "second"),
    [("search.api", "search.compress.pipeline"), ("search.compress.pipeline", "search.api")],
)
def test_each_module_of_the_old_circle_imports_first(first: str, second: str) -> None:
    # a fresh interpreter, so that no module is half-initialised from an earlier import
    code = (
        f"import importlib; importlib.import_module({first!r}); importlib.import_module({second!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    names = sorted(all_modules())
    code = "import importlib, sys\nfor n in sys.argv[1:]: importlib.import_module(n)"
    subprocess.run([sys.executable, "-c", code, *names], check=True, cwd=ROOT, timeout=300)


def test_search_top_level_is_small() -> None:
    top = sorted(p.name for p in (ROOT / "search").glob("*.py"))
    assert len(top) <= 14, top


def test_every_subpackage_says_what_it_holds() -> None:
    silent = [
        str(init.relative_to(ROOT))
        for pkg in PACKAGES
        for init in (ROOT / pkg).rglob("__init__.py")
        if not ast.get_docstring(ast.parse(init.read_text()))
    ]
    assert silent == []
