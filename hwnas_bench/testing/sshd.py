"""A throwaway OpenSSH server on 127.0.0.1, as a board reachable over SSH.

Keys, authorized_keys, known_hosts and an ssh_config are written to a work directory; the
server runs ``sshd -D -e`` on a free port until :meth:`SSHServer.stop`. Nothing outside
the work directory is touched (except creating sshd's privilege-separation directory
``/run/sshd`` when running as root and it is missing).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..targets import TargetSpec
from .parts import require_binary, start_until_ready, stop_process

HOST_ALIAS = "hwnas-test-board"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _keygen(keygen: str, path: Path) -> str:
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "hwnas-test", "-f", str(path)], check=True
    )
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class SSHServer:
    workdir: Path
    port: int
    user: str
    client_key: Path
    known_hosts: Path
    ssh_config: Path
    proc: subprocess.Popen[bytes]
    host: str = "127.0.0.1"

    def target(
        self,
        name: str = "ssh-board",
        python: str = sys.executable,
        *,
        bench: dict[str, Any] | None = None,
    ) -> TargetSpec:
        """A target for this server, with its own known_hosts and key (no user files used);
        ``bench``: the board's own BenchSettings overrides, as a ``[boards.NAME.bench]`` table
        gives them (this machine reached two ways, measured two ways)."""
        return TargetSpec(
            name,
            "ssh",
            {
                "host": HOST_ALIAS,
                "python": python,
                "ssh_config": str(self.ssh_config),
                "known_hosts": str(self.known_hosts),
            },
            bench=dict(bench or {}),
        )

    def board_toml(self, name: str, **overrides: str) -> str:
        """A ``[boards.NAME]`` table for hwnas.toml that reaches this server."""
        options = {**self.target(name).options, **overrides}
        lines = [f"[boards.{name}]", 'transport = "ssh"']
        lines += [f"{key} = {json.dumps(value)}" for key, value in options.items()]
        return "\n".join(lines) + "\n"

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (children of the listener)."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                pids.append(int(stat.parent.name))
        return pids

    def kill_sessions(self) -> int:
        """Cut every open SSH connection, as a board dropping off the network would."""
        pids = self.session_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def stop(self) -> None:
        self.kill_sessions()
        stop_process(self.proc)


def start_sshd(workdir: Path, timeout: float = 15.0, *, sftp: bool = True) -> SSHServer:
    """Start the server; ``sftp=False`` leaves out the SFTP subsystem, as on many small
    boards (dropbear, Buildroot)."""
    sshd = require_binary("sshd", "/usr/sbin/sshd")
    keygen = require_binary("ssh-keygen", "/usr/bin/ssh-keygen")
    workdir.mkdir(parents=True, exist_ok=True)
    host_pub = _keygen(keygen, workdir / "host_ed25519")
    client_pub = _keygen(keygen, workdir / "client_ed25519")
    authorized = workdir / "authorized_keys"
    authorized.write_text(client_pub + "\n")
    authorized.chmod(0o600)
    port = _free_port()
    user = getpass.getuser()
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {workdir / 'host_ed25519'}",
                f"PidFile {workdir / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "UsePAM no",
                "StrictModes no",
                "PermitRootLogin prohibit-password",
                "Subsystem sftp internal-sftp" if sftp else "",
                "LogLevel INFO",
                "",
            ]
        )
    )
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {' '.join(host_pub.split()[:2])}\n")
    ssh_config = workdir / "ssh_config"
    ssh_config.write_text(
        f"Host {HOST_ALIAS}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n"
        f"  IdentityFile {workdir / 'client_ed25519'}\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc = start_until_ready([sshd, "-D", "-e", "-f", str(config)], b"Server listening on", timeout)
    return SSHServer(workdir, port, user, workdir / "client_ed25519", known_hosts, ssh_config, proc)
