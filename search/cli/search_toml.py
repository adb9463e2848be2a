"""``hwnas search --config search.toml``: read with a cap and checked key by key (a
wrong type, a nesting or an unknown key is one line naming it), never coerced; the
``[compress]`` table made into ``CompressSettings``."""

from __future__ import annotations

import difflib
import os
import stat
import sys
from pathlib import Path
from typing import Any

from ..errors import SettingsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

#: what search.toml may hold for each option (TOML has no paths: they are strings)
_TOML_TYPES: dict[str, tuple[type, ...]] = {
    "target": (str, list),  #: a name, or a list of names (several targets)
    "compress": (bool, dict),  #: true, or a [compress] table of CompressSettings fields
    "channels_first_ok": (bool,),
    "flip_ok": (bool,),
    **dict.fromkeys(("schedule", "augment"), (str,)),
    "final_epochs": (int,),
    **dict.fromkeys(("weight_decay", "label_smoothing"), (int, float)),
    **dict.fromkeys(("dataset", "data", "latency_stat", "strategy", "objective"), (str,)),
    **dict.fromkeys(("optimizer", "predictor"), (str,)),
    **dict.fromkeys(("trials", "epochs", "batch_size", "seed", "threads"), (int,)),
    **dict.fromkeys(
        ("latency_budget_ms", "energy_budget_mj", "memory_budget_mb", "lr", "min_time", "lambda"),
        (int, float),
    ),
}
#: the most of a --config file that is read: a search.toml is a few hundred bytes
CONFIG_CAP = 1 << 20


def _closest(name: str, known: list[str]) -> list[str]:
    """The known setting ``name`` most likely meant: one whose words include it (``budget``
    -> the budgets: named only when that is one), else the closest spelling."""
    holding = [k for k in known if name in k.split("_")]
    if holding:
        return holding if len(holding) == 1 else [" or ".join(holding)]
    return difflib.get_close_matches(name, known, n=1, cutoff=0.6)


def _unknown(what: str, unknown: list[str], known: list[str]) -> str:
    """``unknown settings budgte (did you mean latency_budget_ms?)``."""
    pairs = [(name, close[0]) for name in unknown for close in [_closest(name, known)] if close]
    if len(pairs) == 1 and len(unknown) == 1:
        hint = f" (did you mean {pairs[0][1]}?)"
    elif pairs:
        hint = f" (did you mean {', '.join(f'{b} for {a}' for a, b in pairs)}?)"
    else:
        hint = f" (known: {', '.join(known)})"
    return f"unknown {what} {', '.join(unknown)}{hint}"


