"""hwnas-bench host side: reach boards, measure models on them, compare the results.

Works without torch; the search lives in the separate ``search`` package.
"""

from __future__ import annotations

from device_agent.protocol import BenchSettings, ErrorCode

from .config import Config, load_config
from .device import BenchFailure, Device, Profile
from .errors import (
    AgentError,
    BoardFactsError,
    ConfigError,
    ConnectError,
    ConnectionLostError,
    DeployError,
    DeviceTimeoutError,
    HwnasError,
    InputFileError,
    LinkError,
    MeasurementFormatError,
    TargetError,
    UnknownTargetError,
    UsageError,
)
from .facts import BoardFacts
from .farm import BoardBusyError, BoardUnhealthyError, Farm, Lease, NoHealthyBoardError
from .measurement import (
    Environment,
    Latency,
    MeasuredSettings,
    Measurement,
    Memory,
    ModelInfo,
    Power,
)
from .pg_locks import LockServerError
from .targets import TargetSpec

__version__ = "0.1.0"

__all__ = [
    "AgentError",
    "BenchFailure",
    "BenchSettings",
    "BoardBusyError",
    "BoardFacts",
    "BoardFactsError",
    "BoardUnhealthyError",
    "Config",
    "ConfigError",
    "ConnectError",
    "ConnectionLostError",
    "DeployError",
    "Device",
    "DeviceTimeoutError",
    "Environment",
    "ErrorCode",
    "Farm",
    "HwnasError",
    "InputFileError",
    "Latency",
    "Lease",
    "LinkError",
    "LockServerError",
    "MeasuredSettings",
    "Measurement",
    "MeasurementFormatError",
    "Memory",
    "ModelInfo",
    "NoHealthyBoardError",
    "Power",
    "Profile",
    "TargetError",
    "TargetSpec",
    "UnknownTargetError",
    "UsageError",
    "__version__",
    "load_config",
]
