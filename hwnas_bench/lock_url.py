"""Which lock backend the farm uses: ``HWNAS_LOCK_URL``, else ``[farm] lock_url``, else files.

A lock URL is a PostgreSQL URL (``postgresql://user:password@host:5432/db``). It is checked
before anything connects, and it is never shown with its password: every message and the
``hwnas farm status`` title use :func:`redact`, which hides everything from the user name's
``:`` to the last ``@`` whether or not the URL parses.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

from .errors import ConfigError

LOCK_URL_ENV = "HWNAS_LOCK_URL"

#: The URL schemes libpq accepts; anything else is a mistake (a typo, a MySQL URL).
SCHEMES = ("postgresql", "postgres")

#: A URL's scheme and the slashes after it (``postgresql://``; ``postgresql:/`` too, a typo).
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/+")
#: A scheme where a new URL begins: at the start, or after a space, quote, bracket, ``=`` or
#: ``,`` (``x:/`` inside a password follows none of these).
_URL_START = re.compile(r"(?:^|(?<=[\s'\"(<\[=,]))[A-Za-z][A-Za-z0-9+.-]*:/+")
#: Shorter passwords are not replaced word for word (that would garble the message); the
#: user part of a URL and ``password=`` are masked whatever their length.
MIN_LITERAL_PASSWORD = 4
#: ``password=...`` as a URL query parameter or in a ``key=value`` connection string.
_PASSWORD_PARAM = re.compile(r"(?i)(\bpassword\s*=\s*)('[^']*'|[^&\s]*)")
#: ``%`` not starting a ``%XX`` escape, or ``%00``: libpq refuses both, quoting the part.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})|%00")


def redact(text: str, password: str | None = None) -> str:
    """``text`` with every password in it replaced by ``***``: the one in a URL's user
    part, any ``password=`` parameter (in a query string or a connection string), and
    ``password`` itself wherever it appears (if it has :data:`MIN_LITERAL_PASSWORD` or
    more characters).

    A URL's password is everything from the first ``:`` after ``scheme://`` to the
    **last** ``@`` before the next URL on that line, whether or not the URL parses: a
    password may hold ``/``, ``?``, ``#``, ``@`` or a space, and no parser agrees where it
    ends then. Hiding too much of a garbled line beats showing a piece of a password."""
    for form in {password, unquote(password)} if password else ():
        if len(form) >= MIN_LITERAL_PASSWORD:  # as written, and percent-decoded
            text = text.replace(form, "***")
    text = "".join(_mask_userinfo(line) for line in text.splitlines(keepends=True))
    return _PASSWORD_PARAM.sub(r"\1***", text)


def _mask_userinfo(line: str) -> str:
    """``line`` with each ``scheme://user:ANYTHING@`` as ``scheme://user:***@``."""
    pos = 0
    while (scheme := _SCHEME.search(line, pos)) is not None:
        start = scheme.end()
        after = _URL_START.search(line, start)
        at = line.rfind("@", start, after.start() if after else len(line))
        user, colon, _ = line[start:at].partition(":")
        if at < 0 or not colon:
            pos = start
            continue
        line = f"{line[:start]}{user}:***{line[at:]}"
        pos = start + len(user) + 4
    return line


def _after_scheme(url: str) -> str:
    scheme = _SCHEME.match(url)
    return url[scheme.end() :] if scheme else url.partition("://")[2]


def url_password(url: str) -> str | None:
    """The password in a URL's user part, as written there (None if it has none): from the
    first ``:`` after ``scheme://`` to the last ``@``, as :func:`redact` reads it."""
    userinfo, at, _ = _after_scheme(url).rpartition("@")
    _user, colon, password = userinfo.partition(":")
    return password if at and colon and password else None


def check_lock_url(url: str, source: str) -> str:
    """``url`` stripped, if it is a PostgreSQL URL that libpq reads as :func:`redact` does;
    else :class:`ConfigError` (exit 2) saying so in one line that names ``source`` and shows
    the value without its password.

    A URL whose user part libpq would end elsewhere than at the last ``@`` (a ``/`` or an
    unescaped ``@`` in the password), or would refuse while quoting it (a space, a bad
    ``%`` escape), is refused here, before libpq can quote a piece of the password."""
    value = url.strip()
    scheme, sep, _ = value.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ConfigError(
            f"{source}: must be a postgresql:// or postgres:// URL "
            f"(postgresql://user:password@host:5432/database), got '{_shown(value)}'"
        )
    problem = userinfo_problem(value) or _host_problem(value)
    if problem:
        raise ConfigError(f"{source}: {problem}: '{_shown(value)}'")
    return value


def _shown(value: str) -> str:
    """``value`` for a message: without its password, at most 200 characters."""
    text = redact(value, url_password(value))
    if _SCHEME.match(text) is None and "@" in text:  # user:password@host, no scheme
        text = "***" + text[text.rfind("@") :]
    return text[:200] + ("..." if len(text) > 200 else "")


def userinfo_problem(url: str) -> str | None:
    """What in a URL would make libpq end its user part elsewhere than :func:`redact` does,
    or quote a piece of it in an error; None if nothing (any storage URL may be checked)."""
    if any(char.isspace() for char in url):  # libpq refuses them, quoting the part
        return "a URL holds no spaces (write a space in the password as %20)"
    userinfo = _after_scheme(url).rpartition("@")[0]
    if "/" in userinfo or "@" in userinfo:
        return (
            "an '@' after a '/' or a second '@': percent-encode a '/' or '@' in the password "
            "(%2F, %40), and an '@' in the database name or a parameter (%40)"
        )
    if _BAD_ESCAPE.search(url):  # a password=... parameter too
        return "a '%' in the URL starts no %XX escape, or encodes a NUL (write a % as %25)"
    return None


def _host_problem(url: str) -> str | None:
    """What is wrong with the hosts and ports of a URL (libpq allows several hosts:
    ``h1:5432,h2:5433``), or None."""
    authority = _after_scheme(url).rpartition("@")[2].split("/", 1)[0].split("?", 1)[0]
    for item in authority.split(","):
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
