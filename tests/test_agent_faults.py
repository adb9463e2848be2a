"""The agent under bad input: it answers with an error (or a NAK) and serves the next request.

Frames are written to a real agent subprocess byte by byte, bypassing the host client.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from device_agent.protocol import MAGIC, FrameType, encode_frame, pack_tensors
from device_agent.protocol.frames import PRELUDE
from hwnas_bench import AgentError, Device

from .raw_agent import RawAgent, error_code


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[RawAgent]:
    raw = RawAgent(tmp_path / "cache")
    yield raw
    raw.close()


def bench_header(sha: str, **settings: object) -> dict[str, object]:
    return {
        "op": "bench",
        "model": sha,
        "min_iterations": 5,
        "min_time_s": 0.0,
        "warmup_min_s": 0.0,
        **settings,
    }


def test_random_bytes_are_skipped_and_counted(agent: RawAgent) -> None:
    noise = os.urandom(20000).replace(MAGIC, b"")
    agent.send_bytes(noise)
    facts = agent.hello_ok()
    assert facts["counters"]["bytes_skipped"] >= len(noise) - 64
    assert agent.proc.poll() is None


def test_flipped_bit_gets_a_nak_then_the_resend_is_served(agent: RawAgent) -> None:
    frame = bytearray(encode_frame(FrameType.REQUEST, 500, {"op": "hello"}))
    frame[26] ^= 0x04  # inside the JSON header
    agent.send_bytes(bytes(frame))
    nak = agent.receive()
    assert nak.type is FrameType.NAK
    assert nak.seq == 500
    assert nak.header["reason"] == "crc"
    agent.send(FrameType.REQUEST, {"op": "hello"}, seq=500)
    reply = agent.receive()
    assert reply.seq == 500
    assert reply.header["ok"] is True


def test_truncated_frame_gets_a_nak_after_a_silent_gap(agent: RawAgent) -> None:
    whole = encode_frame(FrameType.REQUEST, 600, {"op": "hello"}, b"x" * 1000)
    agent.send_bytes(whole[:400])
    nak = agent.receive(timeout=10)
    assert nak.type is FrameType.NAK
    assert nak.seq == 600
    assert nak.header["reason"] == "truncated"  # type: ignore[union-attr]
    agent.hello_ok()


def test_abandoned_upload_is_discarded_and_named(agent: RawAgent, mlp_model: Path) -> None:
    data = mlp_model.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    agent.request({"op": "put_model", "sha256": sha, "size": len(data)})
    seq = agent.send(FrameType.CHUNK, {"offset": 0}, data[:1000])
    ack = agent.receive()
    assert ack.type is FrameType.ACK
    assert ack.header == {"next": 1000, "done": False}
    assert ack.seq == seq
    # the host gives up and asks for a benchmark of the half-sent model
    reply = agent.request(bench_header(sha))
    assert error_code(reply) == "model_not_found"
    assert f"1000 of {len(data)} bytes" in reply.header["error"]["message"]
    assert not list((agent_cache(agent)).glob(".upload-*"))  # the partial file is gone
    assert agent.upload(data).header.get("done") is True
    assert agent.request(bench_header(sha)).header["ok"] is True


def agent_cache(agent: RawAgent) -> Path:
    args = agent.proc.args
    assert isinstance(args, list)
    return Path(args[args.index("--cache-dir") + 1])


def test_oversize_length_header_is_refused(agent: RawAgent) -> None:
    prelude = PRELUDE.pack(MAGIC, 1, FrameType.REQUEST, 0, 700, 16, 0x7FFFFFFF)
    agent.send_bytes(prelude + struct.pack(">I", zlib.crc32(prelude)))
    reply = agent.receive()
    assert reply.seq == 700
    assert error_code(reply) == "frame_too_large"
    agent.hello_ok()


def test_digest_mismatch_is_refused_and_nothing_stored(agent: RawAgent, mlp_model: Path) -> None:
    data = mlp_model.read_bytes()
    wrong_sha = hashlib.sha256(b"something else").hexdigest()
    reply = agent.upload(data, sha=wrong_sha)
    assert error_code(reply) == "digest_mismatch"
    assert error_code(agent.request(bench_header(wrong_sha))) == "model_not_found"
    assert list(agent_cache(agent).glob("*.onnx")) == []
    agent.hello_ok()


def test_invalid_onnx_then_a_good_model(agent: RawAgent, mlp_model: Path) -> None:
    junk = b"this is not an onnx model" * 10
    agent.upload(junk)
    reply = agent.request(bench_header(hashlib.sha256(junk).hexdigest()))
    assert error_code(reply) == "invalid_model"
    assert "onnxruntime" in reply.header["error"]["message"]
    good = mlp_model.read_bytes()
    agent.upload(good)
    assert agent.request(bench_header(hashlib.sha256(good).hexdigest())).header["ok"] is True


def test_unknown_op_is_named(agent: RawAgent) -> None:
    reply = agent.request({"op": "format_disk"})
    assert error_code(reply) == "unknown_op"
    assert "format_disk" in reply.header["error"]["message"]
    agent.hello_ok()


def test_request_without_op_and_frames_the_agent_does_not_take(agent: RawAgent) -> None:
    assert error_code(agent.request({"nothing": 1})) == "unknown_op"
    seq = agent.send(FrameType.REPLY, {"ok": True})
    reply = agent.receive()
    assert reply.seq == seq
    assert error_code(reply) == "bad_frame"
    agent.hello_ok()


def test_chunk_without_upload(agent: RawAgent) -> None:
    seq = agent.send(FrameType.CHUNK, {"offset": 0}, b"abc")
    reply = agent.receive()
    assert reply.seq == seq
    assert error_code(reply) == "upload_state"


def test_repeated_request_is_answered_from_the_cache(agent: RawAgent, mlp_model: Path) -> None:
    data = mlp_model.read_bytes()
    agent.upload(data)
    header = bench_header(hashlib.sha256(data).hexdigest())
    agent.send(FrameType.REQUEST, header, seq=900)
    first = agent.receive()
    agent.send(FrameType.REQUEST, header, seq=900)  # as if our reply had been lost
    second = agent.receive()
    assert first == second  # the same samples: answered again, not run again


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"threads": -1}, "threads"),
        ({"threads": True}, "threads"),
        ({"min_time_s": "1"}, "min_time_s"),
        ({"graph_optimization": "max"}, "graph_optimization"),
        ({"min_iterations": 10, "max_iterations": 5}, "min_iterations"),
        ({"dims": {"batch": 0}}, "dims"),
        ({"power_meter": 3}, "power_meter"),
    ],
)
def test_bad_settings_are_named(
    agent: RawAgent, mlp_model: Path, settings: dict, field: str
) -> None:
    data = mlp_model.read_bytes()
    agent.upload(data)
    reply = agent.request(bench_header(hashlib.sha256(data).hexdigest(), **settings))
    assert error_code(reply) == "bad_request"
    assert field in reply.header["error"]["message"]


def test_wrong_input_shape_then_right_one(local_device: Device, conv_model: Path) -> None:
    wrong = {"x": np.zeros((1, 3, 32, 32), dtype=np.float32)}
    with pytest.raises(AgentError) as info:
        local_device.bench(conv_model, inputs=wrong, min_time_s=0.05, min_iterations=3)
    assert info.value.code == "bad_input"
    assert "[1, 3, 32, 32]" in info.value.message
    assert "64" in info.value.message
    right = {"x": np.ones((1, 3, 64, 64), dtype=np.float32)}
    m = local_device.bench(conv_model, inputs=right, min_time_s=0.05, min_iterations=3)
    (described,) = m.inputs  # more keys may say where the shape came from
    assert {k: described[k] for k in ("name", "dtype", "shape")} == {
        "name": "x",
        "dtype": "float32",
        "shape": [1, 3, 64, 64],
    }


def test_wrong_input_dtype_and_name(local_device: Device, conv_model: Path) -> None:
    with pytest.raises(AgentError, match="dtype float64"):
        local_device.bench(conv_model, inputs={"x": np.zeros((1, 3, 64, 64))}, min_time_s=0)
    with pytest.raises(AgentError, match="missing"):
        local_device.bench(conv_model, inputs={"image": np.zeros(3, np.float32)}, min_time_s=0)
    assert local_device.hello()["agent_version"]


def test_input_pack_that_is_not_npz(agent: RawAgent) -> None:
    junk = b"PK\x03\x04 not really a zip"
    sha = hashlib.sha256(junk).hexdigest()
    agent.request({"op": "put_inputs", "sha256": sha, "size": len(junk)})
    seq = agent.send(FrameType.CHUNK, {"offset": 0}, junk)
    reply = agent.receive()
    assert reply.seq == seq
    assert error_code(reply) == "bad_input"
    agent.hello_ok()


def test_input_pack_with_pickled_objects_is_refused(agent: RawAgent) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, x=np.array([{"a": 1}], dtype=object))  # an object array: needs pickle
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    agent.request({"op": "put_inputs", "sha256": sha, "size": len(data)})
    agent.send(FrameType.CHUNK, {"offset": 0}, data)
    assert error_code(agent.receive()) == "bad_input"  # type: ignore[arg-type]
    assert pack_tensors({"x": np.zeros(2)})  # and a proper pack still builds
