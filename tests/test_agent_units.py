"""Agent parts on their own: the model cache bound, settings, inputs, the zipapp."""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from device_agent.errors import AgentError
from device_agent.inputs import resolve, resolve_shape
from device_agent.model_store import STALE_UPLOAD_S, ModelStore
from device_agent.protocol import BenchSettings, ErrorCode
from hwnas_bench import Device
from hwnas_bench.deploy import build_agent_zipapp


def put(store: ModelStore, data: bytes) -> Path:
    pending = store.begin(hashlib.sha256(data).hexdigest(), len(data))
    pending.write(data)
    return pending.commit()


def test_cache_evicts_least_recently_used_to_stay_under_its_bound(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, max_bytes=2500)
    a, b = put(store, b"a" * 1000), put(store, b"b" * 1000)
    store.get(a.stem)  # a is now more recently used than b
    import os

    os.utime(b, (1, 1))  # make "least recently used" unambiguous on coarse clocks
    c = put(store, b"c" * 1000)
    assert sorted(p.name for p in store.models()) == sorted([a.name, c.name])
    assert store.get(b.stem) is None


def test_model_larger_than_the_cache_is_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, max_bytes=100)
    with pytest.raises(AgentError) as info:
        store.begin("0" * 64, 101)
    assert info.value.code is ErrorCode.MODEL_TOO_LARGE


def test_stale_partial_uploads_are_cleared_at_start(tmp_path: Path) -> None:
    stale, fresh = tmp_path / ".upload-x.part", tmp_path / ".upload-y.part"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"another agent's upload, in progress")
    old = time.time() - 2 * STALE_UPLOAD_S
    os.utime(stale, (old, old))
    ModelStore(tmp_path, 1000)
    # the killed agent's part goes; one another agent sharing the cache writes now stays
    assert [p.name for p in tmp_path.glob(".upload-*")] == [fresh.name]


def test_dynamic_dims_resolve_by_name_and_default_to_one() -> None:
    assert resolve_shape("x", ["batch", 3, None, -1], {"batch": 8}) == [8, 3, 1, 1]
    assert resolve_shape("x", ["batch", 3], None) == [1, 3]
    assert resolve_shape("x", ["n", "n"], {"x:1": 5}) == [1, 5]
    # the dims left at 1 are named: symbolic names, "input:axis" for unnamed ones
    assert resolve("x", ["batch", 3, None], None) == ([1, 3, 1], ["batch", "x:2"])


def test_named_dynamic_dim_reaches_the_board(local_device: Device, mlp_model: Path) -> None:
    m = local_device.bench(mlp_model, dims={"batch": 8}, min_time_s=0.05, min_iterations=5)
    assert m.inputs == [
        {
            "name": "x",
            "dtype": "float32",
            "shape": [8, 64],
            "declared": ["batch", 64],
            "defaulted": [],
        }
    ]


def test_unavailable_provider_is_named(local_device: Device, mlp_model: Path) -> None:
    from hwnas_bench import AgentError as HostAgentError

    with pytest.raises(HostAgentError) as info:
        local_device.bench(mlp_model, provider="TensorrtExecutionProvider", min_time_s=0)
    assert info.value.code == "provider_unavailable"
    assert "CPUExecutionProvider" in info.value.message  # it lists what is available


def test_settings_defaults_are_valid_and_round_trip() -> None:
    settings = BenchSettings(threads=2, dims={"batch": 4})
    settings.validate()
    assert BenchSettings.from_wire({**settings.to_wire(), "op": "bench"}) == settings


def test_shutdown_stops_the_agent(local_device: Device) -> None:
    local_device.open()
    proc = local_device.transport._proc  # type: ignore[attr-defined]
    local_device.shutdown()
    assert proc.wait(timeout=10) == 0


