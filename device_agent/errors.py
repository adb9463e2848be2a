"""The agent's one exception type: a request that fails becomes an error REPLY, never a crash."""

from __future__ import annotations

from .protocol import ErrorCode


class AgentError(Exception):
    """A request failed for a reason the host should hear: ``code`` and a message for people."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
