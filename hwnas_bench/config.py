"""Board configuration: ``hwnas.toml`` or ``[tool.hwnas]`` in ``pyproject.toml``.

::

    [boards.pi5]
    transport = "ssh"
    host = "pi5.local"
    user = "pi"
    python = "/home/pi/venv/bin/python"
    profile = "raspberry-pi-5"
    tags = ["pi5", "arm64"]

    [boards.pi5.bench]       # how this board runs a model (BOARD_BENCH_KEYS); wins over callers'
    threads = 4
    cpus = "0-3"             # or [0, 1, 2, 3]

    [farm]
    lock_url = "postgresql://hwnas@db.lab:5432/hwnas"  # leases shared by several hosts

Every mistake is reported as one line naming the file, the board and the key.
"""

from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from device_agent.protocol import BenchSettings

from .errors import ConfigError, UnknownTargetError
from .lock_url import check_lock_url
from .plugins import transport_plugins
from .targets import BOARD_BENCH_KEYS, COMMON_KEYS, LOCAL, TargetSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

CONFIG_ENV = "HWNAS_CONFIG"
TOP_LEVEL_KEYS = ("boards", "farm")
#: Keys of the ``[farm]`` table.
FARM_KEYS = ("lock_url",)


@dataclass(frozen=True)
class Config:
    boards: dict[str, TargetSpec] = field(default_factory=lambda: {"local": LOCAL})
    path: Path | None = None
    #: ``[farm] lock_url``: a PostgreSQL URL for leases across hosts (None: lock files);
    #: it may hold a password, so it is left out of the repr.
    lock_url: str | None = field(default=None, repr=False)

    def target(self, name: str) -> TargetSpec:
        try:
            return self.boards[name]
        except KeyError:
            where = f" in {self.path}" if self.path else " (no config file found)"
            hint = _did_you_mean(name, self.boards)
            raise UnknownTargetError(
                f"no board named '{name}'{where}; known: {', '.join(sorted(self.boards))}{hint}"
            ) from None

    def with_tag(self, tag: str) -> list[TargetSpec]:
        return [spec for spec in self.boards.values() if tag in spec.tags]


def parse_cpu_list(text: str) -> list[int]:
    """``"0,2-3"`` -> ``[0, 2, 3]``: the Linux cpuset list syntax (``taskset -c``).

    Raise ValueError saying what is wrong: an empty item, a reversed range, a repeat.
    """
    cpus: list[int] = []
    for item in (part.strip() for part in text.split(",")):
        first, sep, last = item.partition("-")
        if not first.strip().isdigit() or (sep and not last.strip().isdigit()):
            raise ValueError(f"expected CPU numbers and ranges such as 0,2-3, got '{text}'")
        low, high = int(first), int(last) if sep else int(first)
        if high < low:
            raise ValueError(f"range '{item}' runs backwards")
        cpus.extend(range(low, high + 1))
    if len(set(cpus)) != len(cpus):
        raise ValueError(f"'{text}' names a CPU twice")
    return cpus


