"""Binary framing of the hwnas wire protocol (version 1).

One frame on the wire::

    offset  size  field
    0       4     magic  A5 48 57 4E  ("\\xa5HWN"), for resync after line noise
    4       1     protocol version (1)
    5       1     frame type (FrameType)
    6       2     flags, reserved, 0
    8       4     sequence number          (big-endian uint32, as all integers here)
    12      4     header length  H         (JSON, UTF-8, an object)
    16      4     payload length P         (raw bytes)
    20      4     CRC32 of bytes 0..19     ("prelude CRC")
    24      H     JSON header
    24+H    P     payload
    24+H+P  4     CRC32 of header + payload ("body CRC")

The prelude has its own CRC so that a corrupted length is caught at once: the decoder then
drops one byte and hunts for the next magic instead of waiting for a body that never comes.
Lengths are checked against limits before anything is allocated, and a header's nesting
depth and number sizes before ``json`` parses it (its parser recurses, and turning a long
run of digits into an int is quadratic). The decoder knows nothing
about the transport: it is fed bytes and yields events, and `abandon()` gives up on a frame
whose body stopped arriving (a truncated frame) so that the bytes behind it are rescanned.
"""

from __future__ import annotations

import enum
import json
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

MAGIC = b"\xa5HWN"
PROTOCOL_VERSION = 1
PRELUDE = struct.Struct(">4sBBHIII")  # magic, version, type, flags, seq, hlen, plen
PRELUDE_SIZE = PRELUDE.size + 4  # + prelude CRC
TRAILER_SIZE = 4
MAX_SEQ = 0xFFFFFFFF

#: Largest JSON header a receiver accepts (bytes).
MAX_HEADER = 256 * 1024
#: Largest payload in one frame (bytes). Larger objects travel in chunks.
MAX_PAYLOAD = 8 * 1024 * 1024
#: Deepest nesting of objects and arrays a receiver accepts in a header.
MAX_DEPTH = 32
#: Most digits of an integer in a header (Python 3.11's own default for int()).
MAX_INT_DIGITS = 4300

# A JSON string (escapes included) or one bracket: the tokens that decide nesting depth.
_DEPTH_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class FrameType(enum.IntEnum):
    """What a frame is. Replies, acks and naks carry the sequence number they answer."""

    REQUEST = 1  #: host -> agent: header {"op": ..., ...}
    REPLY = 2  #: agent -> host: header {"ok": true, ...} or {"ok": false, "error": {...}}
    CHUNK = 3  #: host -> agent: one piece of an upload, header {"offset": N}
    ACK = 4  #: agent -> host: chunk received, header {"next": N, "done": bool}
    NAK = 5  #: either way: the frame with this seq arrived damaged; send it again
    PROGRESS = 6  #: agent -> host: still working on request seq, header {"elapsed_s": ...}


@dataclass(frozen=True)
class Frame:
    """A decoded, CRC-checked frame."""

    type: FrameType
    seq: int
    header: Dict[str, Any] = field(default_factory=dict)
    payload: bytes = b""


@dataclass(frozen=True)
class DamagedFrame:
    """A frame whose prelude was intact but whose body was not usable.

    ``reason`` is one of ``crc`` (body CRC mismatch), ``header`` (not a JSON object),
    ``truncated`` (the body stopped arriving), ``too_large`` (declared lengths above the
    limits), ``version`` (another protocol version) or ``type`` (unknown frame type).
    The seq and raw type come from the verified prelude, so the receiver can name the
    frame in its answer.
    """

    seq: int
    raw_type: int
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Skipped:
    """Bytes dropped while hunting for a frame (line noise, boot messages, a login prompt)."""

    count: int


Event = Union[Frame, DamagedFrame, Skipped]


def encode_frame(
    type: FrameType, seq: int, header: Dict[str, Any] | None = None, payload: bytes = b""
) -> bytes:
    """Serialise one frame. Raises ValueError when it would exceed the protocol limits."""
    head = json.dumps(header or {}, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if len(head) > MAX_HEADER:
        raise ValueError(f"header of {len(head)} bytes exceeds the limit of {MAX_HEADER}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the limit of {MAX_PAYLOAD}")
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"sequence number {seq} out of range")
    prelude = PRELUDE.pack(MAGIC, PROTOCOL_VERSION, int(type), 0, seq, len(head), len(payload))
    body_crc = zlib.crc32(payload, zlib.crc32(head))
    return b"".join(
        (
            prelude,
            struct.pack(">I", zlib.crc32(prelude)),
            head,
            payload,
            struct.pack(">I", body_crc),
        )
    )


class HeaderError(ValueError):
    """A header that is not a JSON object within the decoder's limits."""


def decode_header(head: bytes) -> Dict[str, Any]:
    """The JSON object in ``head``; HeaderError for anything else, whatever the bytes."""
    if not head:
        return {}
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HeaderError(f"header is not UTF-8: {exc}") from exc
    if nests_deeper(text, MAX_DEPTH):
        raise HeaderError(f"header nests deeper than {MAX_DEPTH} levels")
    try:
        header = json.loads(text, parse_int=_parse_int)
    except Exception as exc:  # whatever the parser raises, the header is bad input
        raise HeaderError(f"header is not JSON: {type(exc).__name__}: {exc}"[:300]) from exc
    if not isinstance(header, dict):
        raise HeaderError("header is not a JSON object")
    return header


