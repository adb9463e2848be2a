"""The per-layer latency lookup table: one-layer models measured on the board, cached.

Each distinct op (a flat layer or a block, ``ops.Op``) is measured once as a one-op ONNX
model and kept under a
*fingerprint* of what defines the board's speed (its facts from ``hello``, the onnxruntime
version, the execution provider, threads, graph optimisation, pinned CPUs, governor, and the
latency statistic). The table lives in the run directory (``latency_table.json``) and in a
user cache (``<cache>/<fingerprint>.json``), so a second search on the same board measures
only the layers it has not seen.

Timings of 10-30 µs models drift between speed states within seconds on small machines
(``local`` here: ~0.6x for a fraction of a second now and then). So each op is measured in
``ROUNDS`` short rounds, each next to the overhead model (``O A O B O ... O``), and an entry
keeps, besides the median of what was measured, the median of its ratios to the overhead
measured beside it: the entries of one table then share one footing, whenever they were
measured.
"""

from __future__ import annotations

import datetime
import statistics
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from hwnas_bench import BenchFailure, BenchSettings, Measurement

from ..errors import SearchError
from ..measure import Board, latency_of
from ..settings import check_stat
from .ops import OVERHEAD, Op, op_onnx
from .store import (
    ROUNDS,
    TABLE_FILE,
    TableCacheWarning,
    TableEntry,
    cache_root,
    fingerprint,
    read_entries,
    speed_identity,
    write_entries,
)

__all__ = ["ROUNDS", "TABLE_LOOP", "LatencyTable", "TableEntry", "TableError", "table_bench"]

#: the timed loop of a table measurement: short (a 12 µs model still gets ~2,000 runs), so
#: that a round is over before the machine changes speed; a board with a power meter keeps
#: its own loop (an energy figure needs a window of several meter readings), unless energy
#: is wanted: then the short loop, raised to the meter's window (``table_bench``)
TABLE_LOOP: dict[str, Any] = {"min_time_s": 0.03, "warmup_min_s": 0.01, "min_iterations": 30}
#: agent error codes that are about the model itself (the op), not the board or the link
_MODEL_CODES = {
    "invalid_model",
    "bad_input",
    "runtime_error",
    "out_of_memory",
    "model_too_large",
    "input_too_large",
    "output_too_large",
}


