"""Every error hwnas-bench raises on purpose derives from :class:`HwnasError`.

Errors about a board carry the target's name and the step that failed, so a message reads
``pi5: bench: no reply within 30.0 s`` and a script can branch on the type and the fields.
"""

from __future__ import annotations


class HwnasError(Exception):
    """Root of hwnas-bench's own errors."""


class ConfigError(HwnasError):
    """A configuration file, or a target given on the command line, is wrong.

    ``file``, ``board`` and ``key`` say where, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        board: str | None = None,
        key: str | None = None,
    ) -> None:
        where = ": ".join(
            part
            for part in (
                file,
                f"board '{board}'" if board else None,
                f"key '{key}'" if key else None,
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.file, self.board, self.key = file, board, key


class UnknownTargetError(ConfigError):
    """A target name or ``tag:X`` that names no configured board (nor a built-in target)."""


class UsageError(ConfigError):
    """A command-line option or argument with a bad value (``hwnas`` exits with 2)."""


class InputFileError(UsageError):
    """A file the caller named cannot be used: missing, unreadable, a directory, or empty (a
    model, an ``--inputs`` archive, an SSH key or ssh_config a board names). ``path`` names
    it; ``hwnas`` exits with 2, as for any other input the user can fix."""

    def __init__(self, message: str, path: str, **where: str | None) -> None:
        super().__init__(message, **where)
        self.path = path


class TargetError(HwnasError):
    """Something went wrong with a board. ``target`` names it, ``step`` says doing what."""

    def __init__(self, target: str, step: str, detail: str) -> None:
        super().__init__(f"{target}: {step}: {detail}")
        self.target, self.step, self.detail = target, step, detail


class ConnectError(TargetError):
    """The board could not be reached or the agent could not be started on it."""


class ConnectionLostError(TargetError):
    """The link broke during a call: the agent exited, the SSH connection or port closed."""


class DeviceTimeoutError(TargetError):
    """No answer within the call's timeout (or the agent fell silent mid-benchmark)."""


class LinkError(TargetError):
    """The line is too damaged to get a frame through after repeated retries."""


class AgentError(TargetError):
    """The agent answered with an error. ``code`` is the protocol's error code."""

    def __init__(self, target: str, step: str, code: str, message: str) -> None:
        super().__init__(target, step, f"{message} [{code}]")
        self.code, self.message = code, message


class DeployError(TargetError):
    """The board lacks what the agent needs; ``missing`` lists it (python3, numpy, ...)."""

    def __init__(self, target: str, detail: str, missing: list[str] | None = None) -> None:
        super().__init__(target, "deploy", detail)
        self.missing = missing or []


class MeasurementFormatError(HwnasError):
    """A Measurement JSON file that cannot be read (wrong schema, missing key)."""


class BoardFactsError(HwnasError):
    """A board's hello fact of the wrong type (``BoardFacts.from_mapping``); ``key`` names it."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key
