"""Requests and replies over a transport: sequence numbers, retries, chunked transfers.

On a reliable stream (local, SSH) a request is sent once and the only failures are a dead
link or a timeout. On a serial line bytes get lost and damaged, so the channel also
- resends a frame the agent NAKed or did not answer in time (same sequence number: the
  agent answers repeats from its reply cache, so nothing runs twice);
- NAKs a damaged reply, so the agent sends it again;
- sizes upload chunks adaptively, halving after a failed chunk and doubling after a run of
  clean ones (as ZMODEM does), so a noisy line still makes progress and a clean one is fast.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from device_agent.protocol import (
    MAX_PAYLOAD,
    DamagedFrame,
    Frame,
    FrameDecoder,
    FrameType,
    Op,
    Skipped,
    encode_frame,
)

from .errors import AgentError, DeviceTimeoutError, LinkError
from .pacing import ChunkSizer, Deadline, RetryTimer
from .transports.base import Transport

ProgressCallback = Callable[[Mapping[str, Any]], None]

#: A frame that started arriving and then paused this long is abandoned as truncated.
GAP_TIMEOUT_S = 1.0

#: Damage that sending the same frame again can cure (line noise); the rest cannot.
_RESENDABLE = ("crc", "truncated")


@dataclass
class LinkStats:
    """Bytes and incidents on the wire since the channel was made (for benchmarks/)."""

    wire_tx: int = 0
    wire_rx: int = 0
    resends: int = 0
    naks_sent: int = 0
    damaged: int = 0
    skipped_bytes: int = 0


@dataclass(frozen=True)
class Reply:
    header: dict[str, Any]
    payload: bytes


class Channel:
    def __init__(
        self,
        transport: Transport,
        *,
        retry_s: float = 0.4,
        max_attempts: int = 12,
        heartbeat_s: float = 1.0,
        seed: int | None = None,
    ) -> None:
        self.transport = transport
        self.heartbeat_s = heartbeat_s  #: the agent's PROGRESS interval (its --heartbeat-s)
        self.max_attempts = max_attempts
        self.stats = LinkStats()
        self._decoder = FrameDecoder()
        self._last_rx = time.monotonic()  # when the last byte arrived
        self._seq = random.Random(seed).randrange(1, 1 << 31)
        reliable = transport.reliable
        self.timer = RetryTimer(initial=retry_s)
        self.sizer = ChunkSizer(
            size=MAX_PAYLOAD // 8 if reliable else 4096,
            minimum=256,
            maximum=MAX_PAYLOAD // 8 if reliable else 64 * 1024,
        )

    @property
    def target(self) -> str:
        return self.transport.target

    def _next_seq(self) -> int:
        self._seq = self._seq % 0xFFFFFFFF + 1
        return self._seq

    # -- bytes in and out -----------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self.transport.write(data)
        self.stats.wire_tx += len(data)

    def _events(self, timeout: float) -> Iterator[Any]:
        data = self.transport.read(1 << 16, timeout)
        if data:
            self._last_rx = time.monotonic()
            self.stats.wire_rx += len(data)
            self._decoder.feed(data)
            yield from self._decoder.events()
        elif self._decoder.mid_frame and time.monotonic() - self._last_rx >= GAP_TIMEOUT_S:
            # only a real silence makes a frame truncated, not a short read we chose
            yield from self._decoder.abandon()

    # -- one exchange ---------------------------------------------------------------------

    def exchange(
        self,
        ftype: FrameType,
        header: Mapping[str, Any],
        payload: bytes = b"",
        *,
        step: str,
        timeout: float,
        idle_timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        answer_bytes: int = 0,
    ) -> tuple[Frame, int]:
        """Send one frame and wait for its answer; return it and how many sends it took.

        ``timeout`` bounds the whole exchange; ``idle_timeout`` (default: ``timeout``)
        bounds the silence between frames from the agent, which PROGRESS frames reset.
        ``answer_bytes`` is the size of answer expected (a fetch), so a slow line is given
        the time to carry it before a resend.
        """
        seq = self._next_seq()
        data = encode_frame(ftype, seq, dict(header), payload)
        reliable = self.transport.reliable
        # On a slow UART the frame itself takes time to cross; never retry before it could.
        on_wire = self.transport.transfer_time(2 * len(data) + answer_bytes)
        nbytes = len(data) + answer_bytes
        whole = Deadline(timeout)  # the exchange
        idle = Deadline(idle_timeout or timeout)  # silence from the agent; restarted by frames
        retry = Deadline(on_wire + self.timer.timeout(1, nbytes))  # unreliable links: resend
        sent_at = time.monotonic()
        self._write(data)
        attempts, working = 1, False
        while True:
            if whole.expired():
                raise DeviceTimeoutError(self.target, step, f"no reply within {timeout:.1f} s")
            if idle.expired():
                raise DeviceTimeoutError(
                    self.target, step, f"the agent fell silent for {idle.seconds:.1f} s"
                )
            wait = min(whole.remaining(), idle.remaining())
            if not reliable:
                if retry.expired():
                    attempts = self._resend(data, attempts, step)
                    retry.restart(on_wire + self.timer.timeout(attempts, nbytes))
                wait = min(wait, retry.remaining())
            if self._decoder.mid_frame:  # a frame is arriving: look again when it is overdue
                wait = min(wait, max(0.0, self._last_rx + GAP_TIMEOUT_S - time.monotonic()))
            for event in self._events(wait):
                frame = self._answer(event, seq, step)
                if frame is None:
                    continue
                heard = time.monotonic()
                idle.restart(since=heard)
                if frame.type is FrameType.PROGRESS:
                    # The agent has the request and is working on it: stop resending, and
                    # ask again only if its heartbeats stop (our final reply may be lost).
                    attempts, working = 1, True
                    retry.restart(on_wire + 2.5 * self.heartbeat_s, since=heard)
                    if on_progress is not None:
                        on_progress(frame.header)
                elif frame.type is FrameType.NAK:
                    attempts = self._resend(data, attempts, step)
                    retry.restart(on_wire + self.timer.timeout(attempts, nbytes), since=heard)
                else:
                    if attempts == 1 and not working:  # Karn: only unambiguous round trips
                        self.timer.sample(heard - sent_at, len(data) + len(frame.payload))
                    return frame, attempts
            pending = self._decoder.pending
            if pending is not None and pending[0] == seq:
                # our answer is on its way: resending now would only queue another copy
                arrival = self._last_rx + self.transport.transfer_time(pending[1])
                retry.extend_to(arrival + self.timer.timeout(attempts, nbytes))
                idle.extend_to(self._last_rx + idle.seconds)

    def _answer(self, event: Any, seq: int, step: str) -> Frame | None:
        """The frame among decoder events that answers ``seq``; None for anything else.

        Counts skipped bytes and damage on the way, and asks again (NAK) for an answer of
        ours that arrived damaged by the line.
        """
        if isinstance(event, Skipped):
            self.stats.skipped_bytes += event.count
            return None
        if isinstance(event, DamagedFrame):
            self.stats.damaged += 1
            if event.seq == seq and event.reason in _RESENDABLE:
                self._write(encode_frame(FrameType.NAK, seq, {"reason": event.reason}))
                self.stats.naks_sent += 1
            elif event.seq == seq:
                raise LinkError(
                    self.target, step, f"unreadable answer: {event.reason} {event.detail}"
                )
            return None
        if event.seq != seq:
            return None  # a late answer to an earlier, already settled exchange
        assert isinstance(event, Frame)
        return event

    def _resend(self, data: bytes, attempts: int, step: str) -> int:
        if attempts >= self.max_attempts:
            raise LinkError(
                self.target,
                step,
                f"no intact answer after {attempts} sends; the line is too noisy "
                f"(damaged frames: {self.stats.damaged})",
            )
        self._write(data)
        self.stats.resends += 1
        return attempts + 1

    # -- requests -------------------------------------------------------------------------

    def request(
        self,
        header: Mapping[str, Any],
        payload: bytes = b"",
        *,
        timeout: float,
        idle_timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Reply:
        """Send a REQUEST, return its successful REPLY (raise AgentError for an error reply).

        A reply payload the agent held back (larger than we take in one frame) is fetched
        in chunks and checked against its sha256.
        """
        step = str(header.get("op", "request"))
        full = dict(header)
        if not self.transport.reliable:
            full["inline_max"] = self.sizer.size
        frame, _ = self.exchange(
            FrameType.REQUEST,
            full,
            payload,
            step=step,
            timeout=timeout,
            idle_timeout=idle_timeout,
            on_progress=on_progress,
        )
        reply = self._check(frame, step)
        held = reply.header.get("held_payload")
        if held:
            return Reply(reply.header, self._fetch(frame.seq, held, step, timeout))
        return reply

    def _check(self, frame: Frame, step: str) -> Reply:
        if frame.type is not FrameType.REPLY and frame.type is not FrameType.ACK:
            raise AgentError(self.target, step, "bad_frame", f"unexpected {frame.type.name}")
        if frame.type is FrameType.REPLY and not frame.header.get("ok", False):
            error = frame.header.get("error") or {}
            raise AgentError(
                self.target,
                step,
                str(error.get("code", "unknown")),
                str(error.get("message", "the agent reported an error")),
            )
        return Reply(frame.header, frame.payload)

    def _fetch(self, of: int, held: Mapping[str, Any], step: str, timeout: float) -> bytes:
        size, digest = int(held["size"]), str(held["sha256"])
        parts: list[bytes] = []
        got = 0
        while got < size:
            length = self.sizer.size
            header = {"op": Op.FETCH.value, "of": of, "offset": got, "length": length}
            frame, attempts = self.exchange(
                FrameType.REQUEST,
                header,
                step=f"{step} (fetch)",
                timeout=timeout,
                answer_bytes=length,
            )
            self.sizer.record(attempts)
            part = self._check(frame, step).payload
            if not part:
                raise AgentError(self.target, step, "bad_frame", "empty fetch reply")
            parts.append(part)
            got += len(part)
        data = b"".join(parts)
        if hashlib.sha256(data).hexdigest() != digest:
            raise LinkError(self.target, step, "fetched reply payload failed its sha256 check")
        return data

    def upload(
        self,
        op: Op,
        data: bytes,
        *,
        timeout: float,
        on_bytes: Callable[[int, int], None] | None = None,
    ) -> bool:
        """Upload ``data`` content-addressed; return False if the board already had it."""
        sha = hashlib.sha256(data).hexdigest()
        step = op.value
        deadline = Deadline(timeout)
        reply = self.request({"op": op.value, "sha256": sha, "size": len(data)}, timeout=timeout)
        if reply.header.get("cached"):
            return False
        offset = int(reply.header.get("next", 0))
        while True:
            if deadline.expired():
                raise DeviceTimeoutError(
                    self.target, step, f"upload not finished within {timeout:.1f} s"
                )
            chunk = data[offset : offset + self.sizer.size]
            frame, attempts = self.exchange(
                FrameType.CHUNK,
                {"offset": offset},
                chunk,
                step=step,
                timeout=deadline.remaining(),
            )
            self.sizer.record(attempts)
            header = self._check(frame, step).header
            offset = int(header.get("next", offset))
            if on_bytes is not None:
                on_bytes(offset, len(data))
            if header.get("done"):
                return True
