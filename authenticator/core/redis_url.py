"""A Redis URL as it may be shown in a log line or a message, and whether it holds a secret.

Pure: no Twisted, no Redis client. redis-py takes a password from the URL's userinfo
(``redis://:pw@host``, ``redis://user:pw@host``) or from a ``password`` query parameter (the form a
``unix://`` URL uses: ``unix:///run/redis.sock?password=pw``); either is a secret.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit


def shown(url: str) -> str:
    """The URL without userinfo, query and fragment: scheme, host, port and path only."""
    parts = urlsplit(url)
    where = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{where}{parts.path}" if parts.scheme else where + parts.path


def holds_secret(url: str) -> bool:
    """True if the URL carries a password: any userinfo (``redis://pw@host`` is a password mistaken
    for a user name as often as not) or a ``password`` query parameter."""
    parts = urlsplit(url)
    if parts.netloc.rpartition("@")[1]:
        return True
    return any(name.lower() == "password" for name, _value in parse_qsl(parts.query, keep_blank_values=True))


def database(url: str) -> str:
    """The Redis database a URL names, as one comparable text: scheme, host, port (6379 when not
    given) and database number (0 when not given; a ``db`` query parameter counts), no password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        db = dict(parse_qsl(parts.query)).get("db", "0")
        return f"unix://{parts.path} db {db}"
    host = (parts.hostname or "localhost").lower()
    try:
        port = parts.port or 6379
    except ValueError:
        port = parts.netloc.rpartition(":")[2]
    db = parts.path.strip("/") or dict(parse_qsl(parts.query)).get("db", "0")
    return f"{parts.scheme}://{host}:{port} db {db}"
