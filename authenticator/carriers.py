"""Where a token travels when it is not the WAMP ticket: the WebSocket upgrade's headers.

A URL query string (``?token=``) never reaches a Crossbar authenticator, so it is not a carrier.
"""

from __future__ import annotations

from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie

from .reasons import Reason, Rejected
from .settings import Settings


def token_from_headers(headers: Mapping[str, str] | None, settings: Settings) -> tuple[str | None, str]:
    """(token, carrier) from `Authorization: Bearer` or the configured cookie; (None, "none") if neither.

    Headers arrive lower-cased from Crossbar.
    """
    headers = headers or {}
    authorization = headers.get("authorization")
    if settings.bearer_header and authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip(), "bearer"
    cookie_rule = settings.cookie
    if cookie_rule is not None and headers.get("cookie"):
        try:
            jar = SimpleCookie(headers["cookie"])
        except CookieError:
            jar = SimpleCookie()
        if cookie_rule.name in jar:
            # A browser attaches cookies to a WebSocket opened by any site (cross-site WebSocket
            # hijacking): the cookie only counts when the page's Origin is one we trust.
            origin = (headers.get("origin") or "").rstrip("/")
            if origin not in cookie_rule.allowed_origins:
                raise Rejected(Reason.ORIGIN_NOT_ALLOWED, f"origin '{origin[:100] or 'none'}'")
            return jar[cookie_rule.name].value, "cookie"
    return None, "none"
