"""SSH transport: the agent runs on the board in a paramiko exec channel.

Honours ``~/.ssh/config`` (HostName, User, Port, IdentityFile, ProxyCommand,
UserKnownHostsFile, StrictHostKeyChecking), keys and ssh-agent. A host whose key is not
in known_hosts is refused unless the user opts in (``trust_unknown_host`` or
``StrictHostKeyChecking no|accept-new`` in ssh_config); an opted-in key is remembered.
The agent itself is deployed on first use (see :mod:`hwnas_bench.deploy`); on every
connection the board hashes its copy, and a copy that differs is uploaded again.

paramiko logs a failed handshake with tracebacks (``paramiko.transport`` at ERROR); with no
logging configured Python would print them on stderr before our one-line error, so the
``paramiko`` logger gets a NullHandler (records still reach handlers a user configures).
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import logging
import os
import select
import shlex
from pathlib import Path
from typing import Any

import paramiko

from ..deploy import build_agent_zipapp, check_board, remote_sha256
from ..errors import (
    ConnectError,
    ConnectionLostError,
    DeployError,
    InputFileError,
    TargetError,
)
from .base import StderrTail, Transport

logging.getLogger("paramiko").addHandler(logging.NullHandler())

_DEFAULT_CONFIG = Path("~/.ssh/config")
_DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")

#: The keys paramiko tries by itself (``look_for_keys``), as OpenSSH does.
_DEFAULT_KEYS = ("id_rsa", "id_dsa", "id_ecdsa", "id_ed25519")


class _RememberNewKey(paramiko.MissingHostKeyPolicy):
    """Accept an unknown host key (the user opted in) and append it to known_hosts."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with self.known_hosts.open("a") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class SSHTransport(Transport):
    def __init__(
        self,
        target: str,
        host: str,
        *,
        user: str | None = None,
        port: int | None = None,
        python: str = "python3",
        identity_file: str | None = None,
        trust_unknown_host: bool = False,
        ssh_config: Path | None = None,
        known_hosts: Path | None = None,
        agent_args: list[str] | None = None,
        plugin_modules: tuple[str, ...] = (),
    ) -> None:
        super().__init__(target)
        self.host, self.user, self.port = host, user, port
        self.python = python
        self.identity_file = identity_file
        self.trust_unknown_host = trust_unknown_host
        self.ssh_config = ssh_config
        self.known_hosts = known_hosts
        self.agent_args = agent_args or []
        self.plugin_modules = plugin_modules  #: power readers shipped inside the zipapp
        self._client: paramiko.SSHClient | None = None
        self._chan: paramiko.Channel | None = None
        self._stderr = StderrTail()
        self._heard = False  # the agent has sent something: it did start
        self.deployed: str | None = None  # remote path, set when this transport uploaded it

    @property
    def description(self) -> str:
        who = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"ssh {who}{self.host}{port}"

    @property
    def is_open(self) -> bool:
        return self._chan is not None and not self._chan.closed

    # -- connecting -----------------------------------------------------------------------

    def _resolve(self) -> dict[str, Any]:
        """Merge explicit settings over the user's ssh_config for this host.

        A file the board's settings name (``ssh_config``, ``identity_file``) that cannot be
        read is an :class:`InputFileError` before anything connects; an ``IdentityFile`` of
        the ssh_config that does not exist is skipped, as OpenSSH does."""
        path = (self.ssh_config or _DEFAULT_CONFIG).expanduser()
        if self.ssh_config is not None and not path.is_file():
            raise self._missing("ssh_config", path)
        config = paramiko.SSHConfig.from_path(str(path)) if path.is_file() else paramiko.SSHConfig()
        found = config.lookup(self.host)
        known = self.known_hosts or Path(
            str(found.get("userknownhostsfile", _DEFAULT_KNOWN_HOSTS)).split()[0]
        )
        strict = str(found.get("stricthostkeychecking", "yes")).lower()
        if self.identity_file:
            identity = [os.path.expanduser(self.identity_file)]
            if not os.path.isfile(identity[0]):
                raise self._missing("identity_file", Path(identity[0]))
        else:
            listed = (os.path.expanduser(p) for p in found.get("identityfile") or [])
            identity = [p for p in listed if os.path.isfile(p)]
        return {
            "hostname": found.get("hostname", self.host),
            "port": int(self.port or found.get("port") or 22),
            "username": self.user or found.get("user"),
            "key_filename": identity or None,
            "proxy": found.get("proxycommand"),
            "known_hosts": known.expanduser(),
            "trust": self.trust_unknown_host or strict in ("no", "accept-new", "off"),
        }

    def _missing(self, key: str, path: Path) -> InputFileError:
        why = "a directory" if path.is_dir() else "not a file" if path.exists() else "no such file"
        return InputFileError(f"{path}: {why}", str(path), board=self.target, key=key)

    def connect_client(self, timeout: float) -> paramiko.SSHClient:
        """An authenticated SSH client (also used by ``hwnas agent deploy``)."""
        opts = self._resolve()
        client = paramiko.SSHClient()
        client.load_system_host_keys()
        if opts["known_hosts"].is_file():
            client.load_host_keys(str(opts["known_hosts"]))
        client.set_missing_host_key_policy(
            _RememberNewKey(opts["known_hosts"]) if opts["trust"] else paramiko.RejectPolicy()
        )
        where = f"{opts['hostname']}:{opts['port']}"
        try:
            client.connect(
                opts["hostname"],
                port=opts["port"],
                username=opts["username"],
                key_filename=opts["key_filename"],
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                allow_agent=True,
                look_for_keys=True,
                sock=paramiko.ProxyCommand(opts["proxy"]) if opts["proxy"] else None,
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            error = self._connect_error(exc, where, opts, client, timeout)
            client.close()  # a half-open transport thread would linger
            raise error from exc
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(15)
        return client

    def _connect_error(
        self,
        exc: Exception,
        where: str,
        opts: dict[str, Any],
        client: paramiko.SSHClient,
        timeout: float,
    ) -> ConnectError:
        """One line saying why ``client.connect`` failed, and what to do about it."""

        def error(detail: str) -> ConnectError:
            return ConnectError(self.target, "connect", detail)

        if isinstance(exc, paramiko.BadHostKeyException):
            return error(f"{where}: host key CHANGED ({exc}); refusing")
        if isinstance(exc, paramiko.AuthenticationException):
            return error(self._auth_hint(where, opts, exc))
        if isinstance(exc, paramiko.SSHException):
            transport = client.get_transport()
            if "banner" in str(exc):
                why = " ".join(str(exc).split())
                return error(f"{where} does not speak SSH (no SSH banner): {why}")
            if transport is not None and not transport.remote_version:
                # paramiko gives up waiting for the banner without saying so ("No existing
                # session" from the authentication that follows)
                return error(
                    f"{where} does not speak SSH (no SSH banner): nothing within {timeout:.1f} s"
                )
            if "not found in known_hosts" in str(exc):
                return error(
                    f"{where}: unknown host key (not in {opts['known_hosts']}); connect once with "
                    "ssh, or opt in with --trust-host-key / trust_unknown_host = true"
                )
        if isinstance(exc, OSError):
            return error(f"{where}: {_socket_error(exc)}")
        return error(f"{where}: {exc}")

    def _auth_hint(self, where: str, opts: dict[str, Any], exc: Exception) -> str:
        user = opts["username"] or getpass.getuser()
        tried = [f"key {k}" for k in opts["key_filename"] or []]
        ssh_dir = Path("~/.ssh").expanduser()
        tried += [f"key {p}" for p in (ssh_dir / n for n in _DEFAULT_KEYS) if p.is_file()]
        try:
            agent_keys = len(paramiko.Agent().get_keys())
        except (paramiko.SSHException, OSError):
            agent_keys = 0
        if agent_keys:
            tried.append(f"{agent_keys} key(s) from ssh-agent")
        host = opts["hostname"]
        return (
            f"{where}: authentication failed for user '{user}' "
            f"(tried: {', '.join(tried) or 'no keys: none found, no ssh-agent'}; {exc}); "
            f"add your key to the board with ssh-copy-id {user}@{host}, "
            "or set `identity_file` to a key it accepts"
        )

    def connect(self, timeout: float) -> None:
        """Connect and authenticate, without starting the agent (``hwnas agent deploy``)."""
        self._client = self.connect_client(timeout)

    def run(self, command: str, timeout: float = 60.0) -> tuple[int, str, str]:
        """Run a short command on the board: exit code, stdout, stderr."""
        if self._client is None:
            raise ConnectError(self.target, "run", "not connected")
        try:
            _, out, err = self._client.exec_command(command, timeout=timeout)
            stdout = out.read().decode("utf-8", "replace")
            stderr = err.read().decode("utf-8", "replace")
            return out.channel.recv_exit_status(), stdout, stderr
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectError(self.target, "run", f"{self.description}: {exc}") from exc

    def ensure_agent(self, force: bool = False, *, check: bool = True) -> str:
        """Make sure the board holds this host's agent, byte for byte; return its path.

        The board hashes its copy (a changed copy of the same size is caught) and it is
        uploaded unless the hash matches (always with ``force``). ``check`` (what ``hwnas
        agent deploy`` does) also runs the board check every time, so a python that lacks
        numpy is reported even when the agent is already there; without it (each
        connection) the check runs only before an upload.
        """
        if self._client is None:
            raise ConnectError(self.target, "deploy", "not connected")
        bundle = build_agent_zipapp(self.plugin_modules)
        remote = bundle.remote_path
        if check:
            present = check_board(self.target, self.python, self.run, agent_path=remote)
            digest = present.agent_sha256
        else:
            digest = remote_sha256(self.target, self.python, remote, self.run)
        if digest == bundle.sha256 and not force:
            return remote
        if not check:
            check_board(self.target, self.python, self.run)
        self.upload(remote, bundle.data)
        self.deployed = remote
        return remote

    def upload(self, remote: str, data: bytes) -> None:
        """Write ``data`` to ``remote`` on the board over SFTP: its folders made as needed
        (a relative path is in the login's home), written as ``.part`` then renamed, so a
        reader sees the old file or the new one. Raises DeployError naming what failed."""
        if self._client is None:
            raise DeployError(self.target, "upload before the SSH connection is open")
        try:
            sftp = self._client.open_sftp()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise DeployError(
                self.target,
                f"the board's SSH server offers no SFTP ({exc}); enable its sftp subsystem "
                "(OpenSSH: 'Subsystem sftp internal-sftp'; dropbear: install an sftp-server)",
            ) from exc
        try:
            parts = Path(remote).parts
            for depth in range(1, len(parts)):
                with contextlib.suppress(OSError):  # exists already
                    sftp.mkdir("/".join(parts[:depth]))
            partial = remote + ".part"
            with sftp.open(partial, "wb") as fh:
                fh.write(data)
            sftp.posix_rename(partial, remote)  # a reader sees the old file or the new one
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise DeployError(self.target, f"upload over SFTP failed: {exc}") from exc
        finally:
            sftp.close()

    def open(self, timeout: float) -> None:
        self._client = self.connect_client(timeout)
        try:
            remote = self.ensure_agent(check=False)
            transport = self._client.get_transport()
            if transport is None or not transport.is_active():
                raise ConnectError(self.target, "start agent", "the SSH connection closed")
            chan = transport.open_session(timeout=timeout)
            args = " ".join(shlex.quote(a) for a in ["--stdio", *self.agent_args])
            chan.exec_command(f'{shlex.quote(self.python)} "$HOME/{remote}" {args}')
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise ConnectError(self.target, "start agent", f"{self.description}: {exc}") from exc
        except Exception:
            self.close()
            raise
        self._stderr = StderrTail()
        self._stderr.drain(lambda: chan.recv_stderr(4096))
        self._heard = False
        self._chan = chan

    # -- the stream -----------------------------------------------------------------------

    def _lost(self, step: str, why: str) -> TargetError:
        """The error for a stream that ended, with the agent's exit status and last words.

        An agent that exited before saying anything could not start: its last stderr line
        goes into the first line of the message, and the board check says what is missing.
        """
        chan = self._chan
        code: int | None = None
        if chan is not None:
            if chan.status_event.wait(2.0):  # the exit status comes just after the EOF
                code = chan.recv_exit_status()
            self._stderr.wait(2.0)  # and its stderr must be read to the end first
        tail = self._stderr.text()
        rest = f"; agent stderr:\n{tail}" if tail else ""
        if code in (None, -1):
            return ConnectionLostError(self.target, step, why + rest)
        if self._heard or code == 0:
            return ConnectionLostError(
                self.target, step, f"{why} (agent exit status {code})" + rest
            )
        cause = self._stderr.last_line() or "no output"
        try:
            check_board(self.target, self.python, self.run)
        except DeployError as exc:  # the board check names what is missing: say that
            self.close()
            detail = f"{exc.detail} (the agent exited with status {code})"
            return DeployError(self.target, detail + rest, missing=exc.missing)
        except TargetError:
            pass  # the check itself cannot run now: what the agent said must do
        detail = f"the agent could not start (exit status {code}): {cause}"
        return ConnectionLostError(self.target, step, detail + rest)

    def read(self, max_bytes: int, timeout: float) -> bytes:
        chan = self._chan
        if chan is None:
            raise ConnectionLostError(self.target, "read", "not connected")
        if not chan.recv_ready():
            ready, _, _ = select.select([chan], [], [], max(timeout, 0.0))
            if not ready:
                return b""
        try:
            data: bytes = chan.recv(max_bytes)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._lost("read", f"SSH connection failed: {exc}") from exc
        if not data:
            raise self._lost("read", "the SSH channel closed")
        self._heard = True
        return data

    def write(self, data: bytes) -> None:
        chan = self._chan
        if chan is None:
            raise ConnectionLostError(self.target, "write", "not connected")
        try:
            chan.sendall(data)
        except (TimeoutError, OSError, EOFError, paramiko.SSHException) as exc:
            raise self._lost("write", f"SSH connection failed: {exc}") from exc

    def close(self) -> None:
        chan, self._chan = self._chan, None
        client, self._client = self._client, None
        if chan is not None:
            chan.close()
        if client is not None:
            client.close()

    def diagnostics(self) -> str:
        return self._stderr.text()


def _socket_error(exc: OSError) -> str:
    """Why a TCP connection failed, in words, not paramiko's "[Errno None] Unable to connect
    to port 1 on 127.0.0.1" (a NoValidConnectionsError keeps each address's error)."""
    errors: list[OSError] = list(getattr(exc, "errors", {}).values()) or [exc]
    if all(e.errno == errno.ECONNREFUSED for e in errors):
        return "connection refused (nothing listens on that port)"
    first = errors[0]
    if isinstance(first, TimeoutError):
        return "no answer (timed out; is the board up and the port right?)"
    return first.strerror or str(first) or type(first).__name__