class TableError(SearchError):
    """A table entry that cannot be had: the board refused to run a one-layer model (``key``
    names the op, the message says why), an op the table lacks, a run file not writable."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def table_bench(board: Board) -> BenchSettings:
    """The board's settings with the table's short loop (never longer than the board's).
    On a board with a meter: its own loop; with energy wanted, the short loop raised to
    the window the meter needs (``Board.energy_settings``)."""
    loop = {k: min(v, getattr(board.bench, k)) for k, v in TABLE_LOOP.items()}
    if board.has_power_meter and board.energy:
        return board.energy_settings(replace(board.bench, **loop))
    if board.has_power_meter:
        return board.bench
    return replace(board.bench, **loop)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class LatencyTable:
    """Entries by op key, for one board fingerprint and latency statistic."""

    def __init__(
        self,
        fingerprint: str,
        stat: str,
        entries: Mapping[str, TableEntry] | None = None,
        *,
        files: Iterable[Path] = (),
        bench: BenchSettings | None = None,
        identity: Mapping[str, Any] | None = None,
    ) -> None:
        self.fingerprint, self.stat = fingerprint, check_stat(stat)
        self.entries: dict[str, TableEntry] = dict(entries or {})
        self.files = list(files)  #: written by save(): the run directory's, then the cache's
        self.bench = bench
        self.identity = dict(identity or {})
        self.measured = 0  #: one-layer ops measured by this object
        self.benches = 0  #: one-layer benchmarks that took (ROUNDS per op, and the overheads)

    @classmethod
    def for_board(
        cls, board: Board, stat: str, run_dir: Path, *, cache_dir: Path | None = None
    ) -> LatencyTable:
        """The table of ``board`` (connected first if it is not): what the cache and the run
        directory hold for its fingerprint; nothing is measured here."""
        if not board.facts:
            board.connect()
        identity = speed_identity(board.facts, board.bench, check_stat(stat))
        fp = fingerprint(board.facts, board.bench, stat)
        run_file = Path(run_dir) / TABLE_FILE
        cache_file = cache_root(cache_dir) / f"{fp}.json"
        table = cls(
            fp, stat, files=[run_file, cache_file], bench=table_bench(board), identity=identity
        )
        for path in (cache_file, run_file):  # the run's own entries win
            table.entries.update(read_entries(path, fp, table.stat))
        return table

    # -- files ----------------------------------------------------------------------------

    def save(self) -> None:
        """Write every file (the run directory's, then the cache's) atomically, merging
        what another process wrote there meanwhile. A cache that cannot be written is a
        TableCacheWarning; a run directory that cannot be written is a TableError."""
        header = {"fingerprint": self.fingerprint, "stat": self.stat, "identity": self.identity}
        for i, path in enumerate(self.files):
            try:
                merged = write_entries(path, header, self.entries)
            except OSError as exc:
                why = f"latency table {path} not written: {exc.strerror or exc}"
                if i == 0:
                    raise TableError(why) from exc
                warnings.warn(why, TableCacheWarning, stacklevel=2)
                continue
            for key, entry in merged.items():  # another process's entries: ours too now
                self.entries.setdefault(key, entry)

    # -- files ----------------------------------------------------------------------------

    # -- measuring ------------------------------------------------------------------------

    def _lacks(self, key: str, energy: bool) -> bool:
        """No entry for ``key``, or (energy wanted) one without energy: a table measured on
        this board before without energy (the fingerprint leaves the meter out, as it
        changes no speed) gets its energy measured now."""
        entry = self.entries.get(key)
        return entry is None or (energy and entry.energy_mj is None)

    def missing(self, ops: Iterable[Op], *, energy: bool = False) -> list[Op]:
        """The ops without an entry (``energy``: or without its energy), each once, in
        order; the overhead first when it lacks one (every layer's time is relative to it)."""
        out: dict[str, Op] = {}
        if self._lacks(OVERHEAD.key(), energy):
            out[OVERHEAD.key()] = OVERHEAD
        for op in ops:
            if self._lacks(op.key(), energy):
                out.setdefault(op.key(), op)
        return list(out.values())

    def ensure(self, ops: Iterable[Op], board: Board) -> int:
        """Measure the missing ops on ``board`` in one lease and save; how many it measured.
        With energy wanted on a board with a meter, an entry without energy is missing too.

        Board errors (``hwnas_bench.HwnasError``) propagate as they are; a one-layer model
        the board refuses raises TableError naming its op (what did measure is kept).
        """
        energy = bool(getattr(board, "energy", False)) and board.has_power_meter
        todo = [op for op in self.missing(ops, energy=energy) if op.kind != "overhead"]
        need_overhead = self._lacks(OVERHEAD.key(), energy)
        if not todo and not need_overhead:
            return 0
        if self.bench is None:
            self.bench = table_bench(board)
        overhead = op_onnx(OVERHEAD)
        layers = [op_onnx(op) for op in todo]
        models, names = [], []
        for _ in range(ROUNDS):  # O A O B ... O, ROUNDS times over
            for op, model in zip(todo, layers, strict=True):
                models += [overhead, model]
                names += [OVERHEAD.key(), op.key()]
            models.append(overhead)
            names.append(OVERHEAD.key())
        results = board.measure_many(models, names=names, bench=self.bench)
        self.benches += len(results)
        before = dict(self.entries)
        failure = self._add(todo, results, need_overhead)
        # new entries and re-measured ones (an entry that now carries its energy)
        changed = sum(1 for key, entry in self.entries.items() if before.get(key) is not entry)
        self.measured += changed
        if changed:
            self.save()
        if failure is not None:
            raise failure
        return changed

    def _add(
        self, todo: list[Op], results: list[Measurement | BenchFailure], need_overhead: bool
    ) -> Exception | None:
        """New entries from the interleaved results; the first failure, to raise."""
        per_round = 2 * len(todo) + 1
        when = _now()
        overheads = [r for i, r in enumerate(results) if i % per_round % 2 == 0]
        failure = next((r for r in overheads if isinstance(r, BenchFailure)), None)
        if failure is not None:
            return _failure(OVERHEAD.key(), failure)
        good = [r for r in overheads if isinstance(r, Measurement)]
        if need_overhead:
            self.entries[OVERHEAD.key()] = self._entry(OVERHEAD.key(), good, None, when)
        first: Exception | None = None
        for j, op in enumerate(todo):
            runs: list[Measurement] = []
            ratios: list[float] = []
            for r in range(ROUNDS):
                base = r * per_round + 2 * j
                got = results[base + 1]
                if isinstance(got, BenchFailure):
                    first = first or _failure(op.key(), got)
                    break
                before, after = results[base], results[base + 2]
                assert isinstance(before, Measurement)  # overhead failures returned above
                assert isinstance(after, Measurement)
                beside = (latency_of(before, self.stat) + latency_of(after, self.stat)) / 2
                runs.append(got)
                ratios.append(latency_of(got, self.stat) / beside)
            else:
                self.entries[op.key()] = self._entry(op.key(), runs, ratios, when)
        return first

    def _entry(
        self, key: str, runs: list[Measurement], ratios: list[float] | None, when: str
    ) -> TableEntry:
        energies = [m.power.energy_mj for m in runs]
        energy = (
            statistics.median(e for e in energies if e is not None)
            if all(e is not None for e in energies)
            else None
        )
        return TableEntry(
            key=key,
            latency_ms=statistics.median(latency_of(m, self.stat) for m in runs),
            energy_mj=energy,
            runs=sum(m.latency.n for m in runs),
            measured_at=when,
            rounds=len(runs),
            relative=statistics.median(ratios) if ratios else None,
        )

    # -- reading --------------------------------------------------------------------------

    def _get(self, key: str) -> TableEntry:
        try:
            return self.entries[key]
        except KeyError:
            raise TableError(
                f"the latency table has no entry for {key} (ensure() measures it)", key=key
            ) from None

    @property
    def has_energy(self) -> bool:
        """True when the entries carry energy (the board has a power meter)."""
        entry = self.entries.get(OVERHEAD.key())
        return entry is not None and entry.energy_mj is not None

    def overhead_ms(self) -> float:
        return self._get(OVERHEAD.key()).latency_ms

    def layer_ms(self, op: Op) -> float:
        """The op's own time: its entry less the overhead, floored at 0."""
        if op.kind == "overhead":
            return 0.0
        entry, overhead = self._get(op.key()), self.overhead_ms()
        total = entry.relative * overhead if entry.relative is not None else entry.latency_ms
        return max(total - overhead, 0.0)

    def sum_ms(self, ops: Iterable[Op]) -> float:
        """The table's whole-model prior: the overhead once, plus each layer's own time."""
        return self.overhead_ms() + sum(self.layer_ms(op) for op in ops)

    def overhead_energy_mj(self) -> float | None:
        return self._get(OVERHEAD.key()).energy_mj

    def layer_energy_mj(self, op: Op) -> float | None:
        if op.kind == "overhead":
            return 0.0
        entry, overhead = self._get(op.key()), self.overhead_energy_mj()
        if entry.energy_mj is None or overhead is None:
            return None
        return max(entry.energy_mj - overhead, 0.0)

    def sum_energy_mj(self, ops: Iterable[Op]) -> float | None:
        """Like sum_ms for energy; None when any entry has none (no meter: never invented)."""
        total = self.overhead_energy_mj()
        for op in ops:
            part = self.layer_energy_mj(op)
            if total is None or part is None:
                return None
            total += part
        return total


def _failure(key: str, failure: BenchFailure) -> Exception:
    if failure.code in _MODEL_CODES:
        reason = str(failure.error).splitlines()[0]
        return TableError(f"the board cannot measure the one-layer model {key}: {reason}", key=key)
    return failure.error  # the board or the link: as it is
