"""Zero-install deploy: the agent travels to the board as one zipapp.

The zipapp is built from the installed ``device_agent`` package with fixed timestamps and
file order, so the same agent always gives the same bytes; its name carries their sha256.
Before the board's copy is run, the board hashes it (with its own python) and the host
compares: a copy that was changed, even to one of the same size, is uploaded again.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import device_agent.protocol

from .errors import DeployError

#: Where agents live on a board, relative to the login user's home directory.
REMOTE_AGENT_DIR = ".cache/hwnas-bench/agent"

#: The oldest Python the agent is written for (JetPack 5 ships 3.8).
MIN_BOARD_PYTHON = (3, 8)

_ZIP_MAIN = (
    "import sys\nfrom device_agent.__main__ import main\n\nif __name__ == '__main__':\n"
    "    sys.exit(main())\n"
)

#: Run on the board with its python: prints what the agent needs, as JSON, never fails.
#: With a path argument it also hashes that file (the deployed agent).
BOARD_PROBE = r"""
import hashlib, json, platform, sys
out = {"python": platform.python_version(), "executable": sys.executable}
if len(sys.argv) > 1:
    try:
        with open(sys.argv[1], "rb") as fh:
            out["agent_sha256"] = hashlib.sha256(fh.read()).hexdigest()
    except (OSError, IOError):
        out["agent_sha256"] = None
for mod in ("numpy", "onnxruntime", "serial"):
    try:
        m = __import__(mod)
        out[mod] = getattr(m, "__version__", "unknown")
    except Exception as exc:
        out[mod] = None
        out[mod + "_error"] = "%s: %s" % (type(exc).__name__, exc)
try:
    import onnxruntime
    out["providers"] = onnxruntime.get_available_providers()
except Exception:
    out["providers"] = []
print(json.dumps(out))
"""


@dataclass(frozen=True)
class AgentBundle:
    data: bytes
    sha256: str

    @property
    def name(self) -> str:
        return f"device_agent-{device_agent_version()}-{self.sha256[:12]}.pyz"

    @property
    def remote_path(self) -> str:
        return f"{REMOTE_AGENT_DIR}/{self.name}"


def device_agent_version() -> str:
    import device_agent

    return device_agent.__version__


def _package_dir() -> Path:
    return Path(device_agent.protocol.__file__).resolve().parent.parent


def _module_files(module: str) -> list[tuple[str, Path]]:
    """(archive name, file) pairs for an importable module or package, for the zipapp."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise DeployError("agent zipapp", f"power plugin module '{module}' cannot be found")
    origin = Path(spec.origin)
    parts = module.split(".")
    if spec.submodule_search_locations:  # a package: take all of it
        base = origin.parent
        prefix = "/".join(parts)
        return [
            (f"{prefix}/{p.relative_to(base).as_posix()}", p)
            for p in sorted(base.rglob("*.py"))
            if "__pycache__" not in p.parts
        ]
    return [("/".join(parts) + ".py", origin)]


