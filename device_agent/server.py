"""The agent's serving loop: frames in, a handler per request, replies out.

What the loop guarantees, whatever arrives: damaged frames are answered with a NAK (or an
error reply when they cannot be retried), a failing request becomes an error REPLY, and the
agent goes on serving. Replies are remembered by sequence number, so a request the host
sends again (because our reply was lost on a serial line) is answered again without being
run twice. While a request runs, a heartbeat thread sends PROGRESS frames so the host can
tell a long benchmark from a dead board.

One ``Agent`` serves one connection. In TCP mode ``tcp.TcpServer`` runs one per client, in
threads that share one ``Board``: it runs one request at a time, and a benchmark owns it,
so other clients' requests for it are answered ``busy`` at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import threading
import time
import traceback
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, NoReturn, Optional, Tuple

if TYPE_CHECKING:
    from typing_extensions import TypeGuard

    from .uploads import Upload

from .errors import AgentError
from .handlers import Handlers, Reply
from .links import Link
from .protocol import (
    MAX_HEADER,
    MAX_PAYLOAD,
    DamagedFrame,
    ErrorCode,
    Event,
    Frame,
    FrameDecoder,
    FrameType,
    Op,
    Skipped,
    encode_frame,
)
from .tcp_limits import AuthThrottle, TcpLimits, Turn

log = logging.getLogger("device_agent")

#: How many replies are kept for answering repeated requests.
REPLY_CACHE = 16

#: Requests that may run for seconds and get PROGRESS heartbeats; they own the board.
_LONG_OPS = (Op.BENCH.value, Op.PROFILE.value)
#: Requests that use the shared board state (model store, inputs, sessions, the runner).
_BOARD_OPS = (Op.PUT_MODEL.value, Op.PUT_INPUTS.value, Op.RESET.value, *_LONG_OPS)

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


class Board:
    """The board's shared state (the handlers) and who is using it.

    Requests that touch it run one at a time; a quick one (an upload chunk) waits for
    another quick one, but nothing waits for a benchmark: ``acquire`` answers False.
    """

    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers
        self._cond = threading.Condition()
        self._holder: Optional[object] = None
        self._long = False

    def acquire(self, owner: object, long: bool, patient: bool = False) -> bool:
        """Take the board for ``owner``; False if a benchmark holds it (unless ``patient``)."""
        with self._cond:
            while self._holder is not None:
                if self._long and not patient:
                    return False
                self._cond.wait()
            self._holder, self._long = owner, long
            return True

    def release(self) -> None:
        with self._cond:
            self._holder, self._long = None, False
            self._cond.notify_all()

    @contextlib.contextmanager
    def hold(self, owner: object, long: bool, patient: bool = False) -> Iterator[bool]:
        held = self.acquire(owner, long, patient)
        try:
            yield held
        finally:
            if held:
                self.release()


class Agent:
    """Serves one connection (stdio, a serial session, one TCP client)."""

    def __init__(
        self,
        link: Link,
        handlers: Handlers,
        *,
        token: Optional[str] = None,
        heartbeat_s: float = 1.0,
        gap_timeout_s: float = 1.0,
        board: Optional[Board] = None,
        limits: Optional[TcpLimits] = None,
        throttle: Optional[AuthThrottle] = None,
        peer: str = "",
        stop: Optional[threading.Event] = None,
    ) -> None:
        self.link = link
        self.handlers = handlers
        self.board = board or Board(handlers)
        self.token = token
        self.heartbeat_s = heartbeat_s
        self.gap_timeout_s = gap_timeout_s
        self.limits = limits
        self.throttle = throttle
        self.peer = peer
        self.counters = Counters()
        self.authenticated = token is None
        self._stop = stop or threading.Event()
        self._closing = threading.Event()  # evicted, or the server stops: end waits early
        self._auth_lock = threading.Lock()  # authenticated vs. evicted: one of them wins
        self._decoder = FrameDecoder()
        self._limit_frames()
        self._replies: OrderedDict[int, bytes] = OrderedDict()
        self._held: Optional[Tuple[int, bytes]] = None  # a reply payload too large to inline
        # This connection's upload in flight; lent to the handlers while they run for us.
        self._upload: Optional[Upload] = None
        self._abandon_why: Optional[str] = None  # set when the upload is to be abandoned
        self._write_lock = threading.Lock()
        self._end: Optional[str] = None  # "shutdown", or "closed" by the agent
        self._auth_failures = 0
        self._started = self._last_frame = time.monotonic()
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
        """Serve until the stream ends (``"eof"``), a shutdown request (``"shutdown"``) or
        the agent closes the connection (``"closed"``: TCP limits, see ``TcpLimits``)."""
        try:
            return self._serve()
        finally:
            self._drop_upload("the host went away")

    def _serve(self) -> str:
        while self._end is None:
            expired, wait = self._deadline()
            if expired:
                log.info("closing the connection%s: %s", self._from(), expired)
                return "closed"
            data = self.link.read(wait)
            if data is None:
                return "eof"
            try:
                for event in self._decode(data):
                    self._on_event(event)
                    if self._end is not None:
                        break
            except OSError as exc:  # the host went away while we were answering
                log.info("write failed, ending this session: %s", exc)
                return "eof"
        return self._end

    def _from(self) -> str:
        return f" from {self.peer}" if self.peer else ""

    def _deadline(self) -> Tuple[Optional[str], float]:
        """Why the connection must close now (or None), and how long the next read may wait."""
        if self._stop.is_set():
            return "the agent is shutting down", 0.0
        if self._closing.is_set():
            return "the connection was evicted", 0.0
        lim = self.limits
        if lim is None:
            return None, self.gap_timeout_s
        now = time.monotonic()
        left = self._last_frame + lim.idle_timeout_s - now
        if left <= 0:
            return f"no frame for {lim.idle_timeout_s:g} s", 0.0
        if not self.authenticated:
            auth_left = self._started + lim.auth_timeout_s - now
            if auth_left <= 0:
                return f"no hello with the right token within {lim.auth_timeout_s:g} s", 0.0
            left = min(left, auth_left)
        return None, max(min(self.gap_timeout_s, left), 0.01)

    def _decode(self, data: bytes) -> List[Event]:
        """The events in ``data`` (a silent gap when empty); never raises."""
        events: List[Event] = []
        try:
            if data:
                self._decoder.feed(data)
                events.extend(self._decoder.events())
            else:  # a silent gap: a frame that stopped arriving is not coming back whole
                events.extend(self._decoder.abandon())
        except Exception:  # a decoder bug must not take the board offline: start afresh
            log.error("frame decoder failed; dropping its buffer:\n%s", traceback.format_exc())
            self.counters.damaged_frames += 1
            self._decoder = FrameDecoder()
        return events

    def _on_event(self, event: Event) -> None:
        try:
            if isinstance(event, Skipped):
                self.counters.bytes_skipped += event.count
            elif isinstance(event, DamagedFrame):
                self._on_damage(event)
            elif isinstance(event, Frame):
                self.counters.frames += 1
                self._last_frame = time.monotonic()
                self._on_frame(event)
                self._last_frame = time.monotonic()  # a long bench is not idleness
        except OSError:
            raise
        except Exception as exc:  # a bug outside the handlers: answer, and serve on
            log.error("internal error:\n%s", traceback.format_exc())
            if not isinstance(event, Skipped):
                message = f"{type(exc).__name__}: {exc}"
                self._send_error(event.seq, ErrorCode.INTERNAL, message, cache=False)

    def _on_damage(self, event: DamagedFrame) -> None:
        self.counters.damaged_frames += 1
        log.info("damaged frame seq=%d: %s %s", event.seq, event.reason, event.detail)
        if event.reason == "too_large" and not self.authenticated:
            # A stranger's large declared length: answered once, and the connection closed,
            # so it cannot make the agent hunt through megabytes, frame after frame.
            message = (
                f"frame seq {event.seq}: {event.detail}; before a successful hello the agent "
                "accepts only frames this small, and closes the connection"
            )
            self._send_error(event.seq, ErrorCode.FRAME_TOO_LARGE, message, cache=False)
            log.info("closing the connection%s: a large frame before hello", self._from())
            self._end = "closed"
            return
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
            self._on_board(frame, self.handlers.chunk, long=False)
        else:
            self._request(frame)

    def _request(self, frame: Frame) -> None:
        op = frame.header.get("op")
        handler = self._table.get(op) if isinstance(op, str) else None
        if handler is None:
            known = ", ".join(self._table)
            self._send_error(frame.seq, ErrorCode.UNKNOWN_OP, f"unknown op {op!r}; known: {known}")
            return
        if op != Op.FETCH.value and self._upload is not None and self._abandon_why is None:
            # abandoned for real the next time this connection holds the board
            self._abandon_why = f"request {op!r} arrived"
        if op in _BOARD_OPS:
            self._on_board(frame, handler, long=op in _LONG_OPS)
        else:
            self._answer(frame, handler)

    def _on_board(self, frame: Frame, handler: Callable[[Frame], Reply], long: bool) -> None:
        """Run ``handler`` holding the board, with this connection's upload lent to it."""
        with self.board.hold(self, long) as held:
            if not held:
                self._send_error(
                    frame.seq,
                    ErrorCode.BUSY,
                    "another client is running a benchmark on this board; try again later",
                )
                return
            self._lend_upload()
            try:
                if long:
                    with self._heartbeat(frame.seq):
                        data = self._reply_bytes(frame, handler)
                else:
                    data = self._reply_bytes(frame, handler)
            finally:
                self._take_upload_back()
        self._write(data)  # outside the board: a slow reader holds up nobody else

    def _lend_upload(self) -> None:
        self.handlers.upload = self._upload
        if self._abandon_why is not None:
            self.handlers.abandon_upload(self._abandon_why)
            self._abandon_why = None

    def _take_upload_back(self) -> None:
        self._upload, self.handlers.upload = self.handlers.upload, None

    def _drop_upload(self, why: str) -> None:
        """The session ends: discard its upload (waiting for the board if need be)."""
        if self._upload is None:
            return
        self._abandon_why = self._abandon_why or why
        with self.board.hold(self, long=False, patient=True):
            self._lend_upload()
            self._take_upload_back()

    def _answer(self, frame: Frame, handler: Callable[[Frame], Reply]) -> None:
        self._write(self._reply_bytes(frame, handler))

    def _reply_bytes(self, frame: Frame, handler: Callable[[Frame], Reply]) -> bytes:
        """Run ``handler``; the encoded reply (or error reply), cached under the frame's seq."""
        try:
            reply = handler(frame)
        except AgentError as exc:
            return self._error_bytes(frame.seq, exc.code, exc.message)
        except MemoryError:  # a backstop: the handlers name what they were allocating
            message = f"the board ran out of memory during {frame.header.get('op')}"
            return self._error_bytes(frame.seq, ErrorCode.OUT_OF_MEMORY, message)
        except Exception as exc:  # a bug must not take the board offline
            log.error("internal error in %s:\n%s", frame.header.get("op"), traceback.format_exc())
            return self._error_bytes(frame.seq, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
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
            message = f"reply could not be sent: {exc}"
            return self._error_bytes(frame.seq, ErrorCode.INTERNAL, message)
        self._cache(frame.seq, data)
        return data

    # -- requests the loop answers itself -------------------------------------------------

    def _hello(self, frame: Frame) -> Reply:
        if self.token is not None:
            turn = self._turn()
            right = token_matches(frame.header.get("token"), self.token)
            with self._auth_lock:
                self.authenticated = right and not self._closing.is_set()
            self._limit_frames()
            if self.throttle is not None and right:
                self.throttle.succeeded(self.peer, turn)
            if not right:
                self._failed_hello()
                raise AgentError(ErrorCode.UNAUTHORIZED, "wrong or missing token")
        facts = self.handlers.hello_facts()
        facts["counters"] = self.counters.as_dict()
        facts["heartbeat_s"] = self.heartbeat_s
        return FrameType.REPLY, facts, b""

    def _turn(self) -> Turn:
        """Wait until this connection's token may be compared (``AuthThrottle.turn``);
        ``busy``, and the connection closed, when it may not be within the auth deadline."""
        if self.throttle is None:
            return Turn()
        lim = self.throttle.limits
        while True:
            turn = self.throttle.turn(self.peer)
            if turn.now:
                return turn
            left = self._started + lim.auth_timeout_s - time.monotonic()
            if turn.budget_wait_s is not None:
                why = (
                    f"{lim.auth_fail_budget} hellos with a wrong token came from addresses "
                    f"that never sent the right one in the last {lim.auth_fail_forget_s:g} s"
                )
                self._refuse_hello(why, turn.budget_wait_s)
            wait = turn.wait_s or 0.0
            if wait > left:
                self._refuse_hello(f"{self.peer} sent a wrong token lately", wait)
            if not self._pause(wait):
                self._refuse_hello("the connection was closed by the agent", 0.0)

    def _refuse_hello(self, why: str, retry_s: float) -> NoReturn:
        self._end = "closed"
        log.info("hello%s not checked: %s", self._from(), why)
        again = f"; try again in {math.ceil(retry_s)} s" if retry_s > 0 else ""
        raise AgentError(ErrorCode.BUSY, f"{why}, so this token was not checked{again}")

    def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False when the connection is to close first."""
        deadline = time.monotonic() + seconds
        while not (self._closing.is_set() or self._stop.is_set()):
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            self._closing.wait(min(left, 0.25))
        return False

    def _limit_frames(self) -> None:
        """Before a successful hello over TCP, only small frames (``TcpLimits.preauth_*``)."""
        lim = self.limits
        small = lim is not None and not self.authenticated
        self._decoder.max_header = lim.preauth_max_header if small and lim else MAX_HEADER
        self._decoder.max_payload = lim.preauth_max_payload if small and lim else MAX_PAYLOAD

    def evict(self) -> bool:
        """End this connection from another thread, unless it has authenticated."""
        with self._auth_lock:
            if self.authenticated:
                return False
            self._closing.set()
        self.link.interrupt()
        return True

    def close_soon(self) -> None:
        """The server stops: end the waits of this connection early."""
        self._closing.set()

    def _failed_hello(self) -> None:
        """Make guessing slow (a growing wait per address) and short (a few per connection)."""
        self._auth_failures += 1
        log.info("wrong token from %s (%d on this connection)", self.peer, self._auth_failures)
        if self.throttle is not None:
            self._pause(self.throttle.failed(self.peer))
        if self.limits is not None and self._auth_failures >= self.limits.max_auth_failures:
            log.info(
                "closing the connection%s: %d failed hellos", self._from(), self._auth_failures
            )
            self._end = "closed"  # after this reply

    def _fetch(self, frame: Frame) -> Reply:
        of, offset, length = (frame.header.get(k) for k in ("of", "offset", "length"))
        if self._held is None or self._held[0] != of:
            raise AgentError(ErrorCode.BAD_REQUEST, f"no held payload for request {of}")
        if not (_is_count(offset) and _is_count(length) and length > 0):
            raise AgentError(ErrorCode.BAD_REQUEST, "fetch needs integer offset >= 0, length > 0")
        end = offset + min(length, MAX_PAYLOAD)
        return FrameType.REPLY, {"offset": offset}, self._held[1][offset:end]

    def _shutdown(self, frame: Frame) -> Reply:
        self._end = "shutdown"
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
        self._write(self._error_bytes(seq, code, message, cache))

    def _error_bytes(self, seq: int, code: ErrorCode, message: str, cache: bool = True) -> bytes:
        """An error REPLY. Cached when it answers a request or chunk, so a repeat of that
        frame gets the same answer; not cached when it answers a frame we could not read."""
        self.counters.errors += 1
        data = error_frame(seq, code, message)
        if cache:
            self._cache(seq, data)
        return data

    def _write(self, data: bytes) -> None:
        timeout = None
        if self.limits is not None and not self.authenticated:
            # a stranger that does not read its replies is gone by the auth deadline
            left = self._started + self.limits.auth_timeout_s - time.monotonic()
            timeout = max(left, 0.001)
        with self._write_lock:
            self.link.write(data, timeout)

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


def token_matches(given: object, token: str) -> bool:
    """Whether a hello's ``token`` is ``token``, in constant time; never raises.

    Anything but a string is a wrong token. JSON may carry lone surrogates ("\\ud800"),
    which UTF-8 cannot encode: "surrogatepass" gives them bytes of their own, so they
    compare unequal like any other guess (and a token from argv holding them still works).
    """
    if not isinstance(given, str):
        return False
    import hmac

    given_bytes = given.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(given_bytes, token.encode("utf-8", "surrogatepass"))


def error_frame(seq: int, code: ErrorCode, message: str) -> bytes:
    error = {"ok": False, "error": {"code": code.value, "message": message[:4000]}}
    return encode_frame(FrameType.REPLY, seq, error)
