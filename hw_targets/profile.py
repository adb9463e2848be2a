"""Hardware profiles: an inert, validated description of a board, read from a TOML file.

A profile says what the board *is* (CPU, memory, accelerators, power modes, the
onnxruntime execution providers that work there, the power sensors it carries); it never
measures anything. The search reads it to prune architectures that cannot fit, the farm to
label boards, people to compare boards. docs/hardware.md describes every field.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

ARCHES = ("aarch64", "armv7l", "x86_64", "riscv64")
ACCELERATOR_KINDS = ("gpu", "npu", "dpu", "dsp", "fpga", "tpu")


class HwTargetsError(Exception):
    """Root of hw_targets' errors."""


class PluginError(HwTargetsError):
    """Plugins that clash (two define the same profile or transport) or return bad objects."""


class ProfileError(HwTargetsError, ValueError):
    """A profile file that does not follow the schema; names the file and the key."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        where = ": ".join(p for p in (file, f"key '{key}'" if key else None) if p)
        super().__init__(f"{where}: {message}" if where else message)
        self.file, self.key = file, key


@dataclass(frozen=True)
class CpuSpec:
    arch: str  #: as ``uname -m`` prints it
    cores: int  #: physical cores
    max_clock_mhz: float | None  #: None only where unknown (a detected `local` machine)
    microarchitecture: str  #: e.g. "Cortex-A76", "Zen 3"
    threads: int | None = None  #: hardware threads, if more than cores
    isa_extensions: tuple[str, ...] = ()  #: e.g. ("neon", "dotprod", "avx2")
    clusters: str | None = None  #: big.LITTLE layout, e.g. "4x A78AE + 4x A78AE"


@dataclass(frozen=True)
class MemorySpec:
    total_mb: int  #: of the configuration this profile describes
    type: str | None = None  #: e.g. "LPDDR4X-4267"
    bandwidth_gbs: float | None = None  #: peak, GB/s
    variants_mb: tuple[int, ...] = ()  #: other sizes the board is sold with
    shared_with_accelerators: bool = False  #: unified memory (Jetson)


@dataclass(frozen=True)
class Accelerator:
    name: str
    kind: str  #: one of ACCELERATOR_KINDS
    #: peak throughput by precision, e.g. {"fp16_tflops": 0.47, "int8_tops": 40}
    peak: Mapping[str, float] = field(default_factory=dict)
    #: the onnxruntime execution provider that reaches it, if any
    execution_provider: str | None = None
    notes: str | None = None


@dataclass(frozen=True)
class PowerMode:
    name: str  #: e.g. "MAXN", "15W"
    watts: float  #: the mode's power budget
    max_cpu_mhz: float | None = None
    online_cores: int | None = None


@dataclass(frozen=True)
class PowerSpec:
    typical_w: float | None = None  #: under load, as published
    idle_w: float | None = None
    max_w: float | None = None  #: TDP or the supply's limit
    modes: tuple[PowerMode, ...] = ()
    #: source-name prefixes of the agent's power meters that this board has (docs/hardware.md)
    sensors: tuple[str, ...] = ()


@dataclass(frozen=True)
class HardwareProfile:
    name: str  #: the id used in configs: "raspberry-pi-5"
    display_name: str
    vendor: str
    cpu: CpuSpec
    memory: MemorySpec
    execution_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    accelerators: tuple[Accelerator, ...] = ()
    power: PowerSpec = field(default_factory=PowerSpec)
    notes: str | None = None
    source: str | None = None  #: the file it came from, or "detected" for `local`

    def summary(self) -> str:
        """One line for listings."""
        accel = ", ".join(a.name for a in self.accelerators) or "no accelerator"
        clock = f" @ {self.cpu.max_clock_mhz:.0f} MHz" if self.cpu.max_clock_mhz else ""
        return (
            f"{self.cpu.cores}x {self.cpu.microarchitecture}{clock}, "
            f"{self.memory.total_mb / 1024:.0f} GB, {accel}"
        )


_SECTIONS: dict[str, type] = {"cpu": CpuSpec, "memory": MemorySpec, "power": PowerSpec}


def _build(kind: type, data: Any, file: str, key: str) -> Any:
    if not isinstance(data, dict):
        raise ProfileError("must be a table", file=file, key=key)
    known = {f.name: f for f in fields(kind)}
    for name in data:
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ProfileError(f"unknown field{hint}", file=file, key=f"{key}.{name}")
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name == "modes":
            value = tuple(_build(PowerMode, m, file, f"{key}.modes") for m in value)
        elif isinstance(value, list):
            value = tuple(value)
        values[name] = value
    try:
        return kind(**values)
    except TypeError as exc:
        raise ProfileError(f"missing or wrong fields ({exc})", file=file, key=key) from exc


def profile_from_dict(data: Mapping[str, Any], file: str = "<dict>") -> HardwareProfile:
    """Validate and build a profile; raise ProfileError naming the file and key."""
    data = dict(data)
    top = {f.name for f in fields(HardwareProfile)} - {"source"}
    for key in data:
        if key not in top:
            raise ProfileError("unknown field", file=file, key=key)
    for key in ("name", "display_name", "vendor", "cpu", "memory"):
        if key not in data:
            raise ProfileError("required", file=file, key=key)
    values: dict[str, Any] = {k: v for k, v in data.items() if k not in _SECTIONS}
    for key, kind in _SECTIONS.items():
        if key in data:
            values[key] = _build(kind, data[key], file, key)
    values["accelerators"] = tuple(
        _build(Accelerator, a, file, "accelerators") for a in data.get("accelerators", [])
    )
    values["execution_providers"] = tuple(
        data.get("execution_providers", ("CPUExecutionProvider",))
    )
    profile = HardwareProfile(**values, source=file)
    _check(profile, file)
    return profile


def _check(p: HardwareProfile, file: str) -> None:
    if p.cpu.arch not in ARCHES:
        raise ProfileError(
            f"'{p.cpu.arch}' is not one of {', '.join(ARCHES)}", file=file, key="cpu.arch"
        )
    for key, value in (("cpu.cores", p.cpu.cores), ("memory.total_mb", p.memory.total_mb)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ProfileError("must be a positive integer", file=file, key=key)
    clock = p.cpu.max_clock_mhz
    if not isinstance(clock, (int, float)) or isinstance(clock, bool) or clock <= 0:
        raise ProfileError("must be a positive number", file=file, key="cpu.max_clock_mhz")
    for accel in p.accelerators:
        if accel.kind not in ACCELERATOR_KINDS:
            raise ProfileError(
                f"'{accel.kind}' is not one of {', '.join(ACCELERATOR_KINDS)}",
                file=file,
                key="accelerators.kind",
            )
    if not p.execution_providers or "CPUExecutionProvider" not in p.execution_providers:
        raise ProfileError(
            "must list CPUExecutionProvider (every onnxruntime build has it)",
            file=file,
            key="execution_providers",
        )


def load_profile(path: Path) -> HardwareProfile:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"not valid TOML: {exc}", file=str(path)) from exc
    return profile_from_dict(data, str(path))


def builtin_profile_files() -> list[Path]:
    return sorted((Path(__file__).parent / "profiles").glob("*.toml"))
