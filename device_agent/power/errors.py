"""Exceptions of the power package: one root, each subclass says when it is raised."""

from __future__ import annotations

from typing import Optional, Sequence


class PowerError(Exception):
    """Root of every error raised by ``device_agent.power``."""


class PowerReadError(PowerError):
    """A meter could not give an honest reading (file missing, unreadable, not a number).

    ``path`` names the file or command that failed, when there is one; the original
    ``OSError`` or ``ValueError`` is chained as ``__cause__``.
    """

    def __init__(self, message: str, path: Optional[str] = None) -> None:
        super().__init__(message)
        self.path = path


class CommandError(PowerError):
    """A command run for a meter (``vcgencmd``) failed, timed out or exited non-zero."""

    def __init__(self, message: str, argv: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.argv = list(argv)


class CommandNotFoundError(CommandError):
    """The command is not installed (not on ``PATH``)."""
