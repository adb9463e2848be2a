"""Ways to reach an agent: ``local`` (a subprocess), ``ssh`` (paramiko), ``serial`` (pyserial)."""

from __future__ import annotations

from .base import Transport
from .local import LocalTransport

__all__ = ["LocalTransport", "Transport"]
