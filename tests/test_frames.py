"""The frame codec: round trips, resync through garbage, and fuzzing of the decoder."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_agent.protocol import (
    MAGIC,
    MAX_HEADER,
    DamagedFrame,
    Frame,
    FrameDecoder,
    FrameType,
    Skipped,
    encode_frame,
)
from device_agent.protocol.frames import MAX_DEPTH, PRELUDE, PRELUDE_SIZE

headers = st.dictionaries(
    st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=20), st.booleans()), max_size=5
)
frames = st.tuples(
    st.sampled_from(list(FrameType)),
    st.integers(0, 0xFFFFFFFF),
    headers,
    st.binary(max_size=2048),
)


def frames_of(events: list[object]) -> list[Frame]:
    return [e for e in events if isinstance(e, Frame)]


def test_round_trip_one_frame() -> None:
    data = encode_frame(FrameType.REQUEST, 7, {"op": "hello"}, b"\x00\x01")
    (event,) = FrameDecoder().feed_and_decode(data)
    assert event == Frame(FrameType.REQUEST, 7, {"op": "hello"}, b"\x00\x01")


def test_layout_matches_the_spec() -> None:
    data = encode_frame(FrameType.REPLY, 0x01020304, {}, b"xyz")
    assert data[:4] == MAGIC
    assert data[4] == 1
    assert data[5] == FrameType.REPLY
    assert struct.unpack(">III", data[8:20]) == (0x01020304, 2, 3)  # "{}" and "xyz"
    assert struct.unpack(">I", data[20:24])[0] == zlib.crc32(data[:20])
    assert struct.unpack(">I", data[-4:])[0] == zlib.crc32(b"{}xyz")


def test_garbage_before_and_between_frames_is_skipped() -> None:
    boot = b"U-Boot 2023.04\r\nStarting kernel ...\r\nraspberrypi login: "
    a = encode_frame(FrameType.REQUEST, 1, {"op": "hello"})
    b = encode_frame(FrameType.REQUEST, 2, {"op": "bench"})
    events = FrameDecoder().feed_and_decode(boot + a + b"\x00\xffnoise" + MAGIC[:2] + b)
    assert [f.seq for f in frames_of(events)] == [1, 2]
    skipped = sum(e.count for e in events if isinstance(e, Skipped))
    assert skipped == len(boot) + len(b"\x00\xffnoise") + 2


def test_magic_split_across_reads() -> None:
    data = b"junk" + encode_frame(FrameType.ACK, 3, {"next": 5})
    decoder = FrameDecoder()
    got: list[object] = []
    for i in range(len(data)):  # one byte at a time
        got += decoder.feed_and_decode(data[i : i + 1])
    assert [f.seq for f in frames_of(got)] == [3]


def test_flipped_bit_in_body_reports_the_seq() -> None:
    data = bytearray(encode_frame(FrameType.CHUNK, 42, {"offset": 0}, b"A" * 100))
    data[PRELUDE_SIZE + 30] ^= 0x10
    events = FrameDecoder().feed_and_decode(bytes(data))
    damaged = [e for e in events if isinstance(e, DamagedFrame)]
    assert damaged == [DamagedFrame(42, FrameType.CHUNK, "crc")]
    assert not frames_of(events)


def test_flipped_bit_in_prelude_is_just_noise() -> None:
    good = encode_frame(FrameType.REQUEST, 9, {"op": "hello"})
    bad = bytearray(encode_frame(FrameType.REQUEST, 8, {"op": "hello"}))
    bad[14] ^= 0x01  # header length
    events = FrameDecoder().feed_and_decode(bytes(bad) + good)
    assert [f.seq for f in frames_of(events)] == [9]
    assert not [e for e in events if isinstance(e, DamagedFrame)]


def test_oversize_lengths_are_refused_before_allocating() -> None:
    prelude = PRELUDE.pack(MAGIC, 1, FrameType.REQUEST, 0, 5, 10, 2**31)
    data = prelude + struct.pack(">I", zlib.crc32(prelude))
    decoder = FrameDecoder()
    events = decoder.feed_and_decode(data + encode_frame(FrameType.REQUEST, 6, {"op": "hello"}))
    assert events[0] == DamagedFrame(5, FrameType.REQUEST, "too_large", events[0].detail)  # type: ignore[union-attr]
    assert "2147483648" in events[0].detail  # type: ignore[union-attr]
    assert [f.seq for f in frames_of(events)] == [6]
    assert decoder.buffered == 0


def test_truncated_frame_is_abandoned_and_the_next_one_recovered() -> None:
    cut = encode_frame(FrameType.CHUNK, 11, {"offset": 0}, b"B" * 500)[:300]
    nxt = encode_frame(FrameType.REQUEST, 12, {"op": "hello"})
    decoder = FrameDecoder()
    assert decoder.feed_and_decode(cut + nxt) == []  # still waiting for 500 bytes of body
    assert decoder.mid_frame
    events = decoder.abandon()
    assert events[0] == DamagedFrame(11, FrameType.CHUNK, "truncated")
    assert [f.seq for f in frames_of(events)] == [12]


def raw_frame(version: int, seq: int, head: bytes) -> bytes:
    """A frame built by hand, with correct CRCs, to say what the encoder would not."""
    prelude = PRELUDE.pack(MAGIC, version, FrameType.REQUEST, 0, seq, len(head), 0)
    crc = struct.pack(">I", zlib.crc32(prelude))
    return prelude + crc + head + struct.pack(">I", zlib.crc32(head))


def test_header_must_be_a_json_object() -> None:
    (event,) = FrameDecoder().feed_and_decode(raw_frame(1, 3, b"[1, 2]"))
    assert isinstance(event, DamagedFrame)
    assert event.reason == "header"


def test_other_protocol_version_is_named() -> None:
    data = raw_frame(9, 4, b"{}")
    (event,) = FrameDecoder().feed_and_decode(data)
    assert event == DamagedFrame(4, FrameType.REQUEST, "version", "protocol version 9")


def test_encoder_refuses_what_decoders_would_refuse() -> None:
    with pytest.raises(ValueError, match="header"):
        encode_frame(FrameType.REQUEST, 1, {"x": "a" * MAX_HEADER})
    with pytest.raises(ValueError, match="sequence"):
        encode_frame(FrameType.REQUEST, -1, {})
    with pytest.raises(ValueError, match="JSON compliant"):
        encode_frame(FrameType.REQUEST, 1, {"x": float("nan")})


@given(st.lists(frames, max_size=5), st.integers(1, 64))
def test_any_frames_in_any_read_sizes_round_trip(items: list, step: int) -> None:
    data = b"".join(encode_frame(*item) for item in items)
    decoder = FrameDecoder()
    events: list[object] = []
    for i in range(0, len(data), step):
        events += decoder.feed_and_decode(data[i : i + step])
    assert [(f.type, f.seq, f.header, f.payload) for f in frames_of(events)] == [
        (FrameType(t), s, h, p) for t, s, h, p in items
    ]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_never_crash_the_decoder(noise: bytes) -> None:
    decoder = FrameDecoder()
    decoder.feed_and_decode(noise)
    decoder.abandon()
    # whatever came before, a good frame afterwards is still found
    events = decoder.feed_and_decode(encode_frame(FrameType.REQUEST, 77, {"op": "hello"}))
    events += decoder.abandon()
    assert 77 in [f.seq for f in frames_of(events)]


@settings(max_examples=300)
@given(frames, st.data())
def test_damaged_frames_are_never_delivered_as_good(item: tuple, data: st.DataObject) -> None:
    raw = bytearray(encode_frame(*item))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= 1 << data.draw(st.integers(0, 7))
    decoder = FrameDecoder()
    events = decoder.feed_and_decode(bytes(raw)) + decoder.abandon()
    assert frames_of(events) == []  # CRC32 catches every single-bit error


@settings(max_examples=200)
@given(frames, st.data())
def test_dropped_byte_never_yields_a_wrong_frame(item: tuple, data: st.DataObject) -> None:
    raw = bytearray(encode_frame(*item))
    del raw[data.draw(st.integers(0, len(raw) - 1))]
    decoder = FrameDecoder()
    events = decoder.feed_and_decode(bytes(raw)) + decoder.abandon()
    assert frames_of(events) == []


def nested(depth: int, kinds: str) -> str:
    """A JSON value nested ``depth`` levels deep, one container kind per level from ``kinds``."""
    opening = "".join('{"k":' if kinds[i % len(kinds)] == "o" else "[" for i in range(depth))
    closing = "".join("}" if kinds[i % len(kinds)] == "o" else "]" for i in reversed(range(depth)))
    return opening + "1" + closing


def test_header_nested_deeper_than_the_cap_is_damage() -> None:
    for head in ('{"op":' + nested(1000, "a") + "}", "[" * 100_000, '{"a":' * 5000):
        (event,) = FrameDecoder().feed_and_decode(raw_frame(1, 3, head.encode()))
        assert isinstance(event, DamagedFrame)
        assert event.reason == "header"
        assert "nest" in event.detail or "JSON" in event.detail


def test_header_nested_to_the_cap_is_accepted() -> None:
    head = '{"k":' + nested(MAX_DEPTH - 1, "oa") + "}"
    (event,) = FrameDecoder().feed_and_decode(raw_frame(1, 3, head.encode()))
    assert isinstance(event, Frame)
    too_deep = '{"k":' + nested(MAX_DEPTH, "oa") + "}"
    (event,) = FrameDecoder().feed_and_decode(raw_frame(1, 3, too_deep.encode()))
    assert isinstance(event, DamagedFrame)
    assert f"{MAX_DEPTH} levels" in event.detail


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    head = json.dumps({"s": "[{" * 1000 + '\\"[', "t": "]}" * 10}).encode()
    (event,) = FrameDecoder().feed_and_decode(raw_frame(1, 3, head))
    assert isinstance(event, Frame)
    assert event.header["s"].startswith("[{[{")


def test_header_with_a_number_of_many_digits_is_damage() -> None:
    head = b'{"n":' + b"9" * 100_000 + b"}"
    (event,) = FrameDecoder().feed_and_decode(raw_frame(1, 3, head))
    assert isinstance(event, DamagedFrame)
    assert event.reason == "header"


json_leaves = st.one_of(
    st.integers(), st.text(max_size=20), st.booleans(), st.none(), st.floats(allow_nan=False)
)
#: Nested, long and odd headers: depth far beyond the cap, megabyte-scale strings and numbers.
hostile_heads = st.one_of(
    st.builds(
        lambda depth, kinds, wrap: ('{"op":%s}' if wrap else "%s") % nested(depth, kinds),
        st.integers(1, 3000),
        st.sampled_from(["o", "a", "oa", "aao"]),
        st.booleans(),
    ),
    st.builds(
        lambda n, ch: '{"op":"hello","s":"' + ch * n + '"}',
        st.integers(0, MAX_HEADER),
        st.sampled_from(["x", "[", "{", "\\\\", "\u00e9"]),
    ),
    st.builds(lambda n: '{"n":' + "7" * n + "}", st.integers(1, MAX_HEADER // 2)),
    st.builds(lambda n: "[" * n, st.integers(1, MAX_HEADER)),
    st.recursive(json_leaves, lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids)).map(
        json.dumps
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_heads)
def test_hostile_headers_never_crash_the_decoder(head: str) -> None:
    data = head.encode("utf-8")[:MAX_HEADER]
    decoder = FrameDecoder()
    events = decoder.feed_and_decode(raw_frame(1, 5, data))
    (event,) = events
    if isinstance(event, DamagedFrame):
        assert (event.seq, event.reason) == (5, "header")
    else:
        assert isinstance(event.header, dict)
    # and the next frame is decoded as ever
    events = decoder.feed_and_decode(encode_frame(FrameType.REQUEST, 6, {"op": "hello"}))
    assert [f.seq for f in frames_of(events)] == [6]
