"""A board's ``hello`` facts as a typed record: ``BoardFacts``.

The agent's hello reply (device_agent ``Handlers.hello_facts`` and the server's
``counters``/``heartbeat_s``) is plain JSON. Here each key the host knows is a typed field,
checked once on arrival, so a wrong type is an error naming the key rather than a crash deep
in a report. An older agent may lack keys (their fields stay None, and are left out again by
:meth:`BoardFacts.to_dict`); a newer one may add keys (kept in ``extra``). ``to_dict()``
gives back what came in, in the same order, so files written from facts keep their JSON.

``BoardFacts`` is also a read-only ``Mapping`` of those JSON values (``facts["arch"]``,
``facts.get("providers")``): scripts and plugins written when the facts were a dict keep
working, and hw_targets' hooks receive ``to_dict()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import BoardFactsError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_flag(value: Any) -> bool:
    return isinstance(value, bool)


def _is_object(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_texts(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _is_objects(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, Mapping) for v in value)


def _is_clocks(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(v is None or _is_number(v) for v in value)


def _is_governor(value: Any) -> bool:  # one name, or {"cpuN": name} when the CPUs differ
    return isinstance(value, str) or (
        isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values())
    )


#: what each known key holds (every one may also be null), and its check
_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "int": ("an integer", _is_int),
    "number": ("a number", _is_number),
    "str": ("a string", _is_str),
    "flag": ("true or false", _is_flag),
    "object": ("an object", _is_object),
    "texts": ("a list of strings", _is_texts),
    "objects": ("a list of objects", _is_objects),
    "clocks": ("a list of numbers", _is_clocks),
    "governor": ("a governor name or an object of them", _is_governor),
}


def _fact(kind: str, default: Any = None) -> Any:
    """A field for the hello key of its name; ``kind`` is a key of ``_KINDS``."""
    return field(default=default, metadata={"kind": kind})


@dataclass(frozen=True, eq=False)
class BoardFacts(Mapping[str, Any]):
    """What a board's agent says about itself in ``hello``. None: the agent did not say."""

    agent_version: str | None = _fact("str")
    protocol: int | None = _fact("int")
    pid: int | None = _fact("int")
    hostname: str | None = _fact("str")
    arch: str | None = _fact("str")
    cpu_model: str | None = _fact("str")
    cores_logical: int | None = _fact("int")
    cores_physical: int | None = _fact("int")
    memory_mb: float | None = _fact("number")
    os: str | None = _fact("str")
    kernel: str | None = _fact("str")
    device_model: str | None = _fact("str")
    jetson_l4t: str | None = _fact("str")
    python: str | None = _fact("str")
    numpy: str | None = _fact("str")
    onnxruntime: str | None = _fact("str")
    onnxruntime_error: str | None = _fact("str")
    #: onnxruntime's available execution providers on the board
    providers: tuple[str, ...] = _fact("texts", ())
    governor: str | Mapping[str, str] | None = _fact("governor")
    cpu_freq_mhz: tuple[float | None, ...] | None = _fact("clocks")
    cpu_freq_max_mhz: tuple[float | None, ...] | None = _fact("clocks")
    temperature_c: Mapping[str, float | None] | None = _fact("object")
    throttled: bool | None = _fact("flag")
    #: one object per meter: source, kind, scope, update_interval_ms
    power_meters: tuple[Mapping[str, Any], ...] = _fact("objects", ())
    #: the tree the meters read ("/" on a real board; a stand-in for /sys in tests)
    power_root: str | None = _fact("str")
    power_unavailable: str | None = _fact("str")  #: why no meter, when there is none
    cache: Mapping[str, Any] | None = _fact("object")  #: the model cache: dir, max_bytes, models
    agent_rss_mb: float | None = _fact("number")
    max_input_bytes: int | None = _fact("int")
    max_output_bytes: int | None = _fact("int")
    counters: Mapping[str, Any] | None = _fact("object")  #: line health
    heartbeat_s: float | None = _fact("number")
    #: keys this host does not know (a newer agent's), as they came
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: the keys that came, in their order (what ``to_dict`` and the Mapping give back);
    #: empty for facts built field by field: then the fields that are not None
    keys_sent: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not self.keys_sent:
            given = [
                f.name
                for f in _known_fields()
                if getattr(self, f.name) not in (None, (), {})  # the defaults: not said
            ]
            object.__setattr__(self, "keys_sent", (*given, *self.extra))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> BoardFacts:
        """The facts of a hello reply (or of a file written from one).

        Missing keys are left None; unknown keys go to ``extra``; a known key of the wrong
        type raises :class:`BoardFactsError` naming it.
        """
        if isinstance(data, BoardFacts):
            return data
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            kind = _KIND_OF.get(key)
            if kind is None:
                extra[key] = value
                continue
            what, check = _KINDS[kind]
            if value is not None and not check(value):
                raise BoardFactsError(
                    f"board facts: {key!r} must be {what} or null, not {value!r}"[:200], key
                )
            known[key] = tuple(value) if isinstance(value, list) else value
        return cls(**known, extra=extra, keys_sent=tuple(str(k) for k in data))

    def to_dict(self) -> dict[str, Any]:
        """The facts as JSON values, the keys as they came (lists, not tuples)."""
        return {key: self[key] for key in self.keys_sent}

    # -- Mapping (read access as to the dict the facts were) ------------------------------

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys_sent:
            raise KeyError(key)
        if key in _KIND_OF:
            return _json_value(getattr(self, key))
        return self.extra[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys_sent)

    def __len__(self) -> int:
        return len(self.keys_sent)

    def __contains__(self, key: object) -> bool:
        return key in self.keys_sent

    # -- what several places derive -------------------------------------------------------

    @property
    def cores(self) -> int | None:
        """Physical cores where known, else logical CPUs."""
        return self.cores_physical or self.cores_logical

    @property
    def what(self) -> str | None:
        """The board's model in a few words: device model, else CPU model, else arch."""
        return self.device_model or self.cpu_model or self.arch

    @property
    def power_meter_sources(self) -> list[str]:
        return [str(m.get("source")) for m in self.power_meters]


def _known_fields() -> tuple[Any, ...]:
    return tuple(f for f in fields(BoardFacts) if "kind" in f.metadata)


#: key -> its kind, for every known fact
_KIND_OF: dict[str, str] = {f.name: f.metadata["kind"] for f in _known_fields()}


def _json_value(value: Any) -> Any:
    """A field's value as JSON had it: tuples back to lists, mappings to dicts."""
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _json_value(v) for k, v in value.items()}
    return value