def test_zipapp_is_reproducible_and_runs(tmp_path: Path) -> None:
    bundle = build_agent_zipapp()
    assert build_agent_zipapp.__wrapped__().sha256 == bundle.sha256  # same bytes every build
    names = zipfile.ZipFile(__import__("io").BytesIO(bundle.data)).namelist()
    assert "__main__.py" in names
    assert "device_agent/protocol/frames.py" in names
    assert not any("__pycache__" in n or n.startswith(("hwnas_bench", "tests")) for n in names)
    pyz = tmp_path / "agent.pyz"
    pyz.write_bytes(bundle.data)
    out = subprocess.run([sys.executable, str(pyz), "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.startswith("device_agent 0.1.0")


def oldest_python() -> str | None:
    pyenv = sorted((Path.home() / ".pyenv/versions").glob("3.8.*/bin/python"))
    for candidate in [*map(str, pyenv), shutil.which("python3.8")]:
        if candidate and subprocess.run([candidate, "-V"], capture_output=True).returncode == 0:
            return candidate
    return None


def test_agent_source_compiles_on_python_38() -> None:
    """Boards run old Pythons (JetPack 5 ships 3.8): the agent's syntax must stay 3.8."""
    python = oldest_python()
    if python is None:
        pytest.skip("no Python 3.8 interpreter on this machine")
    root = Path(__file__).resolve().parent.parent / "device_agent"
    files = [str(p) for p in root.rglob("*.py")]
    result = subprocess.run(
        [
            python,
            "-c",
            "import sys, ast\nfor f in sys.argv[1:]: ast.parse(open(f).read(), f)",
            *files,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    # and the modules that need only the standard library import and run there
    stdlib_only = "device_agent.protocol, device_agent.errors, device_agent.links, "
    stdlib_only += "device_agent.tcp_limits"
    env = {**os.environ, "PYTHONPATH": str(root.parent)}
    for argv in (["-c", f"import {stdlib_only}"], ["-m", "device_agent", "--help"]):
        ran = subprocess.run([python, *argv], capture_output=True, text=True, env=env)
        assert ran.returncode == 0, ran.stderr


def test_input_dtype_mismatch_message() -> None:
    from device_agent.inputs import check

    class Arg:
        name, type, shape = "x", "tensor(float)", [1, 4]

    with pytest.raises(AgentError, match="dtype int64"):
        check([Arg()], {"x": np.zeros((1, 4), dtype=np.int64)})


# -- Python 3.8, without a Python 3.8 ------------------------------------------------------
#
# Boards run old Pythons (JetPack 5 ships 3.8), and CI has no 3.8 to run the test above: the
# agent's source is checked here with the running interpreter. The parser rejects 3.9+
# syntax given feature_version=(3, 8) (match, parenthesized context managers, except*);
# what it lets through (relaxed decorators, star in a subscript) and what only fails when
# run (builtin generics and "X | Y" where evaluated, 3.9+ library names) is checked below.

AGENT = Path(__file__).resolve().parent.parent / "device_agent"

#: 3.9+ names: (module, attribute), or ("str", method) for methods of str/bytes.
NEWER_NAMES = {
    ("functools", "cache"): "3.9",
    ("math", "lcm"): "3.9",
    ("math", "nextafter"): "3.9",
    ("math", "ulp"): "3.9",
    ("random", "randbytes"): "3.9",
    ("ast", "unparse"): "3.9",
    ("importlib.resources", "files"): "3.9",
    ("os", "waitstatus_to_exitcode"): "3.9",
    ("asyncio", "to_thread"): "3.9",
    ("typing", "Annotated"): "3.9",
    ("itertools", "pairwise"): "3.10",
    ("contextlib", "aclosing"): "3.10",
    ("typing", "TypeAlias"): "3.10",
    ("typing", "TypeGuard"): "3.10",
    ("typing", "ParamSpec"): "3.10",
    ("typing", "Concatenate"): "3.10",
    ("typing", "Self"): "3.11",
    ("typing", "Never"): "3.11",
    ("typing", "LiteralString"): "3.11",
    ("typing", "assert_never"): "3.11",
    ("typing", "reveal_type"): "3.11",
    ("enum", "StrEnum"): "3.11",
    ("hashlib", "file_digest"): "3.11",
    ("datetime", "UTC"): "3.11",
    ("typing", "override"): "3.12",
    ("itertools", "batched"): "3.12",
}
NEWER_MODULES = {"zoneinfo": "3.9", "graphlib": "3.9", "tomllib": "3.11"}
NEWER_METHODS = {"removeprefix": "3.9", "removesuffix": "3.9", "bit_count": "3.10"}
NEWER_KEYWORDS = {("zip", "strict"): "3.10", ("dataclass", "slots"): "3.10"}
NEWER_KEYWORDS[("dataclass", "kw_only")] = "3.10"
BUILTIN_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}
ABC_GENERICS = {"collections.abc", "collections", "contextlib", "re"}
TYPE_NAMES = BUILTIN_GENERICS | {"int", "float", "str", "bytes", "bool", "object", "complex"}


class _Py38(ast.NodeVisitor):
    """What in one module would fail on Python 3.8 (see the comment above)."""

    def __init__(self, tree: ast.Module) -> None:
        self.problems: list[str] = []
        self.lazy = any(
            isinstance(n, ast.ImportFrom)
            and n.module == "__future__"
            and "annotations" in [a.name for a in n.names]
            for n in tree.body
        )
        self.aliases: dict[str, str] = {}  # local name -> module it came from (or module.attr)
        self._type_checking = 0

    def _flag(self, node: ast.AST, what: str) -> None:
        self.problems.append(f"line {getattr(node, 'lineno', '?')}: {what}")

    # annotations: evaluated at definition time unless the module has the future import
    def _annotation(self, node: ast.AST | None) -> None:
        if node is None:
            return
        if not self.lazy:  # else a string, never evaluated by the agent
            self.visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for deco in node.decorator_list:
            self._decorator(deco)
            self.visit(deco)
        args = node.args
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None:
                self._annotation(arg.annotation)
        for default in [*args.defaults, *args.kw_defaults]:
            if default is not None:
                self.visit(default)
        self._annotation(node.returns)
        for stmt in node.body:
            self.visit(stmt)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.visit_FunctionDef(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for deco in node.decorator_list:
            self._decorator(deco)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._annotation(node.annotation)
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.target)

    def _decorator(self, node: ast.expr) -> None:
        """3.8 decorators: a dotted name, optionally called (PEP 614 relaxed this in 3.9)."""
        target = node.func if isinstance(node, ast.Call) else node
        while isinstance(target, ast.Attribute):
            target = target.value
        if not isinstance(target, ast.Name):
            self._flag(node, "a decorator that is not a dotted name (3.9+)")

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        guarded = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        )
        self.visit(test)
        self._type_checking += guarded
        for stmt in node.body:
            self.visit(stmt)
        self._type_checking -= guarded
        for stmt in node.orelse:
            self.visit(stmt)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.aliases[alias.asname or alias.name.split(".")[0]] = alias.name
            if not self._type_checking and alias.name.split(".")[0] in NEWER_MODULES:
                self._flag(node, f"import {alias.name} ({NEWER_MODULES[alias.name]}+)")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if not self._type_checking and module.split(".")[0] in NEWER_MODULES:
            self._flag(node, f"from {module} import ... ({NEWER_MODULES[module.split('.')[0]]}+)")
        for alias in node.names:
            self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
            version = NEWER_NAMES.get((module, alias.name))
            if version and not self._type_checking and module != "__future__":
                self._flag(node, f"from {module} import {alias.name} ({version}+)")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name):
            module = self.aliases.get(node.value.id, node.value.id)
            version = NEWER_NAMES.get((module, node.attr))
            if version and not self._type_checking:
                self._flag(node, f"{module}.{node.attr} ({version}+)")
        if node.attr in NEWER_METHODS and not self._type_checking:
            self._flag(node, f".{node.attr}() ({NEWER_METHODS[node.attr]}+)")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        for keyword in node.keywords:
            version = NEWER_KEYWORDS.get((name, keyword.arg or ""))
            if version:
                self._flag(node, f"{name}({keyword.arg}=...) ({version}+)")
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if any(isinstance(n, ast.Starred) for n in ast.walk(node.slice)):
            self._flag(node, "a star in a subscript (3.11+)")
        value = node.value
        if not self._type_checking and isinstance(value, ast.Name):
            origin = self.aliases.get(value.id, value.id)
            is_abc = origin.rsplit(".", 1)[0] in ABC_GENERICS and "." in origin
            if (value.id in BUILTIN_GENERICS and value.id not in self.aliases) or is_abc:
                self._flag(node, f"{value.id}[...] evaluated at run time (3.9+)")
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.BitOr) and not self._type_checking:
            sides = (node.left, node.right)
            if any(_is_type_expr(s) for s in sides):
                self._flag(node, "X | Y of types evaluated at run time (3.10+)")
        self.generic_visit(node)


