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


# What every Redis name of this project starts with; a realm's namespace follows it.
KEY_ROOT = "crossbar-jwt:"


def in_namespace(name: str, namespace: str) -> str:
    """A Redis name ("crossbar-jwt:history:", ...) in a realm's namespace (realm_namespace)."""
    if not name.startswith(KEY_ROOT):
        raise ValueError(f"a Redis name of this project starts with {KEY_ROOT!r}")
    return KEY_ROOT + namespace + name[len(KEY_ROOT) :]


def realm_namespace(claim_rules) -> str:
    """What every Redis key, stream and channel of a realm carries after "crossbar-jwt:" on a node
    with several realms ("" with one: the keys of a single-realm deployment do not change). Realms
    may then share one Redis database. Names outside [A-Za-z0-9_.-] (a brace would change a key's
    hash tag) are written as a digest."""
    realm = claim_rules.realm
    if realm is None or len(set(claim_rules.node_realms)) < 2:
        return ""
    if not realm or any(not (c.isascii() and (c.isalnum() or c in "_.-")) for c in realm):
        import hashlib

        realm = "h-" + hashlib.sha256(realm.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return f"realm:{realm}:"
