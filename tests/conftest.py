"""Fixtures: example models, a local agent, and the real parts (sshd, socat ptys).

Outside CI a test may skip when sshd or socat is missing; in CI (CI=true) it fails instead,
so a broken CI image can never pass by skipping.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hwnas_bench import Device
from hwnas_bench.testing import (
    MissingPart,
    PtyPair,
    SSHServer,
    start_pty_pair,
    start_serial_agent,
    start_sshd,
)
from hwnas_bench.transports.local import LocalTransport

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
IN_CI = os.environ.get("CI", "").lower() == "true"


def missing_part(exc: MissingPart) -> None:
    if IN_CI:
        pytest.fail(f"CI must provide this part: {exc}")
    pytest.skip(str(exc))


@pytest.fixture(scope="session")
def mlp_model() -> Path:
    return MODELS / "mlp.onnx"


@pytest.fixture(scope="session")
def conv_model() -> Path:
    return MODELS / "convnet.onnx"


@pytest.fixture(scope="session")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~1 MB model (a wide MLP), for uploads over noisy lines."""
    sys.path.insert(0, str(MODELS))
    try:
        from make_models import mlp
    finally:
        sys.path.remove(str(MODELS))
    import onnx

    path = tmp_path_factory.mktemp("models") / "mlp_1mb.onnx"
    onnx.save(mlp(hidden=2048, features=120, seed=3), path)
    return path


@pytest.fixture
def local_device(tmp_path: Path) -> Iterator[Device]:
    device = Device(LocalTransport(cache_dir=tmp_path / "agent-cache"), timeout=60)
    yield device
    device.close()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    try:
        server = start_sshd(tmp_path_factory.mktemp("sshd"))
    except MissingPart as exc:
        missing_part(exc)
    yield server
    server.stop()


@pytest.fixture
def ssh_device(sshd: SSHServer) -> Iterator[Device]:
    device = sshd.target().device(timeout=60)
    yield device
    device.close()


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[PtyPair]:
    try:
        pair = start_pty_pair(tmp_path, "line")
    except MissingPart as exc:
        missing_part(exc)
    yield pair
    pair.stop()


@pytest.fixture
def serial_agent(pty_pair: PtyPair, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_serial_agent(pty_pair.a, tmp_path / "serial-cache")
    yield proc
    proc.kill()
    proc.wait()


pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def private_lock_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Board locks and the lease log of every test live in a fresh directory."""
    path = tmp_path_factory.mktemp("locks")
    monkeypatch.setenv("HWNAS_LOCK_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def no_lock_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lock server set in the developer's shell never reaches the tests: file locks,
    unless a test asks for PostgreSQL."""
    monkeypatch.delenv("HWNAS_LOCK_URL", raising=False)


from .postgres import PostgresServer, start_postgres  # noqa: E402 - appended with its fixtures


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A real PostgreSQL server on 127.0.0.1 for the session (tests/postgres.py); skipped
    outside CI when PostgreSQL or psycopg is missing, a failure in CI."""
    try:
        server = start_postgres(tmp_path_factory.mktemp("postgres"))
    except MissingPart as exc:
        missing_part(exc)
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty database on the session's server, owned by a role that is
    not a superuser (``postgresql://farm@127.0.0.1:PORT/farm_...``, trust authentication)."""
    return postgres_server.new_database()