@functools.cache
def build_agent_zipapp(plugin_modules: tuple[str, ...] = ()) -> AgentBundle:
    """The agent as a runnable zip (``python agent.pyz --stdio``), built once per process.

    ``plugin_modules`` (power readers from plugins) are packed beside ``device_agent``.
    Parent packages of a dotted module get an ``__init__.py`` of their own if missing.
    """
    root = _package_dir()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:

        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)

        add("__main__.py", _ZIP_MAIN.encode())
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" not in path.parts:
                add(f"device_agent/{path.relative_to(root).as_posix()}", path.read_bytes())
        written = set(archive.namelist())
        for module in plugin_modules:
            parts = module.split(".")
            for depth in range(1, len(parts)):
                init = "/".join(parts[:depth]) + "/__init__.py"
                if init not in written:
                    add(init, b"")
                    written.add(init)
            for name, path in _module_files(module):
                if name not in written:
                    add(name, path.read_bytes())
                    written.add(name)
    data = buf.getvalue()
    return AgentBundle(data, hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class BoardCheck:
    python: str
    numpy: str | None
    onnxruntime: str | None
    providers: list[str]
    missing: list[str]
    agent_sha256: str | None = None  #: of the file probed, None if it is not there

    @property
    def ok(self) -> bool:
        return not self.missing


def parse_probe(output: str) -> BoardCheck:
    facts = json.loads(output.strip().splitlines()[-1])
    missing: list[str] = []
    version = tuple(int(p) for p in str(facts["python"]).split(".")[:2])
    if version < MIN_BOARD_PYTHON:
        missing.append(f"python >= {'.'.join(map(str, MIN_BOARD_PYTHON))} (has {facts['python']})")
    for module in ("numpy", "onnxruntime"):
        if facts.get(module) is None:
            missing.append(f"{module} ({facts.get(module + '_error', 'not importable')})")
    return BoardCheck(
        python=str(facts["python"]),
        numpy=facts.get("numpy"),
        onnxruntime=facts.get("onnxruntime"),
        providers=list(facts.get("providers") or []),
        missing=missing,
        agent_sha256=facts.get("agent_sha256"),
    )


Run = Callable[[str], tuple[int, str, str]]

#: Hash one file on the board with its python (no imports beyond the stdlib): fast enough
#: to run on every connection, unlike the probe, which imports onnxruntime.
_REMOTE_SHA256 = (
    "import hashlib, sys\n"
    "try:\n    data = open(sys.argv[1], 'rb').read()\n"
    "except (OSError, IOError):\n    print('-')\n"
    "else:\n    print(hashlib.sha256(data).hexdigest())\n"
)


def _in_home(path: str) -> str:
    """A shell word for ``path`` under the login user's home directory."""
    import shlex

    return f'"$HOME"/{shlex.quote(path)}'


def remote_sha256(target: str, python: str, path: str, run: Run) -> str | None:
    """The sha256 of ``~/path`` as the board computes it; None if there is no such file.

    A python that cannot run is reported as :func:`check_board` reports it.
    """
    import shlex

    code, out, err = run(f"{shlex.quote(python)} -c {shlex.quote(_REMOTE_SHA256)} {_in_home(path)}")
    digest = out.strip()
    if code != 0 or not digest:
        check_board(target, python, run)  # raises, saying what is wrong with the python
        raise DeployError(target, f"cannot hash ~/{path} on the board: {_last(err, code)}")
    return None if digest == "-" else digest


def _last(err: str, code: int) -> str:
    return err.strip().splitlines()[-1] if err.strip() else f"exit code {code}"


def check_board(target: str, python: str, run: Run, *, agent_path: str | None = None) -> BoardCheck:
    """Run the probe with the board's python; raise DeployError saying exactly what is missing.

    With ``agent_path`` (relative to the home directory) the result carries its sha256.
    """
    import shlex

    command = f"{shlex.quote(python)} -c {shlex.quote(BOARD_PROBE)}"
    code, out, err = run(command + (f" {_in_home(agent_path)}" if agent_path else ""))
    if code != 0 or not out.strip():
        reason = _last(err, code)
        raise DeployError(
            target,
            f"cannot run '{python}' on the board: {reason}. Install Python 3 there or pass "
            "--remote-python PATH (e.g. a venv's bin/python)",
            missing=[python],
        )
    try:
        check = parse_probe(out)
    except (ValueError, KeyError) as exc:
        raise DeployError(
            target, f"unexpected probe output from '{python}': {out[:200]!r}"
        ) from exc
    if not check.ok:
        raise DeployError(
            target,
            f"'{python}' on the board lacks: {'; '.join(check.missing)}. On the board run: "
            f"{python} -m pip install numpy onnxruntime (or pass --remote-python for a venv "
            "that has them)",
            missing=check.missing,
        )
    return check