def _did_you_mean(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def find_config(start: Path | None = None) -> Path | None:
    """$HWNAS_CONFIG, else hwnas.toml or a pyproject.toml with [tool.hwnas] in the working
    directory or its parents, else ~/.config/hwnas/hwnas.toml."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "hwnas.toml").is_file():
            return folder / "hwnas.toml"
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and b"[tool.hwnas" in pyproject.read_bytes():
            return pyproject
    user = Path("~/.config/hwnas/hwnas.toml").expanduser()
    return user if user.is_file() else None


def load_config(path: Path | str | None = None) -> Config:
    """Read the board configuration; without a file, only ``local`` is known."""
    found = Path(path) if path is not None else find_config()
    if found is None:
        return Config()
    file = str(found)
    try:
        data = tomllib.loads(found.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=file) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=file) from exc
    if found.name == "pyproject.toml":
        data = data.get("tool", {}).get("hwnas", {})
    return Config(parse_boards(data, file), found, parse_farm(data.get("farm", {}), file))


def parse_boards(data: dict[str, Any], file: str) -> dict[str, TargetSpec]:
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            hint = _did_you_mean(key, TOP_LEVEL_KEYS)
            raise ConfigError(f"unknown top-level key{hint}", file=file, key=key)
    boards = data.get("boards", {})
    if not isinstance(boards, dict):
        raise ConfigError("'boards' must be a table of boards", file=file, key="boards")
    specs = {"local": LOCAL}
    for name, table in boards.items():
        if not isinstance(table, dict):
            raise ConfigError("a board must be a table", file=file, board=name)
        specs[name] = parse_board(name, table, file)
    return specs


def parse_farm(table: Any, file: str) -> str | None:
    """The ``[farm]`` table's ``lock_url`` (checked: a PostgreSQL URL), or None."""
    if not isinstance(table, dict):
        raise ConfigError("'farm' must be a table", file=file, key="farm")
    for key in table:
        if key not in FARM_KEYS:
            hint = _did_you_mean(key, FARM_KEYS)
            raise ConfigError(f"unknown key in [farm]{hint}", file=file, key=key)
    url = table.get("lock_url")
    if url is None:
        return None
    if not isinstance(url, str):
        raise ConfigError(f"must be a string, got {type(url).__name__}", file=file, key="lock_url")
    return check_lock_url(url, f"{file}: [farm] lock_url")


def _check_type(value: Any, kind: type | tuple[type, ...], file: str, name: str, key: str) -> None:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        kinds = ()  # TOML true is not a number here
    if not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ConfigError(f"must be {names}, got {value!r}", file=file, board=name, key=key)


def parse_board(name: str, table: dict[str, Any], file: str) -> TargetSpec:
    plugins = transport_plugins()
    transport = table.get("transport", "local" if name == "local" else None)
    if transport is None:
        raise ConfigError(
            f"missing (one of: {', '.join(plugins)})", file=file, board=name, key="transport"
        )
    if transport not in plugins:
        hint = _did_you_mean(str(transport), plugins)
        raise ConfigError(
            f"unknown transport '{transport}'{hint}", file=file, board=name, key="transport"
        )
    plugin = plugins[transport]
    allowed = {**COMMON_KEYS, **plugin.keys}
    for key, value in table.items():
        if key not in allowed:
            hint = _did_you_mean(key, allowed)
            raise ConfigError(
                f"unknown key for a {transport} board{hint}", file=file, board=name, key=key
            )
        if key != "bench":  # parse_bench says more than "must be dict"
            _check_type(value, allowed[key], file, name, key)
    for key in plugin.required:
        if key not in table:
            raise ConfigError(f"required for a {transport} board", file=file, board=name, key=key)
    tags = table.get("tags", [])
    if not all(isinstance(t, str) for t in tags):
        raise ConfigError("tags must be strings", file=file, board=name, key="tags")
    profile = table.get("profile")
    if profile is not None:
        _check_profile(profile, file, name)
    return TargetSpec(
        name=name,
        transport=transport,
        options={k: v for k, v in table.items() if k in plugin.keys},
        profile=profile,
        tags=tuple(tags),
        timeout=float(table.get("timeout", 30.0)),
        token=table.get("token"),
        source=file,
        bench=parse_bench(table.get("bench", {}), file, name),
    )


def parse_bench(table: Any, file: str, board: str) -> dict[str, Any]:
    """A board's ``bench`` table, checked now as the agent would check it, so a typo stops
    the config load instead of the first benchmark. ``cpus`` may be a list or ``"0,2-3"``."""
    if not isinstance(table, dict):
        raise ConfigError(
            "must be a table ([boards.NAME.bench] or bench = {threads = 2})",
            file=file,
            board=board,
            key="bench",
        )
    timing = {f.name for f in fields(BenchSettings)} - set(BOARD_BENCH_KEYS)
    for key in table:
        if key not in BOARD_BENCH_KEYS:
            why = (
                " (how long to time is the caller's choice, not a board's)"
                if key in timing
                else _did_you_mean(key, BOARD_BENCH_KEYS)
            )
            raise ConfigError(
                f"unknown key for a board's bench table{why}; "
                f"it takes {', '.join(BOARD_BENCH_KEYS)}",
                file=file,
                board=board,
                key=f"bench.{key}",
            )
    bench = dict(table)
    if isinstance(bench.get("cpus"), str):
        try:
            bench["cpus"] = parse_cpu_list(bench["cpus"])
        except ValueError as exc:
            raise ConfigError(str(exc), file=file, board=board, key="bench.cpus") from exc
    for key, value in bench.items():  # one at a time, so the error names the key at fault
        try:
            replace(BenchSettings(), **{key: value}).validate()
        except ValueError as exc:
            raise ConfigError(
                f"{exc}, got {table[key]!r}", file=file, board=board, key=f"bench.{key}"
            ) from exc
    return bench


def _check_profile(profile: str, file: str, board: str) -> None:
    import hw_targets

    known = hw_targets.hardware_profiles()
    if profile != "local" and profile not in known:
        hint = _did_you_mean(profile, known)
        raise ConfigError(
            f"unknown hardware profile '{profile}'{hint}; `hwnas targets list` shows them",
            file=file,
            board=board,
            key="profile",
        )
