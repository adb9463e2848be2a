"""``hwnas search --storage URL``: a password holding ``/``, ``?`` or a space is never
printed, with or without ``-v`` (the storage here is a port nothing listens on, so the run
fails at once, in this process)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hwnas_bench.cli.main import main

PASSWORD = "Qz/x?Kj W"
#: the same password as a URL must carry it (a raw one is refused before the driver sees it)
ENCODED = "Qz%2Fx%3FKj%20W"
QUICK = ["--dataset", "digits", "--epochs", "1", "--min-time", "0.05", "--strategy", "random"]


def pieces(password: str) -> list[str]:
    """Every 3 characters in a row of ``password``: none of them may be shown."""
    return [password[i : i + 3] for i in range(len(password) - 2)]


@pytest.fixture
def dead_port() -> int:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("verbose", [False, True])
@pytest.mark.parametrize(
    ("password", "code", "says"),
    [
        (PASSWORD, 2, "hwnas: error: --storage: a URL holds no spaces"),
        (ENCODED, 1, "hwnas: error: cannot open the study's storage"),
    ],
    ids=["raw", "encoded"],
)
def test_search_never_prints_a_storage_password(
    verbose: bool,
    password: str,
    code: int,
    says: str,
    dead_port: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"postgresql://ana:{password}@127.0.0.1:{dead_port}/db"
    flags = ["-v"] if verbose else []
    got = main(
        [*flags, "search", *QUICK, "--storage", url, "--study", "s", "--out", str(tmp_path / "r")]
    )
    said = capsys.readouterr()
    shown = said.out + said.err
    assert got == code, shown
    assert f"postgresql://ana:***@127.0.0.1:{dead_port}/db" in said.err
    assert says in said.err
    for piece in pieces(password):
        assert piece not in shown, piece


def test_report_never_prints_a_storage_password(
    dead_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://ana:{ENCODED}@127.0.0.1:{dead_port}/db"
    code = main(["-v", "report", "--storage", url, "--study", "s", "--out", str(tmp_path / "r")])
    said = capsys.readouterr()
    assert code == 1, said.err
    assert f"postgresql://ana:***@127.0.0.1:{dead_port}/db" in said.err
    for piece in [*pieces(PASSWORD), *pieces(ENCODED)]:
        assert piece not in said.out + said.err, piece