def read_regular_file(path: Path, flag: str, cap: int | None) -> bytes | None:
    """The bytes of ``path`` (None: only checked), refused with one line naming ``flag`` when
    it is missing, not a regular file (``/dev/zero``, a FIFO, a directory) or over ``cap``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
    except FileNotFoundError:
        raise SettingsError(f"{flag} {path}: no such file") from None
    except OSError as exc:
        raise SettingsError(f"{flag} {path}: cannot open it ({exc.strerror or exc})") from exc
    mode = os.fstat(fd).st_mode
    problem = None
    if stat.S_ISDIR(mode):
        problem = "is a directory, not a file"
    elif not stat.S_ISREG(mode):
        problem = "not a regular file"
    if problem or cap is None:
        os.close(fd)
        if problem:
            raise SettingsError(f"{flag} {path}: {problem}")
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise SettingsError(f"{flag} {path}: larger than {cap // 1024} KiB, not a search.toml")
    return data


def read_config(config: Path) -> dict[str, Any]:
    raw = read_regular_file(config, "--config", CONFIG_CAP)
    assert raw is not None
    try:
        parsed: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SettingsError(f"--config {config}: not UTF-8 text, not a search.toml") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{config}: not valid TOML: {exc}") from exc
    return parsed


def _flat(value: Any) -> bool:
    """A TOML scalar, or an array of scalars (no nested arrays, no tables)."""
    scalars = (str, int, float, bool)
    if isinstance(value, list):
        return all(isinstance(v, scalars) for v in value)
    return isinstance(value, scalars)


def _check_table(config: Path, name: str, table: dict[str, Any], known: list[str]) -> None:
    """A ``[space]`` or ``[compress]`` table: known keys, each a value or a flat array."""
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise SettingsError(f"{config}: {_unknown(f'[{name}] settings', unknown, known)}")
    for key, value in table.items():
        if not _flat(value):
            raise SettingsError(
                f"{config}: [{name}] {key} must be a value or an array of values "
                f"(no nested arrays or tables), not {value!r}"
            )


def check_toml(config: Path, file: dict[str, Any]) -> None:
    """Known keys; a value of the wrong type is named at once, never coerced (``trials =
    true``); no nested arrays or tables where a value belongs."""
    if "out" in file:
        raise SettingsError(
            f"{config}: out is not a search.toml setting: the run directory is --out DIR"
        )
    unknown = sorted(set(file) - set(_TOML_TYPES) - {"space"})
    if unknown:
        raise SettingsError(f"{config}: {_unknown('settings', unknown, sorted(_TOML_TYPES))}")
    for key, value in file.items():
        kinds = _TOML_TYPES.get(key, ())
        if key == "space":
            if not isinstance(value, dict):
                raise SettingsError(f"{config}: space must be a table ([space]), not {value!r}")
            flat = {k: v for k, v in value.items() if k != "stages"}
            _check_table(config, "space", flat, _space_keys())
            if "stages" in value:
                _check_stages(config, value["stages"])
            continue
        if key == "compress":
            if not isinstance(value, (bool, dict)):
                raise SettingsError(
                    f"{config}: compress must be true, false or a [compress] table, not {value!r}"
                )
            if isinstance(value, dict):
                _check_table(config, "compress", value, sorted(value))  # names: compress_option
            continue
        if key == "target" and isinstance(value, list):
            if not value or not all(isinstance(v, str) and v for v in value):
                raise SettingsError(f"{config}: target must be a name or a list of names")
            continue
        if isinstance(value, bool) or not isinstance(value, kinds):
            wanted = "a number" if float in kinds else "an integer" if int in kinds else "a string"
            raise SettingsError(f"{config}: {key} must be {wanted}, not {value!r}")


def _check_stages(config: Path, table: Any) -> None:
    """``[space.stages]`` and its ``[[space.stages.stage]]`` tables, read as the stage space
    reads them (a bad key or value is one line naming it)."""
    from ..blocks.stages import StageSpace
    from ..errors import SpaceError

    if not isinstance(table, dict):
        raise SettingsError(f"{config}: space.stages must be a table ([space.stages])")
    try:
        StageSpace.from_mapping(table)
    except SpaceError as exc:
        raise SettingsError(f"{config}: {exc}") from exc


def _space_keys() -> list[str]:
    """The ``SearchSpace`` arguments a ``[space]`` table may give (the data gives the
    input shape)."""
    import dataclasses

    from ..space import SearchSpace

    return sorted(f.name for f in dataclasses.fields(SearchSpace) if f.init)


def compress_option(value: bool | dict[str, Any], config: Path | None) -> Any:
    """``--compress`` / ``compress = true`` (the defaults), or a ``[compress]`` table of
    ``CompressSettings`` fields (``tolerance = 0.5``, ``prune_ratios = [0.5]``, ...)."""
    if not isinstance(value, dict):
        return bool(value)
    import dataclasses

    from ..compress import CompressSettings

    names = {f.name for f in dataclasses.fields(CompressSettings)} - {"bench"}
    unknown = sorted(set(value) - names)
    if unknown:
        raise SettingsError(
            f"{config}: unknown [compress] settings {', '.join(unknown)} "
            f"(known: {', '.join(sorted(names))})"
        )
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    try:
        settings = CompressSettings(**fields)
        settings.validate()
    except (TypeError, ValueError) as exc:  # a value of the wrong type
        raise SettingsError(f"{config}: [compress]: {exc}") from exc
    return settings
