"""Latency table files: the board fingerprint, where the cache lives, and reading and writing
``hwnas.latency_table/1`` JSON safely (a cache file may be corrupt, huge or hostile)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hwnas_bench import BenchSettings
from hwnas_bench.targets import BOARD_BENCH_KEYS

from ..files import UnsafeRunDirError, open_checked, read_file, write_file

SCHEMA = "hwnas.latency_table/1"
TABLE_FILE = "latency_table.json"
CACHE_ENV = "HWNAS_CACHE_DIR"
#: rounds per op (see table.py); part of the fingerprint, as the entries depend on it
ROUNDS = 3
#: board facts (from hello) that define its speed
SPEED_FACTS = (
    "arch",
    "cpu_model",
    "cores_logical",
    "cores_physical",
    "device_model",
    "jetson_l4t",
    "hostname",
    "onnxruntime",
)
#: measurement settings that change how fast a model runs: how the board runs it, except
#: which power meter reads it
SPEED_SETTINGS = tuple(k for k in BOARD_BENCH_KEYS if k != "power_meter")
#: a table file larger than this, or with more entries, is not read
MAX_FILE_BYTES = 8 << 20
MAX_ENTRIES = 50_000


class TableCacheWarning(UserWarning):
    """A table file that was not read (corrupt, too large, another board's) or not written."""


def _finite(value: Any, low: float, high: float = 1e9) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high
    )


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value < 1 << 40:
        raise ValueError("bad count")
    return value


@dataclass(frozen=True)
class TableEntry:
    """One op as measured: the median over its rounds."""

    key: str
    latency_ms: float  #: the latency statistic of the one-layer model (overhead included)
    energy_mj: float | None  #: per inference; None without a power meter
    runs: int  #: timed runs behind it, all rounds together
    measured_at: str  #: ISO 8601, UTC
    rounds: int = 1
    #: median over the rounds of latency / the overhead model's latency measured beside it;
    #: None for the overhead entry itself
    relative: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, key: str, data: Any) -> TableEntry:
        """Raises ValueError for anything but a well-formed entry."""
        if not isinstance(data, dict) or data.get("key") != key or len(key) > 200:
            raise ValueError("not an entry")
        lat: Any = data.get("latency_ms")
        energy, rel, when = data.get("energy_mj"), data.get("relative"), data.get("measured_at")
        if not _finite(lat, 1e-9) or not (energy is None or _finite(energy, 0.0)):
            raise ValueError("bad figures")
        if not (rel is None or _finite(rel, 1e-9)):
            raise ValueError("bad relative")
        if not isinstance(when, str) or len(when) > 64:
            raise ValueError("bad time")
        return cls(
            key=key,
            latency_ms=float(lat),
            energy_mj=None if energy is None else float(energy),
            runs=_count(data.get("runs")),
            measured_at=when,
            rounds=_count(data.get("rounds", 1)),
            relative=None if rel is None else float(rel),
        )


def speed_identity(facts: Mapping[str, Any], bench: BenchSettings, stat: str) -> dict[str, Any]:
    """What the fingerprint is the hash of (kept in the file, for people reading it)."""
    return {
        "board": {k: facts.get(k) for k in SPEED_FACTS},
        "bench": {k: getattr(bench, k) for k in SPEED_SETTINGS},
        "stat": stat,
        "table": {"schema": SCHEMA, "rounds": ROUNDS},
    }


def fingerprint(facts: Mapping[str, Any], bench: BenchSettings, stat: str) -> str:
    """16 hex digits of the sha256 of :func:`speed_identity`."""
    text = json.dumps(speed_identity(facts, bench, stat), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_root(cache_dir: Path | None = None) -> Path:
    """The folder of cached tables: ``cache_dir``, else $HWNAS_CACHE_DIR, else
    ``$XDG_CACHE_HOME/hwnas-bench/latency_tables`` (``~/.cache`` without XDG_CACHE_HOME)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hwnas-bench" / "latency_tables"


def _ignored(path: Path, why: str) -> dict[str, TableEntry]:
    warnings.warn(f"latency table {path}: {why}", TableCacheWarning, stacklevel=4)
    return {}


def read_entries(path: Path, fp: str, stat: str) -> dict[str, TableEntry]:
    """The file's entries for fingerprint ``fp``; {} for no file, and {} with a
    TableCacheWarning for a file that is not a sane table of that fingerprint. Malformed
    entries are skipped (one warning)."""
    try:  # never through a link, a regular file only (a FIFO hangs, /dev/zero never ends)
        text = read_file(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        return {}
    except UnsafeRunDirError as exc:
        return _ignored(path, str(exc))
    except OSError as exc:
        return _ignored(path, f"cannot read it: {exc.strerror or exc}")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return _ignored(path, f"not a readable JSON table ({type(exc).__name__})")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return _ignored(path, f"not a {SCHEMA} file")
    if data.get("fingerprint") != fp or data.get("stat") != stat:
        return _ignored(path, "it belongs to another board, setting or statistic")
    raw = data.get("entries")
    if not isinstance(raw, dict) or len(raw) > MAX_ENTRIES:
        return _ignored(path, "its entries are not a mapping of a sane size")
    out: dict[str, TableEntry] = {}
    bad = 0
    for key, value in raw.items():
        try:
            out[key] = TableEntry.from_dict(key, value)
        except ValueError:
            bad += 1
    if bad:
        _ignored(path, f"{bad} malformed entries skipped")
    return out


def write_entries(
    path: Path, header: Mapping[str, Any], entries: dict[str, TableEntry]
) -> dict[str, TableEntry]:
    """Write ``entries`` to ``path`` atomically, with the entries another process wrote
    there meanwhile merged in (``entries`` win on a key both hold), under an exclusive lock
    on ``<path>.lock``. Returns the merged entries. Raises OSError (UnsafeRunDirError, an
    OSError too, for a lock file that is a link or not a regular file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.with_name(path.name + ".lock")):
        with warnings.catch_warnings():  # a bad file is replaced now: said when loading
            warnings.simplefilter("ignore", TableCacheWarning)
            merged = read_entries(path, str(header["fingerprint"]), str(header["stat"]))
        merged.update(entries)
        data = {
            "schema": SCHEMA,
            **header,
            "entries": {k: e.to_dict() for k, e in sorted(merged.items())},
        }
        write_file(path, json.dumps(data, indent=1) + "\n")  # by rename, never via a link
    return merged


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:  # a dangling link there must not create its target
        fd = open_checked(path, os.O_RDWR | os.O_CREAT)
    except UnsafeRunDirError as exc:
        raise OSError(errno.ELOOP, str(exc)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
