"""Discrete NVIDIA GPUs through NVML (``pynvml``, imported only when looked for).

From the NVML API reference: ``nvmlDeviceGetTotalEnergyConsumption`` is the GPU's energy
in mJ since the driver was loaded (Volta and newer); ``nvmlDeviceGetPowerUsage`` is in mW
and, on Ampere (except GA100) and newer, an average over 1 s. The energy counter is
preferred: no sampling error at all. Both cover the GPU board only. The module object is
passed in, so a test can hand over a small fake with recorded values.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple, Type, Union

from .errors import PowerReadError
from .meter import KIND_ENERGY, KIND_POWER, PowerMeter
from .probe import Found, Opened, probe

#: NVML's power reading averages over 1 s on Ampere and newer; polling faster than this
#: samples the same average again and again.
NVML_POWER_UPDATE_S = 1.0

NvmlLoader = Callable[[], Any]


def import_pynvml() -> Any:
    """The default loader; raises ImportError when nvidia-ml-py is not installed."""
    import pynvml

    return pynvml


class NvmlMeter(PowerMeter):
    """One GPU: its energy counter, or its power reading when the counter is missing."""

    def __init__(self, nvml: Any, index: int, handle: Any, name: str, use_energy: bool) -> None:
        if use_energy:
            super().__init__(
                source=f"nvml:gpu{index} ({name}) total energy counter, GPU board only",
                kind=KIND_ENERGY,
                scope="gpu",
                wrap_j=None,  # 64-bit mJ: going backwards means a driver reload, not a wrap
            )
        else:
            super().__init__(
                source=f"nvml:gpu{index} ({name}) power usage (1 s average on Ampere+), GPU only",
                kind=KIND_POWER,
                scope="gpu",
                update_interval_s=NVML_POWER_UPDATE_S,
            )
        self._nvml = nvml
        self._handle = handle
        self._errors = _error_types(nvml)

    def read(self) -> float:
        try:
            if self.kind == KIND_ENERGY:
                return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)) / 1e3
            return float(self._nvml.nvmlDeviceGetPowerUsage(self._handle)) / 1e3
        except self._errors as exc:
            raise PowerReadError(f"{self.source}: {exc}") from exc


def find_nvml(loader: Optional[NvmlLoader] = None) -> Found:
    """One meter per GPU NVML can read; reasons for the rest."""
    try:
        nvml = (loader or import_pynvml)()
    except ImportError:
        return [], ["pynvml: not installed"]
    errors = _error_types(nvml)
    try:
        nvml.nvmlInit()
        count = int(nvml.nvmlDeviceGetCount())
    except errors as exc:
        return [], [f"nvml: not usable ({exc})"]

    def open_gpu(index: int) -> Opened:
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = _text(nvml.nvmlDeviceGetName(handle))
        except errors as exc:
            return f"nvml gpu{index}: {exc}"
        return _first_readable(nvml, index, handle, name)

    return probe(range(count), open_gpu, "nvml: no GPU")


def _first_readable(nvml: Any, index: int, handle: Any, name: str) -> Union[PowerMeter, str]:
    """The energy meter if its counter reads, else the power meter, else a reason."""
    failures: List[str] = []
    for use_energy in (True, False):
        meter = NvmlMeter(nvml, index, handle, name, use_energy)
        try:
            meter.read()
        except PowerReadError as exc:
            failures.append(str(exc.__cause__ or exc))
            continue
        return meter
    return f"nvml gpu{index} ({name}): no energy counter ({failures[0]}), no power ({failures[1]})"


def _error_types(nvml: Any) -> Tuple[Type[BaseException], ...]:
    """pynvml raises NVMLError; a module without it (a fake) gets OSError/ValueError only."""
    nvml_error = getattr(nvml, "NVMLError", None)
    base: Tuple[Type[BaseException], ...] = (OSError, ValueError)
    if isinstance(nvml_error, type) and issubclass(nvml_error, BaseException):
        return (*base, nvml_error)
    return base


def _text(value: Any) -> str:
    """Old pynvml returns bytes for names, newer returns str."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