def nests_deeper(text: str, limit: int) -> bool:
    """Whether objects and arrays in JSON ``text`` nest deeper than ``limit`` levels.

    Iterative, so any depth is measured safely; brackets inside strings do not count.
    """
    if text.count("[") + text.count("{") <= limit:
        return False  # too few brackets to nest that deep: the common case, no scan
    depth = 0
    for match in _DEPTH_TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > limit:
                return True
        elif token in ("]", "}"):
            depth -= 1
    return False


def _parse_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits (at most {MAX_INT_DIGITS})")
    return int(digits)


class FrameDecoder:
    """Incremental decoder: ``feed(data)`` then iterate ``events()``.

    Limits can be lowered per receiver (an agent on a small board may accept less).
    """

    def __init__(self, max_header: int = MAX_HEADER, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_header = max_header
        self.max_payload = max_payload
        self._buf = bytearray()
        # Set while the prelude of the frame at the start of _buf has been verified.
        self._pending: tuple[int, int, int, int, int] | None = None  # ver, type, seq, hl, pl

    @property
    def buffered(self) -> int:
        """Bytes held and not yet decoded."""
        return len(self._buf)

    @property
    def mid_frame(self) -> bool:
        """True while a frame's prelude has arrived and its body has not."""
        return self._pending is not None

    @property
    def pending(self) -> Optional[Tuple[int, int]]:
        """(seq, bytes still to come) of a frame whose prelude arrived and body has not."""
        if self._pending is None:
            return None
        _, _, seq, hlen, plen = self._pending
        return seq, max(PRELUDE_SIZE + hlen + plen + TRAILER_SIZE - len(self._buf), 0)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def events(self) -> Iterator[Event]:
        """Decode everything that the buffered bytes allow."""
        while True:
            event = self._next()
            if event is None:
                return
            yield event

    def feed_and_decode(self, data: bytes) -> List[Event]:
        self.feed(data)
        return list(self.events())

    def abandon(self) -> List[Event]:
        """Give up on a frame whose body stopped arriving; rescan the bytes behind its magic."""
        if self._pending is None:
            return []
        _, raw_type, seq, _, _ = self._pending
        self._pending = None
        del self._buf[:1]
        return [DamagedFrame(seq, raw_type, "truncated"), *self.events()]

    def _next(self) -> Event | None:
        if self._pending is None:
            skipped = self._hunt()
            if skipped:
                return Skipped(skipped)
            if len(self._buf) < PRELUDE_SIZE:
                return None
            prelude = bytes(self._buf[: PRELUDE.size])
            (crc,) = struct.unpack_from(">I", self._buf, PRELUDE.size)
            if zlib.crc32(prelude) != crc:
                del self._buf[:1]  # not a frame after all; hunt on from the next byte
                return Skipped(1)
            _, version, raw_type, _, seq, hlen, plen = PRELUDE.unpack(prelude)
            if hlen > self.max_header or plen > self.max_payload:
                del self._buf[:1]
                detail = (
                    f"declared header {hlen} B / payload {plen} B; limits are "
                    f"{self.max_header} B / {self.max_payload} B"
                )
                return DamagedFrame(seq, raw_type, "too_large", detail)
            self._pending = (version, raw_type, seq, hlen, plen)
        version, raw_type, seq, hlen, plen = self._pending
        end = PRELUDE_SIZE + hlen + plen + TRAILER_SIZE
        if len(self._buf) < end:
            return None
        self._pending = None
        head = bytes(self._buf[PRELUDE_SIZE : PRELUDE_SIZE + hlen])
        payload = bytes(self._buf[PRELUDE_SIZE + hlen : end - TRAILER_SIZE])
        (body_crc,) = struct.unpack_from(">I", self._buf, end - TRAILER_SIZE)
        if zlib.crc32(payload, zlib.crc32(head)) != body_crc:
            # Keep the body bytes: if this frame was cut short, the next frame sits inside.
            del self._buf[:1]
            return DamagedFrame(seq, raw_type, "crc")
        del self._buf[:end]
        if version != PROTOCOL_VERSION:
            return DamagedFrame(seq, raw_type, "version", f"protocol version {version}")
        try:
            ftype = FrameType(raw_type)
        except ValueError:
            return DamagedFrame(seq, raw_type, "type", f"unknown frame type {raw_type}")
        try:
            header = decode_header(head)
        except HeaderError as exc:
            return DamagedFrame(seq, raw_type, "header", str(exc))
        return Frame(ftype, seq, header, payload)

    def _hunt(self) -> int:
        """Drop bytes before the next possible magic; return how many were dropped."""
        idx = self._buf.find(MAGIC)
        if idx == 0:
            return 0
        if idx < 0:
            # Keep a tail that may be the start of a magic split across reads.
            keep = 0
            for k in range(len(MAGIC) - 1, 0, -1):
                if self._buf.endswith(MAGIC[:k]):
                    keep = k
                    break
            idx = len(self._buf) - keep
        del self._buf[:idx]
        return idx
