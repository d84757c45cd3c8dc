"""Where a token travels when it is not the WAMP ticket: the WebSocket upgrade's headers.

A URL query string (``?token=``) never reaches a Crossbar authenticator, so it is not a carrier.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from authenticator.core.reasons import Reason, Rejected
from authenticator.core.settings import Settings

# The Cookie header is the client's to write and is read on the router's reactor thread, before
# any login: it is scanned once, in linear time, for the one cookie we want. Never with
# http.cookies.SimpleCookie: on Python 3.11.7 it is quadratic in the backslashes of a quoted value
# (CVE-2024-7592): a 15.5 KB header held the reactor ~0.75 s, and 20 of them made every session
# wait 6-12 s (tests/router/test_cookie_attack.py).
# Only the first MAX_COOKIE_HEADER_CHARS are looked at (~0.3 ms at worst): Twisted Web refuses
# more than 16 KiB of request headers anyway, but a plain websocket transport has no cap; browsers
# keep each cookie under 4 KiB.
MAX_COOKIE_HEADER_CHARS = 16 * 1024


def token_from_headers(headers: Mapping[str, str] | None, settings: Settings) -> tuple[str | None, str]:
    """(token, carrier) from `Authorization: Bearer` or the configured cookie; (None, "none") if neither.

    Headers arrive lower-cased from Crossbar.
    """
    headers = headers or {}
    authorization = headers.get("authorization")
    if settings.bearer_header and authorization:
        token = bearer_token(authorization)
        if token is not None:
            return token, "bearer"
    cookie_rule = settings.cookie
    if cookie_rule is not None and headers.get("cookie"):
        value = cookie_value(headers["cookie"], cookie_rule.name)
        if value is not None:
            # A browser attaches cookies to a WebSocket opened by any site (cross-site WebSocket
            # hijacking): the cookie only counts when the page's Origin is one we trust.
            origin = (headers.get("origin") or "").rstrip("/")
            if origin not in cookie_rule.allowed_origins:
                raise Rejected(Reason.ORIGIN_NOT_ALLOWED, f"origin '{origin[:100] or 'none'}'")
            return value, "cookie"
    return None, "none"


def bearer_token(value: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value (the scheme's case does not
    matter, RFC 7235): "" when it names none, None when the header is of another scheme. The one
    Bearer parser: the WebSocket upgrade and POST /publish both read it here."""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip(" \t")  # HTTP's whitespace only (str.strip would take \xa0, \x85, \x1c... too)
    if not token.isascii():
        raise Rejected(Reason.MALFORMED_TOKEN, "the token is not ASCII")
    return token


def cookie_value(header: str, name: str) -> str | None:
    """The value of the first cookie called `name` in a Cookie header (`a=1; name=value; b=2`), or None.

    The first: browsers send the cookie with the longest path first (RFC 6265 5.4). A value in
    double quotes loses them and nothing else: a JWT has no quote, backslash or semicolon, so
    there is nothing to unescape — a value that has them is refused by the verifier as malformed,
    as is one longer than max_token_bytes.
    """
    if len(header) > MAX_COOKIE_HEADER_CHARS:
        # Read no further than the limit, and not the pair it cuts: never hand on part of a value.
        header = header[: max(header.rfind(";", 0, MAX_COOKIE_HEADER_CHARS), 0)]
    found = _cookie_pattern(name).search(";" + header)
    if found is None:
        return None
    value = found.group(1).strip(" \t")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value


@lru_cache(maxsize=8)
def _cookie_pattern(name: str) -> re.Pattern[str]:
    # Linear: a match starts only at a ';' (one is put before the header), the whitespace runs are
    # possessive (never re-scanned) and the value stops at the next ';'.
    return re.compile(r";[ \t]*+" + re.escape(name) + r"[ \t]*+=([^;]*)")
