"""The agent's one exception type: a request that fails becomes an error REPLY, never a crash."""

from __future__ import annotations

import errno

from .protocol import ErrorCode

#: errno values that mean "no room": a full disk, a quota, a file size limit (RLIMIT_FSIZE).
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_NOT_ALLOWED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


class AgentError(Exception):
    """A request failed for a reason the host should hear: ``code`` and a message for people."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def os_failure(exc: OSError, doing: str) -> AgentError:
    """The AgentError for an OSError met while ``doing`` something ("writing the upload")."""
    why = exc.strerror or str(exc)
    if exc.errno in NO_SPACE:
        return AgentError(
            ErrorCode.DISK_FULL,
            f"the board's disk refused {doing} ({why}); free space on the board or lower "
            "the agent's --cache-max-mb",
        )
    if exc.errno in _NOT_ALLOWED:
        return AgentError(
            ErrorCode.NOT_PERMITTED, f"the agent may not do {doing} ({why}); check its user"
        )
    return AgentError(ErrorCode.INTERNAL, f"the board failed {doing}: {why}")


def out_of_memory(doing: str) -> AgentError:
    return AgentError(
        ErrorCode.OUT_OF_MEMORY,
        f"the board ran out of memory {doing}; use smaller inputs (dims) or free memory on "
        "the board",
    )