def _is_type_expr(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant) and node.value is None:
        return True
    if isinstance(node, ast.Name) and node.id in TYPE_NAMES:
        return True
    return isinstance(node, ast.Subscript) and _is_type_expr(node.value)


def py38_problems(source: str, name: str = "<source>") -> list[str]:
    """Why ``source`` would not run on Python 3.8 (empty when it would, as far as we see)."""
    try:
        tree = ast.parse(source, name, feature_version=(3, 8))
    except SyntaxError as exc:
        return [f"line {exc.lineno}: {exc.msg}"]
    checker = _Py38(tree)
    checker.visit(tree)
    return checker.problems


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("match x:\n    case 1:\n        pass\n", "Pattern matching"),
        ("with (open('a') as f, open('b') as g):\n    pass\n", "Parenthesized context"),
        ("def f(x: list[int]) -> None: ...\n", "list[...]"),
        ("from __future__ import annotations\nAlias = dict[str, int]\n", "dict[...]"),
        ("from collections.abc import Iterator\nIt = Iterator[int]\n", "Iterator[...]"),
        ("from __future__ import annotations\nok = isinstance(x, int | None)\n", "X | Y"),
        ("def f(x: int | None): ...\n", "X | Y"),
        ("'abc'.removeprefix('a')\n", ".removeprefix()"),
        ("import functools\n@functools.cache\ndef f(): ...\n", "functools.cache"),
        ("from functools import cache\n", "functools import cache"),
        ("from typing import TypeGuard\n", "typing import TypeGuard"),
        ("import zoneinfo\n", "import zoneinfo"),
        ("@buttons[0].connect\ndef f(): ...\n", "decorator"),
        ("x[*a]\n", "star in a subscript"),
        ("z = zip(a, b, strict=True)\n", "zip(strict=...)"),
    ],
)
def test_the_py38_check_finds_what_38_lacks(source: str, why: str) -> None:
    problems = py38_problems(source)
    assert any(why in p for p in problems), problems


def test_the_py38_check_lets_38_code_through() -> None:
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING, Dict, List, Optional\n"
        "if TYPE_CHECKING:\n"
        "    from typing_extensions import TypeGuard\n"
        "def f(x: list[int] | None, y: Optional[Dict[str, int]] = None) -> TypeGuard[int]:\n"
        "    flags = 1 | 2\n"
        "    z: List[int] = [n for n in x or []]\n"
        "    return bool(flags and z and (w := 3))\n"
        "@property\n"
        "def g(): ...\n"
    )
    assert py38_problems(source) == []


def test_agent_source_is_python_38() -> None:
    """Every agent module, with the running interpreter: this test never skips."""
    files = sorted(AGENT.rglob("*.py"))
    assert len(files) > 20
    problems = {
        str(path.relative_to(AGENT)): found
        for path in files
        if (found := py38_problems(path.read_text(encoding="utf-8"), str(path)))
    }
    assert problems == {}
