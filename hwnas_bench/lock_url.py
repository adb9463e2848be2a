"""Which lock backend the farm uses: ``HWNAS_LOCK_URL``, else ``[farm] lock_url``, else files.

A lock URL is a PostgreSQL URL (``postgresql://user:password@host:5432/db``). It is checked
before anything connects, and it is never shown with its password: every message and the
``hwnas farm status`` title use :func:`redact`.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

from .errors import ConfigError

LOCK_URL_ENV = "HWNAS_LOCK_URL"

#: The URL schemes libpq accepts; anything else is a mistake (a typo, a MySQL URL).
SCHEMES = ("postgresql", "postgres")

#: ``user:password@`` in a URL's authority, wherever the URL stands in the text (a driver
#: error may quote it).
_USERINFO_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:\s\"']*):[^/?#@\s\"']*@")
#: Shorter passwords are not replaced word for word (that would garble the message); the
#: patterns above still hide them where a URL or a ``password=`` shows them.
MIN_LITERAL_PASSWORD = 4
#: ``password=...`` as a URL query parameter or in a ``key=value`` connection string.
_PASSWORD_PARAM = re.compile(r"(?i)(\bpassword\s*=\s*)('[^']*'|[^&\s]*)")


def redact(text: str, password: str | None = None) -> str:
    """``text`` with every password in it replaced by ``***``: the one in a URL's user
    part, any ``password=`` parameter (in a query string or a connection string), and
    ``password`` itself wherever it appears (if it has :data:`MIN_LITERAL_PASSWORD` or
    more characters)."""
    for form in {password, unquote(password)} if password else ():
        if len(form) >= MIN_LITERAL_PASSWORD:  # as written, and percent-decoded
            text = text.replace(form, "***")
    text = _USERINFO_PASSWORD.sub(r"\1:***@", text)
    return _PASSWORD_PARAM.sub(r"\1***", text)


def url_password(url: str) -> str | None:
    """The password in a URL's user part, as written there (None if it has none)."""
    authority = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0]
    userinfo, at, _ = authority.rpartition("@")
    _user, colon, password = userinfo.partition(":")
    return password if at and colon and password else None


def check_lock_url(url: str, source: str) -> str:
    """``url`` stripped, if it is a PostgreSQL URL; else :class:`ConfigError` (exit 2) saying
    so in one line that names ``source`` and shows the value without its password."""
    value = url.strip()
    scheme, sep, _ = value.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        shown = redact(value[:200], url_password(value)) + ("..." if len(value) > 200 else "")
        raise ConfigError(
            f"{source}: must be a postgresql:// or postgres:// URL "
            f"(postgresql://user:password@host:5432/database), got '{shown}'"
        )
    problem = _host_problem(value)
    if problem:
        raise ConfigError(f"{source}: {problem}: '{redact(value, url_password(value))}'")
    return value


def _host_problem(url: str) -> str | None:
    """What is wrong with the hosts and ports of a URL (libpq allows several hosts:
    ``h1:5432,h2:5433``), or None."""
    authority = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0]
    for item in authority.rpartition("@")[2].split(","):
        if item.startswith("[") and "]" not in item:
            return f"the IPv6 address '{item}' has no closing ']'"
        after_host = item.rpartition("]")[2] if item.startswith("[") else item
        _host, colon, port = after_host.partition(":")
        if colon and not (port.isdigit() and 0 < int(port) < 65536):
            return f"port '{port}' is not a number from 1 to 65535"
    return None


def lock_url_from(explicit: str | None, configured: str | None) -> tuple[str, str] | None:
    """The lock URL to use and where it came from: ``explicit`` (an argument), else
    ``$HWNAS_LOCK_URL``, else ``configured`` (``[farm] lock_url``); None: file locks."""
    env = os.environ.get(LOCK_URL_ENV, "").strip()
    for value, source in (
        (explicit, "lock_url"),
        (env, LOCK_URL_ENV),
        (configured, "[farm] lock_url"),
    ):
        if value:
            return check_lock_url(value, source), source
    return None
