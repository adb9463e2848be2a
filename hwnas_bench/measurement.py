"""One benchmark run as a record: the ``Measurement`` and its versioned JSON.

Every figure hwnas-bench prints comes from one of these. The JSON keys are public: users'
scripts read them, so they change only with the schema version (``hwnas.measurement/1``);
new keys may be added within a version and readers ignore keys they do not know.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from device_agent.protocol import BENCH_REPLY_SECTIONS, BenchSettings

from .errors import MeasurementFormatError

SCHEMA = "hwnas.measurement/1"


@dataclass(frozen=True)
class Latency:
    """Statistics of the timed samples, in milliseconds. Outliers are counted, not dropped."""

    n: int
    mean_ms: float
    median_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    iqr_ms: float
    outliers: int


@dataclass(frozen=True)
class Power:
    """Power over the timed window; numbers are None without an honest reading (``reason``)."""

    mean_w: float | None = None
    energy_mj: float | None = None  #: per inference
    source: str | None = None
    reason: str | None = None
    samples: int | None = None
    interval_s: float | None = None
    duration_s: float | None = None
    sample_interval_ms: float | None = None  #: how often the meter was read (``interval_s``)
    #: how often the meter's value changes, as the meter says (None where it does not)
    update_interval_ms: float | None = None
    #: the shortest window that gives this meter an energy figure (a few reads and updates)
    min_window_s: float | None = None


@dataclass(frozen=True)
class Memory:
    peak_rss_mb: float | None = None  #: the agent process's peak RSS during this benchmark
    rss_before_mb: float | None = None
    agent_baseline_rss_mb: float | None = None  #: the agent alone, before any model
    session_reused: bool | None = None
    source: str | None = None


@dataclass(frozen=True)
class Environment:
    governor: Any = None
    cpu_freq_mhz_start: list[float | None] | None = None
    cpu_freq_mhz_end: list[float | None] | None = None
    temperature_c_start: dict[str, float | None] = field(default_factory=dict)
    temperature_c_end: dict[str, float | None] = field(default_factory=dict)
    throttled: bool | None = None
    drift: bool | None = None  #: last quarter of samples significantly slower than the first
    drift_slowdown_pct: float | None = None
    drift_p_value: float | None = None
    #: the board's 1/5/15-minute load averages before and after the run (None where unknown)
    load_avg_start: list[float] | None = None
    load_avg_end: list[float] | None = None
    cpu_count: int | None = None  #: logical CPUs online on the board
    affinity: list[int] | None = None  #: CPUs the agent ran on (``--cpus``, else all allowed)
    #: ``--governor``: {"requested", "applied", "previous", "restored", "reason"}; None if unasked
    governor_request: dict[str, Any] | None = None
    #: why the timing may be disturbed by other work (load above the cores, threads above the
    #: free cores), next to the drift flag; None when nothing was seen
    busy: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    sha256: str
    bytes: int
    name: str | None = None


@dataclass
class MeasuredSettings(BenchSettings, Mapping[str, Any]):
    """The settings a benchmark ran with, as the agent applied them (a capped thread count,
    say), and the execution providers its session used.

    Its JSON (``to_wire``) is the agent's ``settings`` object as it came: the settings, then
    ``providers``, then keys a newer agent adds (kept in ``extra``). It also reads like that
    object (``m.settings["threads"]``), for scripts written when it was a dict.
    """

    #: the providers the session used, in onnxruntime's order (None: the agent did not say)
    providers: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  #: settings this host does not know

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> MeasuredSettings:
        """From a bench reply's (or a saved measurement's) ``settings``: a setting that is
        missing takes its default (an older agent's), one this host does not know goes to
        ``extra``. Values are kept as they came: the agent already checked them."""
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        return cls(**known, extra={k: v for k, v in data.items() if k not in names})

    def to_wire(self) -> dict[str, Any]:
        out = asdict(self)
        extra = out.pop("extra")
        if out["providers"] is None:
            del out["providers"]
        return {**out, **extra}

    def bench_settings(self) -> BenchSettings:
        """The settings alone, to run the same benchmark again (``Device.bench``)."""
        return BenchSettings.from_wire(self.to_wire())

    # -- Mapping: read access as to the JSON object ---------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self.to_wire()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_wire())

    def __len__(self) -> int:
        return len(self.to_wire())


@dataclass(frozen=True)
class Measurement:
    target: str
    board: dict[str, Any]  #: the board's hello facts (``BoardFacts.to_dict()``)
    model: ModelInfo
    settings: MeasuredSettings
    latency: Latency
    samples_ms: list[float]
    throughput_ips: float | None
    power: Power
    memory: Memory
    environment: Environment
    created: str = ""
    stopped_by: str | None = None
    window_s: float | None = None
    warmup: dict[str, Any] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  #: what the agent adjusted, in sentences
    schema: str = SCHEMA

    # -- JSON -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["settings"] = self.settings.to_wire()
        return {"schema": data.pop("schema"), **data}  # schema first, for people reading it

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.to_json() + "\n")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        schema = data.get("schema")
        if not isinstance(schema, str) or not schema.startswith("hwnas.measurement/"):
            raise MeasurementFormatError(f"not a hwnas measurement (schema={schema!r})")
        if schema.split("/", 1)[1].split(".")[0] != SCHEMA.rsplit("/", 1)[1]:
            raise MeasurementFormatError(
                f"unsupported measurement schema {schema!r}; read {SCHEMA}"
            )
        try:
            return cls(
                target=data["target"],
                board=dict(data["board"]),
                model=build_section(ModelInfo, data["model"], "model"),
                settings=_settings(data["settings"], "settings"),
                latency=build_section(Latency, data["latency"], "latency"),
                samples_ms=[float(x) for x in data["samples_ms"]],
                throughput_ips=data["throughput_ips"],
                power=build_section(Power, data["power"], "power"),
                memory=build_section(Memory, data.get("memory", {}), "memory"),
                environment=build_section(Environment, data.get("environment", {}), "environment"),
                created=data.get("created", ""),
                stopped_by=data.get("stopped_by"),
                window_s=data.get("window_s"),
                warmup=dict(data.get("warmup", {})),
                inputs=list(data.get("inputs", [])),
                notes=[str(n) for n in data.get("notes", [])],
                schema=schema,
            )
        except KeyError as exc:
            raise MeasurementFormatError(f"measurement lacks the key {exc.args[0]!r}") from exc

    @classmethod
    def from_json(cls, text: str) -> Measurement:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise MeasurementFormatError(f"not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise MeasurementFormatError("a measurement is a JSON object")
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> Measurement:
        try:
            return cls.from_json(Path(path).read_text())
        except MeasurementFormatError as exc:
            raise MeasurementFormatError(f"{path}: {exc}") from exc


T = TypeVar("T")


def build_section(kind: type[T], data: Any, key: str) -> T:
    """Construct a section, ignoring unknown keys (newer minor versions may add some)."""
    if not isinstance(data, dict):
        raise MeasurementFormatError(f"'{key}' must be an object")
    names = {f.name for f in fields(kind)}  # type: ignore[arg-type]
    try:
        return kind(**{k: v for k, v in data.items() if k in names})
    except TypeError as exc:
        raise MeasurementFormatError(f"'{key}': {exc}") from exc


def _settings(data: Any, key: str) -> MeasuredSettings:
    if not isinstance(data, Mapping):
        raise MeasurementFormatError(f"'{key}' must be an object")
    return MeasuredSettings.from_wire(data)


#: The sections of a bench reply (device_agent.protocol.BENCH_REPLY_SECTIONS), as records.
_SECTIONS: dict[str, type[Any]] = {
    "latency": Latency,
    "power": Power,
    "memory": Memory,
    "environment": Environment,
}
if tuple(_SECTIONS) != BENCH_REPLY_SECTIONS:  # one list in the protocol; fail at import
    raise ImportError(f"Measurement sections {tuple(_SECTIONS)} != {BENCH_REPLY_SECTIONS}")


def from_bench_reply(
    target: str,
    board: dict[str, Any],
    model: ModelInfo,
    reply: Mapping[str, Any],
    samples_ms: list[float],
) -> Measurement:
    """The Measurement for an agent's bench REPLY header.

    Keys an agent adds (in a section or at the top) are ignored, so a newer agent never
    breaks an older host; a section that is missing or malformed raises
    :class:`MeasurementFormatError` naming it.
    """
    try:
        return Measurement(
            target=target,
            board=board,
            model=model,
            settings=_settings(reply["settings"], "settings"),
            samples_ms=samples_ms,
            throughput_ips=reply.get("throughput_ips"),
            **{key: build_section(kind, reply[key], key) for key, kind in _SECTIONS.items()},
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            stopped_by=reply.get("stopped_by"),
            window_s=reply.get("window_s"),
            warmup=dict(reply.get("warmup") or {}),
            inputs=list(reply.get("inputs") or []),
            notes=[str(n) for n in reply.get("notes") or []],
        )
    except KeyError as exc:
        raise MeasurementFormatError(f"bench reply lacks the key {exc.args[0]!r}") from exc
