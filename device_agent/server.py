"""The agent's serving loop: frames in, a handler per request, replies out.

What the loop guarantees, whatever arrives: damaged frames are answered with a NAK (or an
error reply when they cannot be retried), a failing request becomes an error REPLY, and the
agent goes on serving. Replies are remembered by sequence number, so a request the host
sends again (because our reply was lost on a serial line) is answered again without being
run twice. While a request runs, a heartbeat thread sends PROGRESS frames so the host can
tell a long benchmark from a dead board.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
import traceback
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Optional, Tuple

if TYPE_CHECKING:
    from typing_extensions import TypeGuard

from .errors import AgentError
from .handlers import Handlers, Reply
from .links import Link
from .protocol import (
    MAX_PAYLOAD,
    DamagedFrame,
    ErrorCode,
    Frame,
    FrameDecoder,
    FrameType,
    Op,
    Skipped,
    encode_frame,
)

log = logging.getLogger("device_agent")

#: How many replies are kept for answering repeated requests.
REPLY_CACHE = 16

#: Requests that may run for seconds and get PROGRESS heartbeats.
_LONG_OPS = (Op.BENCH.value, Op.PROFILE.value)

_DAMAGE_CODES = {
    "too_large": ErrorCode.FRAME_TOO_LARGE,
    "version": ErrorCode.UNSUPPORTED_VERSION,
    "type": ErrorCode.BAD_FRAME,
    "header": ErrorCode.BAD_FRAME,
}


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class Counters:
    """Line health, reported in hello: what the decoder had to throw away."""

    def __init__(self) -> None:
        self.frames = 0
        self.bytes_skipped = 0
        self.damaged_frames = 0
        self.errors = 0

    def as_dict(self) -> Dict[str, int]:
        return dict(vars(self))


class Agent:
    def __init__(
        self,
        link: Link,
        handlers: Handlers,
        *,
        token: Optional[str] = None,
        heartbeat_s: float = 1.0,
        gap_timeout_s: float = 1.0,
    ) -> None:
        self.link = link
        self.handlers = handlers
        self.token = token
        self.heartbeat_s = heartbeat_s
        self.gap_timeout_s = gap_timeout_s
        self.counters = Counters()
        self.authenticated = token is None
        self._decoder = FrameDecoder()
        self._replies: OrderedDict[int, bytes] = OrderedDict()
        self._held: Optional[Tuple[int, bytes]] = None  # a reply payload too large to inline
        self._write_lock = threading.Lock()
        self._running = True
        self._table: Dict[str, Callable[[Frame], Reply]] = {
            Op.HELLO.value: self._hello,
            Op.PUT_MODEL.value: handlers.put_model,
            Op.PUT_INPUTS.value: handlers.put_inputs,
            Op.BENCH.value: handlers.bench,
            Op.PROFILE.value: handlers.profile,
            Op.FETCH.value: self._fetch,
            Op.RESET.value: handlers.reset,
            Op.SHUTDOWN.value: self._shutdown,
        }

    # -- the loop -------------------------------------------------------------------------

    def serve(self) -> str:
        """Serve until the stream ends (``"eof"``) or a shutdown request (``"shutdown"``)."""
        while self._running:
            data = self.link.read(self.gap_timeout_s)
            if data is None:
                self.handlers.abandon_upload("the host went away")
                return "eof"
            if data:
                self._decoder.feed(data)
                events = list(self._decoder.events())
            else:  # a silent gap: a frame that stopped arriving is not coming back whole
                events = self._decoder.abandon()
            try:
                for event in events:
                    self._on_event(event)
                    if not self._running:
                        break
            except OSError as exc:  # the host went away while we were answering
                log.info("write failed, ending this session: %s", exc)
                self.handlers.abandon_upload("the host went away")
                return "eof"
        return "shutdown"

    def _on_event(self, event: Any) -> None:
        if isinstance(event, Skipped):
            self.counters.bytes_skipped += event.count
        elif isinstance(event, DamagedFrame):
            self._on_damage(event)
        elif isinstance(event, Frame):
            self.counters.frames += 1
            self._on_frame(event)

    def _on_damage(self, event: DamagedFrame) -> None:
        self.counters.damaged_frames += 1
        log.info("damaged frame seq=%d: %s %s", event.seq, event.reason, event.detail)
        code = _DAMAGE_CODES.get(event.reason)
        if code is None:  # crc / truncated: the sender can simply send it again
            self._send(FrameType.NAK, event.seq, {"reason": event.reason})
        else:
            self._send_error(event.seq, code, f"frame seq {event.seq}: {event.detail}", cache=False)

    def _on_frame(self, frame: Frame) -> None:
        if frame.type is FrameType.NAK:  # the host got our reply damaged: send it again
            cached = self._replies.get(frame.seq) if self.authenticated else None
            if cached is not None:
                self._write(cached)
            return
        if frame.type not in (FrameType.REQUEST, FrameType.CHUNK):
            self._send_error(
                frame.seq,
                ErrorCode.BAD_FRAME,
                f"the agent does not accept {frame.type.name} frames",
                cache=False,
            )
            return
        is_hello = frame.type is FrameType.REQUEST and frame.header.get("op") == Op.HELLO.value
        if not self.authenticated and not is_hello:
            self._send_error(
                frame.seq, ErrorCode.UNAUTHORIZED, "send hello with the token first", cache=False
            )
            return
        if is_hello:
            self._replies.clear()  # a new host session: its sequence numbers start afresh
        cached = self._replies.get(frame.seq)
        if cached is not None:
            self._write(cached)
            return
        if frame.type is FrameType.CHUNK:
            self._answer(frame, self.handlers.chunk)
        else:
            self._request(frame)

    def _request(self, frame: Frame) -> None:
        op = frame.header.get("op")
        handler = self._table.get(op) if isinstance(op, str) else None
        if handler is None:
            known = ", ".join(self._table)
            self._send_error(frame.seq, ErrorCode.UNKNOWN_OP, f"unknown op {op!r}; known: {known}")
            return
        if op != Op.FETCH.value:
            self.handlers.abandon_upload(f"request {op!r} arrived")
        if op in _LONG_OPS:
            with self._heartbeat(frame.seq):
                self._answer(frame, handler)
        else:
            self._answer(frame, handler)

    def _answer(self, frame: Frame, handler: Callable[[Frame], Reply]) -> None:
        try:
            reply = handler(frame)
        except AgentError as exc:
            self._send_error(frame.seq, exc.code, exc.message)
            return
        except Exception as exc:  # a bug must not take the board offline
            log.error("internal error in %s:\n%s", frame.header.get("op"), traceback.format_exc())
            self._send_error(frame.seq, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
            return
        reply_type, header, payload = reply
        if reply_type is FrameType.REPLY:
            header = {"ok": True, **header}
        if reply_type is FrameType.REPLY and frame.header.get("op") != Op.FETCH.value:
            inline_max = frame.header.get("inline_max", MAX_PAYLOAD)
            if not isinstance(inline_max, int) or isinstance(inline_max, bool):
                inline_max = MAX_PAYLOAD
            if len(payload) > min(max(inline_max, 1), MAX_PAYLOAD):
                digest = hashlib.sha256(payload).hexdigest()
                header["held_payload"] = {"size": len(payload), "sha256": digest}
                self._held = (frame.seq, payload)
                payload = b""
        try:
            data = encode_frame(reply_type, frame.seq, header, payload)
        except (ValueError, TypeError) as exc:  # beyond the limits, NaN, or not JSON at all
            self._send_error(frame.seq, ErrorCode.INTERNAL, f"reply could not be sent: {exc}")
            return
        self._cache(frame.seq, data)
        self._write(data)

    # -- requests the loop answers itself -------------------------------------------------

    def _hello(self, frame: Frame) -> Reply:
        if self.token is not None:
            import hmac

            given = frame.header.get("token")
            self.authenticated = isinstance(given, str) and hmac.compare_digest(
                given.encode("utf-8"), self.token.encode("utf-8")
            )
            if not self.authenticated:
                raise AgentError(ErrorCode.UNAUTHORIZED, "wrong or missing token")
            self.authenticated = True
        facts = self.handlers.hello_facts()
        facts["counters"] = self.counters.as_dict()
        facts["heartbeat_s"] = self.heartbeat_s
        return FrameType.REPLY, facts, b""

    def _fetch(self, frame: Frame) -> Reply:
        of, offset, length = (frame.header.get(k) for k in ("of", "offset", "length"))
        if self._held is None or self._held[0] != of:
            raise AgentError(ErrorCode.BAD_REQUEST, f"no held payload for request {of}")
        if not (_is_count(offset) and _is_count(length) and length > 0):
            raise AgentError(ErrorCode.BAD_REQUEST, "fetch needs integer offset >= 0, length > 0")
        end = offset + min(length, MAX_PAYLOAD)
        return FrameType.REPLY, {"offset": offset}, self._held[1][offset:end]

    def _shutdown(self, frame: Frame) -> Reply:
        self._running = False
        return FrameType.REPLY, {"bye": True}, b""

    # -- writing --------------------------------------------------------------------------

    def _cache(self, seq: int, data: bytes) -> None:
        self._replies[seq] = data
        while len(self._replies) > REPLY_CACHE:
            self._replies.popitem(last=False)

    def _send(
        self, ftype: FrameType, seq: int, header: Dict[str, Any], payload: bytes = b""
    ) -> None:
        self._write(encode_frame(ftype, seq, header, payload))

    def _send_error(self, seq: int, code: ErrorCode, message: str, cache: bool = True) -> None:
        """An error REPLY. Cached when it answers a request or chunk, so a repeat of that
        frame gets the same answer; not cached when it answers a frame we could not read."""
        self.counters.errors += 1
        error = {"ok": False, "error": {"code": code.value, "message": message[:4000]}}
        data = encode_frame(FrameType.REPLY, seq, error)
        if cache:
            self._cache(seq, data)
        self._write(data)

    def _write(self, data: bytes) -> None:
        with self._write_lock:
            self.link.write(data)

    @contextlib.contextmanager
    def _heartbeat(self, seq: int) -> Iterator[None]:
        """Send PROGRESS frames for request ``seq`` until the block ends."""
        stop = threading.Event()

        def beat() -> None:
            start = time.monotonic()
            # The first beat goes at once: it tells a host on a lossy line that the request
            # arrived, so it stops resending it while the work runs.
            while True:
                header = {"elapsed_s": round(time.monotonic() - start, 3)}
                header.update(self.handlers.progress())
                try:
                    self._send(FrameType.PROGRESS, seq, header)
                except OSError:  # the host is gone: stop the work nobody will read
                    self.handlers.abort()
                    return
                if stop.wait(self.heartbeat_s):
                    return

        thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
