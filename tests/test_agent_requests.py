"""The agent's requests under the inputs that broke them: full disks, huge declared shapes,
misspelled dims, value-range failures of synthesised inputs, thread counts beyond the cores,
profiles that counted warm-up, and the measurement controls (CPU pinning, governor).

Most tests drive a real `Handlers` in this process with real frames, models built with the
onnx helper API and real onnxruntime sessions; the ones about process limits (a full disk,
memory) run a real agent subprocess under ``setrlimit``.
"""

from __future__ import annotations

import ast
import hashlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from device_agent.errors import AgentError
from device_agent.handlers import Handlers
from device_agent.model_store import ModelStore, is_sha256
from device_agent.protocol import (
    BenchSettings,
    ErrorCode,
    Frame,
    FrameType,
    pack_tensors,
)
from device_agent.runner import LoopProgress, create_session, timed_loop

from .raw_agent import FrameClient, RawAgent, error_code

FAST = {"min_iterations": 3, "min_time_s": 0.0, "warmup_min_s": 0.0}
ROOT = Path(__file__).resolve().parent.parent


def model_bytes(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    inits: list[onnx.TensorProto] | None = None,
) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def vi(name: str, elem: int, shape: list[Any]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def binary(op: str, elem: int, shape: list[Any]) -> bytes:
    return model_bytes(
        [helper.make_node(op, ["a", "b"], ["c"])],
        [vi("a", elem, shape), vi("b", elem, shape)],
        [vi("c", elem, shape)],
    )


def handlers_in(tmp_path: Path, **kwargs: Any) -> Handlers:
    return Handlers(ModelStore(tmp_path / "cache", 10**9), **kwargs)


def upload(h: Handlers, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    h.put_model(Frame(FrameType.REQUEST, 1, {"op": "put_model", "sha256": sha, "size": len(data)}))
    h.chunk(Frame(FrameType.CHUNK, 2, {"offset": 0}, data))
    return sha


def bench(h: Handlers, sha: str, **settings: Any) -> dict[str, Any]:
    header = {"op": "bench", "model": sha, **FAST, **settings}
    _, reply, _ = h.bench(Frame(FrameType.REQUEST, 3, header))
    return reply


def refused(h: Handlers, sha: str, **settings: Any) -> AgentError:
    with pytest.raises(AgentError) as info:
        bench(h, sha, **settings)
    return info.value


# -- 1. a full disk during an upload ---------------------------------------------------------


class LimitedAgent(RawAgent):
    """A real agent whose process runs under resource limits (a small disk, little memory)."""

    def __init__(self, cache: Path, *, fsize: int | None = None, argv: list[str] | None = None):
        def limits() -> None:
            if fsize is not None:  # writes past fsize fail with EFBIG, as on a full disk
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

        FrameClient.__init__(self)
        command = argv or [sys.executable, "-m", "device_agent", "--stdio"]
        self.proc = subprocess.Popen(
            [*command, "--cache-dir", str(cache), "--log-level", "ERROR"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            preexec_fn=limits,
        )


def test_disk_full_upload_answers_disk_full_cleans_up_and_serves_on(tmp_path: Path) -> None:
    agent = LimitedAgent(tmp_path / "cache", fsize=64 * 1024)
    try:
        data = os.urandom(256 * 1024)
        reply = agent.upload(data, chunk=32 * 1024)
        assert error_code(reply) == "disk_full", reply.header
        assert "disk" in reply.header["error"]["message"]
        agent.hello_ok()  # the next request is served: the agent did not end
        assert agent.proc.poll() is None
        assert not list((tmp_path / "cache").glob("*.part")), "the partial file was left"
        again = agent.request({"op": "bench", "model": hashlib.sha256(data).hexdigest()})
        assert error_code(again) == "model_not_found"
        assert "disk" in again.header["error"]["message"]  # why its upload never finished
    finally:
        agent.close()


# -- 2. a cap on input bytes -----------------------------------------------------------------


def test_huge_declared_shape_is_refused_before_allocating(tmp_path: Path) -> None:
    h = handlers_in(tmp_path, max_input_bytes=64 * 1024 * 1024)
    sha = upload(
        h,
        model_bytes(
            [helper.make_node("Identity", ["x"], ["y"])],
            [vi("x", TensorProto.FLOAT, [1, 3, 8192, 8192])],
            [vi("y", TensorProto.FLOAT, [1, 3, 8192, 8192])],
        ),
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    error = refused(h, sha)
    assert error.code is ErrorCode.INPUT_TOO_LARGE
    assert "'x'" in error.message
    assert "[1, 3, 8192, 8192]" in error.message
    assert str(64 * 1024 * 1024) in error.message or "64.0 MiB" in error.message
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grew_mb < 200, f"the peak RSS grew by {grew_mb:.0f} MiB"


def test_huge_batch_is_input_too_large_by_default(tmp_path: Path, mlp_model: Path) -> None:
    agent = RawAgent(tmp_path / "cache")
    try:
        facts = agent.hello_ok()
        assert 0 < facts["max_input_bytes"] <= 1024**3
        agent.upload(mlp_model.read_bytes())
        sha = hashlib.sha256(mlp_model.read_bytes()).hexdigest()
        reply = agent.request({"op": "bench", "model": sha, "dims": {"batch": 200_000_000}, **FAST})
        assert error_code(reply) == "input_too_large"
        assert "batch" in reply.header["error"]["message"] or "200000000" in str(reply.header)
        agent.hello_ok()
    finally:
        agent.close()


def test_max_input_mb_flag_sets_the_cap(tmp_path: Path, mlp_model: Path) -> None:
    agent = RawAgent(tmp_path / "cache", "--max-input-mb", "0.5")
    try:
        assert agent.hello_ok()["max_input_bytes"] == 512 * 1024
        agent.upload(mlp_model.read_bytes())
        sha = hashlib.sha256(mlp_model.read_bytes()).hexdigest()
        small = agent.request({"op": "bench", "model": sha, **FAST})
        assert small.header.get("ok") is True
        big = agent.request({"op": "bench", "model": sha, "dims": {"batch": 100_000}, **FAST})
        assert error_code(big) == "input_too_large"
    finally:
        agent.close()


def test_memory_error_is_out_of_memory_and_the_agent_serves_on(
    tmp_path: Path, mlp_model: Path
) -> None:
    """A cap above what the process may allocate: the allocation itself fails."""
    launcher = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from device_agent.handlers import Handlers\n"
        "from device_agent.links import StdioLink\n"
        "from device_agent.model_store import ModelStore\n"
        "from device_agent.server import Agent\n"
        "h = Handlers(ModelStore(Path(sys.argv[2]), 10**9), max_input_bytes=1 << 40)\n"
        "import onnxruntime\n"
        "limit = int(open('/proc/self/status').read().split('VmSize:')[1].split()[0]) * 1024\n"
        "limit += 3 * 1024**3\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
        "Agent(StdioLink(), h).serve()\n"
    )
    agent = LimitedAgent(tmp_path / "cache", argv=[sys.executable, "-c", launcher])
    try:
        agent.hello_ok()
        data = mlp_model.read_bytes()
        agent.upload(data)
        sha = hashlib.sha256(data).hexdigest()
        reply = agent.request({"op": "bench", "model": sha, "dims": {"batch": 50_000_000}, **FAST})
        assert error_code(reply) == "out_of_memory", reply.header
        ok = agent.request({"op": "bench", "model": sha, "threads": 1, **FAST})
        assert ok.header["ok"] is True, ok.header
    finally:
        agent.close()


# -- 3. smaller ones -------------------------------------------------------------------------


def test_cache_bound_counts_the_upload_in_flight(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, max_bytes=2500)
    for byte in (b"a", b"b"):
        data = byte * 1000
        pending = store.begin(hashlib.sha256(data).hexdigest(), len(data))
        pending.write(data)
        pending.commit()
    pending = store.begin("c" * 64, 1000)  # 2000 cached + 1000 in flight > 2500
    on_disk = sum(p.stat().st_size for p in store.models())
    assert on_disk + 1000 <= 2500, "the cache plus the upload in flight exceed the bound"
    pending.discard()


def test_sha256_with_a_trailing_newline_is_not_a_sha256() -> None:
    assert is_sha256("0" * 64)
    assert not is_sha256("0" * 64 + "\n")


def test_threads_are_capped_by_the_cores(tmp_path: Path, mlp_model: Path) -> None:
    agent = RawAgent(tmp_path / "cache")
    try:
        data = mlp_model.read_bytes()
        agent.upload(data)
        sha = hashlib.sha256(data).hexdigest()
        reply = agent.request(
            {"op": "bench", "model": sha, "threads": 1000, "inter_op_threads": 1000, **FAST}
        )
        assert reply.header["ok"] is True, reply.header
        cores = len(os.sched_getaffinity(0))
        assert reply.header["settings"]["threads"] == cores
        assert reply.header["settings"]["inter_op_threads"] == cores
        assert any("1000" in n and "thread" in n for n in reply.header["notes"])
        status = Path(f"/proc/{agent.proc.pid}/status").read_text()
        threads = int(status.split("Threads:")[1].split()[0])
        assert threads < 50, f"the agent runs {threads} threads"
    finally:
        agent.close()


def test_warmup_stops_at_max_time(tmp_path: Path, mlp_model: Path) -> None:
    h = handlers_in(tmp_path)
    sha = upload(h, mlp_model.read_bytes())
    reply = bench(h, sha, warmup_runs=10**9, max_time_s=0.3)
    assert reply["warmup"]["runs"] < 10**9
    assert reply["warmup"]["seconds"] < 5
    assert any("warm-up" in n for n in reply["notes"])


# -- 4. no import circle ---------------------------------------------------------------------


def test_measure_does_not_import_handlers() -> None:
    tree = ast.parse((ROOT / "device_agent" / "measure.py").read_text())
    imported = [
        (node.module or "") + "." + ",".join(a.name for a in node.names)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    ] + [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
    assert not [m for m in imported if "handlers" in m], imported


# -- 5. dims ---------------------------------------------------------------------------------


def test_misspelled_dim_is_refused_naming_the_dynamic_dims(tmp_path: Path) -> None:
    h = handlers_in(tmp_path)
    data = model_bytes(
        [helper.make_node("Relu", ["x"], ["y"])],
        [vi("x", TensorProto.FLOAT, ["batch", None, 4])],
        [vi("y", TensorProto.FLOAT, ["batch", None, 4])],
    )
    sha = upload(h, data)
    error = refused(h, sha, dims={"bacth": 8})
    assert error.code is ErrorCode.BAD_INPUT
    assert "'bacth'" in error.message
    assert "batch" in error.message
    assert "x:1" in error.message


def test_inputs_show_the_declared_shape_and_the_defaulted_dims(
    tmp_path: Path, mlp_model: Path
) -> None:
    h = handlers_in(tmp_path)
    sha = upload(h, mlp_model.read_bytes())
    (entry,) = bench(h, sha)["inputs"]
    assert entry == {
        "name": "x",
        "dtype": "float32",
        "shape": [1, 64],
        "declared": ["batch", 64],
        "defaulted": ["batch"],
    }
    (entry,) = bench(h, sha, dims={"batch": 4})["inputs"]
    assert entry["shape"] == [4, 64]
    assert entry["defaulted"] == []


def test_shape_mismatch_names_the_defaulted_dims_and_the_fix(tmp_path: Path) -> None:
    h = handlers_in(tmp_path)
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 4], np.zeros(32, np.float32))
    data = model_bytes(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [vi("x", TensorProto.FLOAT, ["batch", "features"])],
        [vi("y", TensorProto.FLOAT, ["batch", 4])],
        [w],
    )
    sha = upload(h, data)
    error = refused(h, sha)
    assert "features" in error.message
    assert "set to 1" in error.message
    assert "--dim" in error.message
    assert bench(h, sha, dims={"features": 8})["inputs"][0]["shape"] == [1, 8]


# -- 6. profile ------------------------------------------------------------------------------


def test_profile_counts_the_iterations_only(tmp_path: Path, conv_model: Path) -> None:
    h = handlers_in(tmp_path)
    sha = upload(h, conv_model.read_bytes())
    header = {"op": "profile", "model": sha, "iterations": 20, "warmup_min_s": 0.2}
    _, summary, _ = h.profile(Frame(FrameType.REQUEST, 4, header))
    assert summary["runs"] == 20
    assert summary["warmup_runs_included"] is False
    assert summary["nodes"]
    for row in summary["nodes"]:
        assert row["calls"] == 20, row
        assert row["median_us"] <= row["p95_us"]
        assert isinstance(row["input_shapes"], list)
        assert isinstance(row["output_shapes"], list)
    first_layer = [r for r in summary["nodes"] if r["input_shapes"][:1] == [[1, 3, 64, 64]]]
    assert [r["op_type"] for r in first_layer] == ["Conv"]


# -- 7. synthesis ----------------------------------------------------------------------------


def test_zero_dimensional_inputs_of_every_dtype_run(tmp_path: Path) -> None:
    h = handlers_in(tmp_path)
    for elem in (TensorProto.BOOL, TensorProto.FLOAT, TensorProto.INT64, TensorProto.UINT8):
        data = model_bytes(
            [helper.make_node("Identity", ["x"], ["y"])], [vi("x", elem, [])], [vi("y", elem, [])]
        )
        (entry,) = bench(h, upload(h, data))["inputs"]
        assert entry["shape"] == []


def test_integer_div_and_mod_run_on_synthesised_inputs(tmp_path: Path) -> None:
    h = handlers_in(tmp_path)
    for op in ("Div", "Mod"):
        for elem in (TensorProto.INT32, TensorProto.INT64):
            reply = bench(h, upload(h, binary(op, elem, [64])))
            assert reply["latency"]["n"] >= 3


def test_value_range_failure_names_the_synthesised_inputs(tmp_path: Path) -> None:
    h = handlers_in(tmp_path)
    data = model_bytes(
        [helper.make_node("Gather", ["d", "i"], ["o"])],
        [vi("d", TensorProto.FLOAT, [2, 4]), vi("i", TensorProto.INT64, [16])],
        [vi("o", TensorProto.FLOAT, [16, 4])],
    )
    error = refused(h, upload(h, data))
    assert error.code is ErrorCode.BAD_INPUT
    assert "synthesised" in error.message
    assert "'i'" in error.message
    assert "'d'" not in error.message  # the float data is not what broke the index
    assert "--inputs" in error.message


def test_integer_division_by_zero_names_the_integer_inputs(tmp_path: Path) -> None:
    h = handlers_in(tmp_path)
    data = model_bytes(
        [
            helper.make_node("Sub", ["b", "b"], ["z"]),  # zero, whatever b holds
            helper.make_node("Div", ["a", "z"], ["q"]),
            helper.make_node("Identity", ["f"], ["g"]),
        ],
        [vi("a", TensorProto.INT64, [4]), vi("b", TensorProto.INT64, [4]), vi("f", 1, [4])],
        [vi("q", TensorProto.INT64, [4]), vi("g", TensorProto.FLOAT, [4])],
    )
    error = refused(h, upload(h, data))
    assert error.code is ErrorCode.BAD_INPUT
    assert "by zero" in error.message
    assert "'a'" in error.message
    assert "'b'" in error.message
    assert "'f'" not in error.message


def test_string_input_names_the_way_to_send_inputs(tmp_path: Path) -> None:
    h = handlers_in(tmp_path)
    data = model_bytes(
        [helper.make_node("Identity", ["s"], ["t"])],
        [vi("s", TensorProto.STRING, [2])],
        [vi("t", TensorProto.STRING, [2])],
    )
    error = refused(h, upload(h, data))
    assert error.code is ErrorCode.BAD_INPUT
    assert "'s'" in error.message
    assert "--inputs FILE.npz" in error.message
    assert "inputs=" in error.message


@pytest.mark.parametrize("value", [0, -1, "8", 2.5])
def test_bad_dims_values_have_one_message(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^dims: ") as info:
        BenchSettings(dims={"batch": value}).validate()
    assert str(info.value) == f"dims: 'batch' must be an integer >= 1, not {value!r}"


def put_pack(h: Handlers, pack: bytes) -> AgentError:
    sha = hashlib.sha256(pack).hexdigest()
    h.put_inputs(
        Frame(FrameType.REQUEST, 5, {"op": "put_inputs", "sha256": sha, "size": len(pack)})
    )
    with pytest.raises(AgentError) as info:
        h.chunk(Frame(FrameType.CHUNK, 6, {"offset": 0}, pack))
    return info.value


def forged_pack(shape: tuple[int, ...], data: bytes = b"") -> bytes:
    """A pack whose member x.npy declares ``shape`` (float32) but holds only ``data``."""
    import io
    import zipfile

    member = io.BytesIO()
    np.lib.format.write_array_header_2_0(
        member, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("x.npy", member.getvalue() + data)
    return buf.getvalue()


def test_pack_whose_header_claims_more_than_the_cap_is_input_too_large(tmp_path: Path) -> None:
    h = handlers_in(tmp_path, max_input_bytes=1024 * 1024)
    error = put_pack(h, forged_pack((1024, 1024)))  # 4 MiB claimed, nothing held
    assert error.code is ErrorCode.INPUT_TOO_LARGE
    assert "'x'" in error.message
    assert "[1024, 1024]" in error.message
    assert "--max-input-mb" in error.message


def test_pack_whose_header_claims_more_than_it_holds_is_bad_input(tmp_path: Path) -> None:
    h = handlers_in(tmp_path, max_input_bytes=1024 * 1024)
    error = put_pack(h, forged_pack((16,), b"\0" * 8))  # 64 bytes claimed, 8 held
    assert error.code is ErrorCode.BAD_INPUT
    assert "'x'" in error.message
    assert "64" in error.message


def test_real_packs_still_unpack_after_the_header_checks() -> None:
    from device_agent.protocol import unpack_tensors

    arrays = {"a": np.arange(6, dtype=np.int64).reshape(2, 3), "b": np.zeros((), np.float32)}
    back = unpack_tensors(pack_tensors(arrays), 1024)
    assert set(back) == {"a", "b"}
    assert np.array_equal(back["a"], arrays["a"])
    assert back["b"].shape == ()
    with pytest.raises(ValueError, match="'a'"):
        unpack_tensors(pack_tensors(arrays), 40)  # a needs 48 bytes


# -- 8. environment --------------------------------------------------------------------------


def test_environment_has_load_cores_affinity_and_busy(tmp_path: Path, mlp_model: Path) -> None:
    h = handlers_in(tmp_path)
    env = bench(h, upload(h, mlp_model.read_bytes()))["environment"]
    assert len(env["load_avg_start"]) == 3
    assert len(env["load_avg_end"]) == 3
    assert env["cpu_count"] == os.cpu_count()
    assert env["affinity"] == sorted(os.sched_getaffinity(0))
    assert env["governor_request"] is None
    assert env["busy"] is None or "load" in env["busy"]


def test_busy_sentence() -> None:
    from device_agent.sysinfo import busy_sentence

    assert busy_sentence([0.5, 0.4, 0.3], [0.6, 0.5, 0.3], cores=2, threads=1) is None
    assert busy_sentence([3.1, 1, 1], [0.5, 1, 1], cores=2, threads=1) == (
        "host busy: load 3.1 on 2 cores at the start"
    )
    both = busy_sentence([3.1, 1, 1], [4.0, 1, 1], cores=2, threads=1)
    assert both == "host busy: load 3.1 at the start and 4.0 at the end on 2 cores"
    threads = busy_sentence([1.5, 1, 1], [1.5, 1, 1], cores=4, threads=4)
    assert threads == "4 threads on 2.5 free cores (4 cores, load 1.5)"
    one = busy_sentence([1.5, 1, 1], [1.5, 1, 1], cores=2, threads=1)
    assert one == "1 thread on 0.5 free cores (2 cores, load 1.5)"
    assert busy_sentence(None, None, cores=2, threads=1) is None


# -- 9. invalid models -----------------------------------------------------------------------


def test_invalid_model_error_names_the_model_not_the_cache_path(tmp_path: Path) -> None:
    h = handlers_in(tmp_path)
    sha = upload(h, b"this is not an onnx model")
    error = refused(h, sha)
    assert error.code is ErrorCode.INVALID_MODEL
    assert str(tmp_path) not in error.message
    assert f"model {sha[:12]}…" in error.message


# -- 10. measurement control -----------------------------------------------------------------


def test_cpus_pin_the_run_and_the_affinity_is_restored(tmp_path: Path, mlp_model: Path) -> None:
    h = handlers_in(tmp_path)
    sha = upload(h, mlp_model.read_bytes())
    before = os.sched_getaffinity(0)
    first = min(before)
    reply = bench(h, sha, cpus=[first])
    assert reply["environment"]["affinity"] == [first]
    assert os.sched_getaffinity(0) == before
    assert reply["memory"]["session_reused"] is False
    assert bench(h, sha, cpus=[first])["memory"]["session_reused"] is True
    assert bench(h, sha)["memory"]["session_reused"] is False  # pools were made for one CPU
    error = refused(h, sha, cpus=[4095])
    assert error.code is ErrorCode.BAD_REQUEST
    assert "4095" in error.message
    assert str(first) in error.message  # it names the CPUs that may be used
    assert os.sched_getaffinity(0) == before


@pytest.fixture
def fake_sysfs(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for n in sorted(os.sched_getaffinity(0)):
        cpufreq = root / f"sys/devices/system/cpu/cpu{n}/cpufreq"
        cpufreq.mkdir(parents=True)
        (cpufreq / "scaling_governor").write_text("ondemand\n")
        (cpufreq / "scaling_available_governors").write_text("ondemand performance powersave\n")
    return root


def governors(root: Path) -> dict[str, str]:
    return {
        p.parent.parent.name: p.read_text().strip()
        for p in sorted(root.glob("sys/devices/system/cpu/cpu*/cpufreq/scaling_governor"))
        if p.is_file()
    }


def test_governor_is_set_for_the_run_and_restored(
    tmp_path: Path, mlp_model: Path, fake_sysfs: Path
) -> None:
    h = handlers_in(tmp_path, sysfs_root=fake_sysfs)
    sha = upload(h, mlp_model.read_bytes())
    reply = bench(h, sha, governor="performance")
    env = reply["environment"]
    assert env["governor"] == "performance"  # read while it was applied
    request = env["governor_request"]
    assert request["requested"] == "performance"
    assert request["applied"] is True
    assert request["restored"] is True
    assert request["previous"] == {cpu: "ondemand" for cpu in governors(fake_sysfs)}
    assert set(governors(fake_sysfs).values()) == {"ondemand"}


def test_governor_is_restored_when_the_run_fails(tmp_path: Path, fake_sysfs: Path) -> None:
    h = handlers_in(tmp_path, sysfs_root=fake_sysfs)
    data = model_bytes(
        [helper.make_node("Gather", ["d", "i"], ["o"])],
        [vi("d", TensorProto.FLOAT, [2, 4]), vi("i", TensorProto.INT64, [16])],
        [vi("o", TensorProto.FLOAT, [16, 4])],
    )
    refused(h, upload(h, data), governor="performance")
    assert set(governors(fake_sysfs).values()) == {"ondemand"}


def test_governor_refusals(tmp_path: Path, mlp_model: Path, fake_sysfs: Path) -> None:
    h = handlers_in(tmp_path, sysfs_root=fake_sysfs)
    sha = upload(h, mlp_model.read_bytes())
    error = refused(h, sha, governor="turbo")
    assert error.code is ErrorCode.BAD_REQUEST
    assert "performance" in error.message  # names the available ones
    cpu = min(os.sched_getaffinity(0))
    target = fake_sysfs / f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"
    target.unlink()
    target.mkdir()  # not writable, even for root
    error = refused(h, sha, governor="performance")
    assert error.code is ErrorCode.NOT_PERMITTED
    assert f"cpu{cpu}" in error.message
    assert set(v for k, v in governors(fake_sysfs).items() if k != f"cpu{cpu}") <= {"ondemand"}
    no_cpufreq = handlers_in(tmp_path / "other", sysfs_root=tmp_path / "empty")
    error = refused(no_cpufreq, upload(no_cpufreq, mlp_model.read_bytes()), governor="performance")
    assert error.code is ErrorCode.NOT_PERMITTED
    assert "cpufreq" in error.message


def test_input_pack_inputs_show_their_declared_shape(tmp_path: Path, mlp_model: Path) -> None:
    h = handlers_in(tmp_path)
    sha = upload(h, mlp_model.read_bytes())
    pack = pack_tensors({"x": np.zeros((2, 64), np.float32)})
    pack_sha = hashlib.sha256(pack).hexdigest()
    h.put_inputs(
        Frame(FrameType.REQUEST, 5, {"op": "put_inputs", "sha256": pack_sha, "size": len(pack)})
    )
    h.chunk(Frame(FrameType.CHUNK, 6, {"offset": 0}, pack))
    (entry,) = bench(h, sha, inputs=pack_sha)["inputs"]
    assert entry == {
        "name": "x",
        "dtype": "float32",
        "shape": [2, 64],
        "declared": ["batch", 64],
        "defaulted": [],
    }


def test_timed_loop_warmup_is_cut_at_max_time(mlp_model: Path) -> None:
    settings = BenchSettings(warmup_runs=10**9, warmup_min_s=0.0, max_time_s=0.2, min_time_s=0.0)
    session = create_session(mlp_model, settings)
    run = timed_loop(session, {"x": np.zeros((1, 64), np.float32)}, settings, LoopProgress())
    assert run.warmup_runs < 10**9
    assert run.warmup_cut is True


# -- a cap on what one run allocates (its outputs) -------------------------------------------


def expand_model(shape: list[int]) -> bytes:
    """95 bytes: y = Expand(x, shape), a static output shape onnxruntime infers at load."""
    shape_init = helper.make_tensor("shape", TensorProto.INT64, [len(shape)], shape)
    return model_bytes(
        [helper.make_node("Expand", ["x", "shape"], ["y"])],
        [vi("x", TensorProto.FLOAT, [1])],
        [vi("y", TensorProto.FLOAT, None)],  # type: ignore[arg-type]
        [shape_init],
    )


def constant_of_shape_model(shape: list[int]) -> bytes:
    """y = ConstantOfShape(n * 0 + shape): a shape onnxruntime cannot know before it runs."""
    inits = [
        helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
        helper.make_tensor("shape", TensorProto.INT64, [len(shape)], shape),
    ]
    return model_bytes(
        [
            helper.make_node("Mul", ["n", "zero"], ["z"]),
            helper.make_node("Add", ["z", "shape"], ["s"]),
            helper.make_node("ConstantOfShape", ["s"], ["y"]),
        ],
        [vi("n", TensorProto.INT64, [len(shape)])],
        [vi("y", TensorProto.FLOAT, None)],  # type: ignore[arg-type]
        inits,
    )


def status_kib(pid: int, key: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    (line,) = [x for x in status.splitlines() if x.startswith(f"{key}:")]
    return int(line.split()[1])


@pytest.mark.parametrize("op", ["bench", "profile"])
def test_model_whose_output_shape_is_huge_is_refused_before_running(
    tmp_path: Path, op: str
) -> None:
    """An 89-byte model reached 1.6 GB RSS: its output shape is known at load, and refused."""
    data = expand_model([20000, 20000])
    assert len(data) < 120
    agent = RawAgent(tmp_path / "cache", "--max-output-mb", "64")
    try:
        assert agent.hello_ok()["max_output_bytes"] == 64 * 1024 * 1024
        agent.upload(data)
        sha = hashlib.sha256(data).hexdigest()
        rss = status_kib(agent.proc.pid, "VmRSS")
        reply = agent.request({"op": op, "model": sha, "iterations": 3, **FAST})
        assert error_code(reply) == "output_too_large"
        message = reply.header["error"]["message"]
        assert "'y'" in message
        assert "[20000, 20000]" in message
        assert "--max-output-mb" in message
        grown_mib = (status_kib(agent.proc.pid, "VmHWM") - rss) / 1024
        assert grown_mib < 200, f"the agent's peak RSS grew by {grown_mib:.0f} MiB"
        agent.hello_ok()  # and it serves on
    finally:
        agent.close()


@pytest.mark.parametrize("op", ["bench", "profile"])
def test_model_whose_output_is_huge_only_once_it_runs_is_stopped_by_the_guard(
    tmp_path: Path, op: str
) -> None:
    """No shape to check at load: the first run's allocations are bounded by the cap."""
    data = constant_of_shape_model([20000, 20000])  # 1.6 GB of float32 zeros
    agent = RawAgent(tmp_path / "cache", "--max-output-mb", "64")
    try:
        agent.hello_ok()
        agent.upload(data)
        sha = hashlib.sha256(data).hexdigest()
        rss = status_kib(agent.proc.pid, "VmRSS")
        reply = agent.request({"op": op, "model": sha, "iterations": 3, **FAST})
        assert error_code(reply) == "output_too_large"
        assert "--max-output-mb" in reply.header["error"]["message"]
        grown_mib = (status_kib(agent.proc.pid, "VmHWM") - rss) / 1024
        assert grown_mib < 200, f"the agent's peak RSS grew by {grown_mib:.0f} MiB"
        agent.hello_ok()
        # the guard is lifted: a model within the cap runs, more than once
        small = constant_of_shape_model([1024, 1024])  # 4 MiB
        agent.upload(small)
        ok = agent.request({"op": op, "model": hashlib.sha256(small).hexdigest(), **FAST})
        assert ok.header["ok"] is True, ok.header
    finally:
        agent.close()


def test_outputs_near_the_cap_still_run_and_without_warm_up(tmp_path: Path) -> None:
    """The guard allows what the cap allows: 24 MiB of output under a 32 MiB cap, both with
    the first run a warm-up run and with the first run a timed one."""
    h = handlers_in(tmp_path, max_output_bytes=32 * 1024 * 1024)
    sha = upload(h, constant_of_shape_model([6 * 1024, 1024]))
    assert bench(h, sha)["latency"]["n"] == 3
    assert bench(h, sha, warmup_runs=0)["latency"]["n"] == 3
    # 48 MiB: within the guard's slack, so counted after the first (warm-up) run
    error = refused(h, upload(h, constant_of_shape_model([12 * 1024, 1024])))
    assert error.code is ErrorCode.OUTPUT_TOO_LARGE
    assert "the outputs of one run took" in error.message
    # 128 MiB with the first run a timed one: the guard refuses the allocation
    error = refused(h, upload(h, constant_of_shape_model([32 * 1024, 1024])), warmup_runs=0)
    assert error.code is ErrorCode.OUTPUT_TOO_LARGE
    assert "asked for more memory" in error.message
    assert bench(h, sha)["latency"]["n"] == 3
    assert resource.getrlimit(resource.RLIMIT_DATA)[0] == resource.RLIM_INFINITY  # lifted


def test_outputs_are_added_up_after_the_first_run(tmp_path: Path) -> None:
    """Where the guard cannot be set, the outputs the first run returned are counted."""
    from device_agent.outputs import OutputGuard

    guard = OutputGuard(1024)
    with pytest.raises(AgentError) as info:
        guard.disarm([np.zeros(256, np.float32), {"k": np.zeros(1, np.float32)}])
    assert info.value.code is ErrorCode.OUTPUT_TOO_LARGE
    assert "1028 bytes" in info.value.message
    guard.disarm([np.zeros(256, np.float32)])  # 1024 bytes: within the cap
