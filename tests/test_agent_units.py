"""Agent parts on their own: the model cache bound, settings, inputs, the zipapp."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from device_agent.errors import AgentError
from device_agent.inputs import resolve, resolve_shape
from device_agent.model_store import STALE_UPLOAD_S, ModelStore
from device_agent.protocol import BenchSettings, ErrorCode
from hwnas_bench import Device
from hwnas_bench.deploy import build_agent_zipapp


def put(store: ModelStore, data: bytes) -> Path:
    pending = store.begin(hashlib.sha256(data).hexdigest(), len(data))
    pending.write(data)
    return pending.commit()


def test_cache_evicts_least_recently_used_to_stay_under_its_bound(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, max_bytes=2500)
    a, b = put(store, b"a" * 1000), put(store, b"b" * 1000)
    store.get(a.stem)  # a is now more recently used than b
    import os

    os.utime(b, (1, 1))  # make "least recently used" unambiguous on coarse clocks
    c = put(store, b"c" * 1000)
    assert sorted(p.name for p in store.models()) == sorted([a.name, c.name])
    assert store.get(b.stem) is None


def test_model_larger_than_the_cache_is_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, max_bytes=100)
    with pytest.raises(AgentError) as info:
        store.begin("0" * 64, 101)
    assert info.value.code is ErrorCode.MODEL_TOO_LARGE


def test_stale_partial_uploads_are_cleared_at_start(tmp_path: Path) -> None:
    stale, fresh = tmp_path / ".upload-x.part", tmp_path / ".upload-y.part"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"another agent's upload, in progress")
    old = time.time() - 2 * STALE_UPLOAD_S
    os.utime(stale, (old, old))
    ModelStore(tmp_path, 1000)
    # the killed agent's part goes; one another agent sharing the cache writes now stays
    assert [p.name for p in tmp_path.glob(".upload-*")] == [fresh.name]


def test_dynamic_dims_resolve_by_name_and_default_to_one() -> None:
    assert resolve_shape("x", ["batch", 3, None, -1], {"batch": 8}) == [8, 3, 1, 1]
    assert resolve_shape("x", ["batch", 3], None) == [1, 3]
    assert resolve_shape("x", ["n", "n"], {"x:1": 5}) == [1, 5]
    # the dims left at 1 are named: symbolic names, "input:axis" for unnamed ones
    assert resolve("x", ["batch", 3, None], None) == ([1, 3, 1], ["batch", "x:2"])


def test_named_dynamic_dim_reaches_the_board(local_device: Device, mlp_model: Path) -> None:
    m = local_device.bench(mlp_model, dims={"batch": 8}, min_time_s=0.05, min_iterations=5)
    assert m.inputs == [
        {
            "name": "x",
            "dtype": "float32",
            "shape": [8, 64],
            "declared": ["batch", 64],
            "defaulted": [],
        }
    ]


def test_unavailable_provider_is_named(local_device: Device, mlp_model: Path) -> None:
    from hwnas_bench import AgentError as HostAgentError

    with pytest.raises(HostAgentError) as info:
        local_device.bench(mlp_model, provider="TensorrtExecutionProvider", min_time_s=0)
    assert info.value.code == "provider_unavailable"
    assert "CPUExecutionProvider" in info.value.message  # it lists what is available


def test_settings_defaults_are_valid_and_round_trip() -> None:
    settings = BenchSettings(threads=2, dims={"batch": 4})
    settings.validate()
    assert BenchSettings.from_wire({**settings.to_wire(), "op": "bench"}) == settings


def test_shutdown_stops_the_agent(local_device: Device) -> None:
    local_device.open()
    proc = local_device.transport._proc  # type: ignore[attr-defined]
    local_device.shutdown()
    assert proc.wait(timeout=10) == 0


def test_zipapp_is_reproducible_and_runs(tmp_path: Path) -> None:
    bundle = build_agent_zipapp()
    assert build_agent_zipapp.__wrapped__().sha256 == bundle.sha256  # same bytes every build
    names = zipfile.ZipFile(__import__("io").BytesIO(bundle.data)).namelist()
    assert "__main__.py" in names
    assert "device_agent/protocol/frames.py" in names
    assert not any("__pycache__" in n or n.startswith(("hwnas_bench", "tests")) for n in names)
    pyz = tmp_path / "agent.pyz"
    pyz.write_bytes(bundle.data)
    out = subprocess.run([sys.executable, str(pyz), "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.startswith("device_agent 0.1.0")


def oldest_python() -> str | None:
    pyenv = sorted((Path.home() / ".pyenv/versions").glob("3.8.*/bin/python"))
    for candidate in [*map(str, pyenv), shutil.which("python3.8")]:
        if candidate and subprocess.run([candidate, "-V"], capture_output=True).returncode == 0:
            return candidate
    return None


def test_agent_source_compiles_on_python_38() -> None:
    """Boards run old Pythons (JetPack 5 ships 3.8): the agent's syntax must stay 3.8."""
    python = oldest_python()
    if python is None:
        pytest.skip("no Python 3.8 interpreter on this machine")
    root = Path(__file__).resolve().parent.parent / "device_agent"
    files = [str(p) for p in root.rglob("*.py")]
    result = subprocess.run(
        [
            python,
            "-c",
            "import sys, ast\nfor f in sys.argv[1:]: ast.parse(open(f).read(), f)",
            *files,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_input_dtype_mismatch_message() -> None:
    from device_agent.inputs import check

    class Arg:
        name, type, shape = "x", "tensor(float)", [1, 4]

    with pytest.raises(AgentError, match="dtype int64"):
        check([Arg()], {"x": np.zeros((1, 4), dtype=np.int64)})
