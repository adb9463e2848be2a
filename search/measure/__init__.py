"""Measure candidates on the target board, leasing it from the farm for each measurement.

A long search thus shares the farm with tests and other searches: between two measurements
the board is free. Errors of the board (it dropped out, the link broke, nobody freed it in
time) are raised as they are (``hwnas_bench`` errors); the search fails that trial with the
reason and goes on, and the next lease reconnects.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import hw_targets
from device_agent.power import min_window_s, sample_interval_s
from device_agent.power.discovery import CPU_PROVIDERS
from hw_targets import HardwareProfile
from hwnas_bench import (
    BenchFailure,
    BenchSettings,
    BoardFacts,
    Config,
    Device,
    Measurement,
    TargetSpec,
    load_config,
)
from hwnas_bench.farm import Farm
from hwnas_bench.targets import BenchRule, table_entries

from ..errors import SettingsError
from ..settings import STATS
from .confidence import Decided, measure_decided, median_round

#: A search measurement: short but still real timed loops (>= 30 runs and 0.25 s in all),
#: one thread so candidates compare on the same footing. Override with ``bench=``.
#: timed loops per candidate measurement (the median one is kept): see Board.measure
ROUNDS = 3

SEARCH_BENCH = BenchSettings(
    threads=1, warmup_runs=1, warmup_min_s=0.1, min_iterations=30, min_time_s=0.25, max_time_s=5.0
)


#: an energy window's room over the agent's own minimum: the samples' span ends a read
#: before the timed window does
WINDOW_ROOM = 1.2
#: MIN_SENSOR_UPDATES / MIN_SAMPLING_PERIODS of device_agent.power.integrate: polling a meter
#: at this fraction of its update interval makes its 3 updates, not 5 polls, the window it
#: needs (each update is read at least once; none is missed)
POLL_FRACTION = 0.6


def latency_of(m: Measurement, stat: str) -> float:
    return float(getattr(m.latency, STATS[stat]))


class Board:
    """The target of a search: ``local``, a configured name, ``tag:X``, or a TargetSpec."""

    def __init__(
        self,
        target: str | TargetSpec = "local",
        *,
        bench: BenchSettings = SEARCH_BENCH,
        lease_timeout: float = 600.0,
        purpose: str = "search",
        config: Config | None = None,
        rounds: int = ROUNDS,
        energy: bool = False,
    ) -> None:
        bench.validate()
        #: the caller's settings; each lease lays its board's [bench] table over them
        self._base = bench
        if not isinstance(rounds, int) or rounds < 1:
            raise SettingsError(f"measurement rounds must be an integer >= 1, got {rounds!r}")
        self.bench, self.lease_timeout, self.purpose = bench, lease_timeout, purpose
        self.rounds = rounds
        # one measurement at a time from this process: the table's one-layer models and a
        # candidate measured on the pool thread never share the board
        self._busy = threading.Lock()
        if isinstance(target, TargetSpec):
            self.config = Config(boards={target.name: target})
            self._what = target.name
        else:
            self.config = config or load_config()
            self._what = target
        #: called with the agent's progress reports during each measurement
        self.on_progress: Callable[[Mapping[str, Any]], None] | None = None
        self._facts = BoardFacts()
        self.board_name = ""  #: the board leased last
        self.spec: TargetSpec | None = None
        self._farm: Farm | None = None
        #: every measurement must give an energy figure: its windows cover the meter's need
        self.energy = energy
        #: the longest window a measurement said this board's meter needs (its min_window_s)
        self._meter_window_s = 0.0

    @property
    def facts(self) -> BoardFacts:
        """The board's hello facts, from the first lease (empty before it)."""
        return self._facts

    @facts.setter
    def facts(self, facts: Mapping[str, Any]) -> None:  # a mapping too: a caller's own facts
        self._facts = BoardFacts.from_mapping(facts)

    @property
    def what(self) -> str:
        return self._what

    @property
    def is_local(self) -> bool:
        """True when training and measuring share this machine (then they never overlap)."""
        specs = self.farm.candidates(self._what)
        return any(s.transport == "local" for s in specs)

    @property
    def farm(self) -> Farm:
        if self._farm is None:
            self._farm = Farm(self.config, purpose=self.purpose)
        return self._farm

    def connect(self) -> BoardFacts:
        """Lease once to learn the board's facts (for its profile and the summary)."""
        with self.farm.lease(self._what, timeout=self.lease_timeout, purpose=self.purpose) as lease:
            self.facts, self.board_name, self.spec = lease.facts, lease.name, lease.spec
        self.bench = self._settings(self._base, lease.spec)
        if self.energy:
            self._check_meter()
        return self.facts

    def want_energy(self) -> None:
        """From now on every measurement must give an energy figure (an energy budget,
        objective or compression goal asks for it). SettingsError at once when the board's
        facts are known and it has no power meter; otherwise at the next lease."""
        self.energy = True
        if self.facts:
            self._check_meter()

    def _check_meter(self) -> None:
        if not self.has_power_meter:
            why = self.facts.power_unavailable or "its agent lists no power meter"
            raise SettingsError(
                f"energy is wanted (an energy budget, objective or compression goal) and "
                f"board {self.board_name or self._what} has no power meter: {why}"
            )

    def bench_tables(self) -> list[dict[str, Any]]:
        """The [bench] table of the boards this target may lease, as a run records it
        (none: []): a resume with another table would mix two ways of measuring.

        A ``tag:X`` target is a pool of interchangeable boards: one latency table and one
        provider choice serve them all. Boards of the tag with different tables would be
        measured two ways under one name, so that is refused (SettingsError)."""
        specs = self.farm.candidates(self._what)
        found = sorted({json.dumps(s.bench, sort_keys=True) for s in specs})
        if len(found) > 1:
            shown = "; ".join(
                f"{s.name}: {', '.join(f'{k}={v}' for k, v in s.bench.items()) or 'none'}"
                for s in specs
            )
            raise SettingsError(
                f"target {self._what}: its boards have different [bench] tables ({shown}); "
                "a target's boards must measure one way: give them one table, or search "
                "them as separate targets (--target NAME per board)"
            )
        return [json.loads(t) for t in found] if found != ["{}"] else []

    def use_provider(self, provider: str) -> None:
        """Measure with ``provider`` from now on (the search's choice for this board)."""
        self._base = replace(self._base, provider=provider)
        self.bench = replace(self.bench, provider=provider)

    @staticmethod
    def _settings(settings: BenchSettings, spec: TargetSpec | None) -> BenchSettings:
        """``settings`` with the board's own [bench] table over them: a search measures
        every candidate one way on a board, the board's."""
        return replace(settings, **table_entries(spec, BenchRule.TABLE_WINS))

    def profile(self) -> HardwareProfile:
        """The board's hw_targets profile: the one the config names, else detected from hello."""
        if not self.facts:
            self.connect()
        name = self.spec.profile if self.spec is not None else None
        if name and name != "local":
            profiles = hw_targets.hardware_profiles()
            if name in profiles:
                return profiles[name]
        return hw_targets.profile_from_facts(self.board_name or "local", self.facts.to_dict())

    @property
    def has_power_meter(self) -> bool:
        return bool(self.facts.power_meters)

    def _meter_facts(self, settings: BenchSettings) -> Mapping[str, Any] | None:
        """The hello entry of the meter the agent will read for ``settings`` (as its
        ``Discovery.select``: the one named, else the first that sees the provider's work)."""
        meters = list(self.facts.power_meters)
        named = settings.power_meter
        if named is not None:
            exact = [m for m in meters if m.get("source") == named]
            meters = exact or [m for m in meters if str(m.get("source", "")).startswith(named)]
        elif settings.provider in CPU_PROVIDERS:
            meters = [m for m in meters if m.get("scope") != "gpu"]
        return meters[0] if meters else None

    def energy_settings(self, settings: BenchSettings) -> BenchSettings:
        """``settings`` for one timed window that gives the board's meter an energy figure:
        the meter polled faster where it says how often it updates (at POLL_FRACTION of
        that, so its 3 updates, not 5 polls, bound the window), and ``min_time_s`` raised
        to the window it then needs (WINDOW_ROOM over the agent's own minimum, or over the
        min_window_s a measurement reported, whichever is longer)."""
        meter = self._meter_facts(settings)
        update_ms = meter.get("update_interval_ms") if meter is not None else None
        update_s = float(update_ms) / 1000.0 if isinstance(update_ms, (int, float)) else None
        interval = settings.power_interval_s
        if update_s is not None and update_s > 0:
            interval = min(interval, POLL_FRACTION * update_s)
        need = max(min_window_s(sample_interval_s(interval, update_s), update_s), 0.0)
        need = max(need, self._meter_window_s) * WINDOW_ROOM
        window = max(settings.min_time_s, need)
        return replace(
            settings,
            power_interval_s=interval,
            min_time_s=window,
            max_time_s=max(settings.max_time_s, window),
        )

    def rounds_for(self, settings: BenchSettings) -> tuple[BenchSettings, int]:
        """Each round's settings and how many rounds, from ``settings`` (one round's, the
        board's table laid over). Energy wanted: the same timed total as without, in fewer
        rounds where one round's share would be shorter than the meter's window (one
        longer loop costs less than three windows of the meter's minimum); at least one
        window of the meter."""
        if not self.energy:
            return settings, self.rounds
        total = settings.min_time_s * self.rounds
        need = self.energy_settings(replace(settings, min_time_s=0.0)).min_time_s
        rounds = max(1, min(self.rounds, int(total // need))) if need > 0 else self.rounds
        return self.energy_settings(replace(settings, min_time_s=total / rounds)), rounds

    def measure(self, model: bytes, *, name: str = "candidate") -> Measurement:
        """``rounds`` timed loops of ``min_time_s / rounds`` each, back to back in one lease;
        the Measurement of the median round (a real one, as the agent made it, never a
        blend). On a small board one short loop now and then lands in a faster or slower
        spell of the machine; the median of three does not follow it.

        With energy wanted each loop is long enough for the board's meter (fewer, longer
        loops where the meter needs it: :meth:`rounds_for`); a window the agent still
        finds too short (it says the window it needs) is measured once more with that."""
        return median_round(self.measure_rounds(model, name=name))

    def measure_decided(
        self, model: bytes, budget: float | None, stat: str, *, name: str = "candidate"
    ) -> Decided:
        """:meth:`measure`, then more rounds (each batch its own lease) while the rounds'
        95% interval of ``stat`` straddles ``budget``: see search/measure/confidence.py."""
        return measure_decided(
            lambda: self.measure_rounds(model, name=name),
            budget,
            stat,
            lambda m: latency_of(m, stat),
        )

    def measure_rounds(self, model: bytes, *, name: str = "candidate") -> list[Measurement]:
        """Every round of one :meth:`measure`, in the order measured."""
        settings = self._base
        if self.rounds > 1:
            settings = replace(settings, min_time_s=settings.min_time_s / self.rounds)
        with (
            self._busy,
            self.farm.lease(
                self._what, timeout=self.lease_timeout, purpose=f"{self.purpose} {name}"
            ) as lease,
        ):
            self.board_name = lease.name
            if self.energy:
                if not self.facts:  # the meter is read from the facts: measured before connect()
                    self.facts, self.spec = lease.facts, lease.spec
                self._check_meter()
            settings = self._settings(settings, lease.spec)
            runs = self._bench_rounds(lease.device, model, settings)
            if self.energy and self._learn_window(runs):
                runs = self._bench_rounds(lease.device, model, settings)
        return runs

    def _bench_rounds(
        self, device: Device, model: bytes, settings: BenchSettings
    ) -> list[Measurement]:
        each, rounds = self.rounds_for(settings)
        return [device.bench(model, each, on_progress=self.on_progress) for _ in range(rounds)]

    def _learn_window(self, runs: list[Measurement]) -> bool:
        """True when a run had no energy because its window was shorter than the meter needs
        (the agent says how long, ``min_window_s``): later windows are sized to that."""
        learnt = False
        for m in runs:
            needed, span = m.power.min_window_s, m.power.duration_s
            if m.power.energy_mj is not None or needed is None or span is None:
                continue
            if span < needed and needed > self._meter_window_s:
                self._meter_window_s, learnt = float(needed), True
        return learnt

    def measure_many(
        self,
        models: list[bytes],
        *,
        names: list[str],
        bench: BenchSettings | None = None,
    ) -> list[Measurement | BenchFailure]:
        """Measure each model in turn, all in one lease (``Device.bench_many``): a lookup
        table of 100 one-layer models is one lease, not 100. One result per model, in
        order; a model the board cannot measure gives a :class:`BenchFailure`. ``bench``
        replaces the board's settings for these models (validated first)."""
        if len(names) != len(models):
            raise ValueError(f"{len(models)} models but {len(names)} names")
        settings = bench or self._base
        settings.validate()
        if not models:
            return []
        label = names[0] if len(names) == 1 else f"{names[0]} and {len(names) - 1} more"
        with (
            self._busy,
            self.farm.lease(
                self._what, timeout=self.lease_timeout, purpose=f"{self.purpose} {label}"
            ) as lease,
        ):
            self.board_name = lease.name
            if not self.facts:
                self.facts, self.spec = lease.facts, lease.spec
            return lease.device.bench_many(models, self._settings(settings, lease.spec))

    def close(self) -> None:
        if self._farm is not None:
            self._farm.close()
            self._farm = None


def bench_settings(overrides: Mapping[str, Any] | None) -> BenchSettings:
    settings = replace(SEARCH_BENCH, **dict(overrides or {}))
    try:
        settings.validate()
    except ValueError as exc:
        raise SettingsError(f"bad measurement setting: {exc}") from exc
    return settings
