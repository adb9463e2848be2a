"""Polling a meter on a background thread while the timed loop runs."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Callable, List, Optional, Type

from .errors import PowerError
from .integrate import Sample, integrate, sample_interval_s, window_result
from .meter import PowerMeter
from .result import PowerResult

Clock = Callable[[], float]


class PowerSampler:
    """Samples ``meter`` every ``interval_s`` between :meth:`start` and :meth:`stop`.

    ``interval_s`` is the slowest it polls: a meter that says how often its value changes
    is polled at that interval instead, down to 1 ms (:func:`integrate.sample_interval_s`),
    so a short window still holds enough samples; faster would only repeat values.
    A read that fails ends sampling; the result is then None with the reason, never
    a number made of part of the window.
    """

    def __init__(
        self, meter: PowerMeter, interval_s: float = 0.1, clock: Clock = time.monotonic
    ) -> None:
        if not interval_s > 0:
            raise ValueError("interval_s must be > 0")
        self.meter = meter
        self.requested_interval_s = interval_s
        self.interval_s = sample_interval_s(interval_s, meter.update_interval_s)
        self._clock = clock
        self._samples: List[Sample] = []
        self._error: Optional[str] = None
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._started = False
        self.result: Optional[PowerResult] = None

    @property
    def samples(self) -> List[Sample]:
        """A copy of the (t, reading) samples taken so far; complete after :meth:`stop`."""
        return list(self._samples)

    def start(self) -> None:
        """Take a first reading now, then poll on a daemon thread."""
        if self._started:
            raise RuntimeError("a PowerSampler is started once")
        self._started = True
        if self._sample():
            self._thread = threading.Thread(target=self._poll, name="power-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> PowerResult:
        """Stop polling, take a last reading and integrate the window."""
        if not self._started:
            raise RuntimeError("stop() before start()")
        if self.result is not None:
            return self.result
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        if self._error is None:
            self._sample()  # after the join: samples stay in time order
        self.result = self._integrate()
        return self.result

    def _integrate(self) -> PowerResult:
        meter = self.meter
        if self._error is not None:
            return window_result(
                self._samples,
                meter.source,
                self.interval_s,
                meter.update_interval_s,
                None,
                self._error,
            )
        return integrate(
            self._samples,
            meter.kind,
            meter.source,
            self.interval_s,
            wrap_j=meter.wrap_j,
            update_interval_s=meter.update_interval_s,
        )

    def _poll(self) -> None:
        # Event.wait, not sleep: stop() ends the wait at once instead of up to interval_s later.
        while not self._stopping.wait(self.interval_s):
            if not self._sample():
                return

    def _sample(self) -> bool:
        """Append one sample stamped at the middle of the read; False once a read failed."""
        before = self._clock()
        try:
            value = self.meter.read()
        except (PowerError, OSError, ValueError) as exc:
            self._error = f"sensor read failed: {exc}"
            return False
        after = self._clock()
        self._samples.append(((before + after) / 2.0, value))
        return True

    def __enter__(self) -> PowerSampler:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()
