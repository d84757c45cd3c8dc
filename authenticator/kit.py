"""What both Python client kits share, framework-free: the reasons, the backoff, the refresh
timing and how a token is asked for. authenticator/client.py runs it on Twisted,
authenticator/client_asyncio.py on asyncio (Autobahn picks one framework per process)."""

from __future__ import annotations

import inspect
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

EXPIRED = "authenticator.error.expired"
REFRESH_REFUSED = "authenticator.error.refresh_refused"
TOKEN_UNAVAILABLE = "crossbar-jwt.token_unavailable"  # noqa: S105 - a reason URI: get_token() failed
NO_TOKEN = "crossbar-jwt.no_token"  # noqa: S105 - a reason URI: get_token() returned None (no user)
UNREACHABLE = "unreachable"  # no connection could be made
LOST = "lost"  # the connection closed without a WAMP reason

# Reasons after which the kit stops instead of reconnecting. Revoked: the router ended the user's
# sessions on purpose, and a freshly minted token would log them straight back in (revocation
# covers tokens issued until then). The others are refused again with every fresh token from the
# same issuer: a wrong key, claim, role or configuration needs a person, and a loop would only
# hammer the router. Not final: expired, not_yet_valid, replayed (a fresh token fixes them),
# unknown_key (a key rotated at the identity provider: the router fetches its JWKS again, at most
# once per min_refetch_seconds), store_unavailable and internal_error (passing), refresh_refused
# (the token's roles changed: reconnecting with it gives the session the new roles, so the kit
# does exactly that).
FINAL_REASONS = frozenset(
    {
        NO_TOKEN,
        "authenticator.error.revoked",
        "authenticator.error.unknown_role",
        "authenticator.error.invalid_claim",
        "authenticator.error.missing_claim",
        "authenticator.error.origin_not_allowed",
        "authenticator.error.missing_token",
        "authenticator.error.malformed_token",
        "authenticator.error.algorithm_not_allowed",
        "authenticator.error.invalid_signature",
        "authenticator.error.invalid_issuer",
        "authenticator.error.invalid_audience",
        "authenticator.error.lifetime_too_long",
        "wamp.error.no_such_realm",
        "wamp.error.no_such_role",
        "wamp.error.no_auth_method",
    }
)


@dataclass(frozen=True)
class Backoff:
    """Seconds to wait before reconnect attempt n (0, 1, ...) since the last join. The cap keeps a
    client within seconds of a router that comes back; raise it for fleets of thousands (the
    router admits some hundred logins a second: docs/benchmarks.md)."""

    initial: float = 0.5
    maximum: float = 1.5
    growth: float = 1.5
    jitter: float = 0.1

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        mean = min(self.maximum, self.initial * self.growth**attempt)
        return min(self.maximum, mean * (1 + self.jitter * (2 * rand() - 1)))


def refresh_delay(expires_in: float, ahead: float = 10.0) -> float:
    """Seconds from now until the refresh, from the seconds the router says the token has left
    (`expires_in`, on the router's clock: this machine's may be off by minutes): `ahead` before
    exp, at most a third of what is left, never under 0.5 s. A token already past exp (admitted
    within the leeway) is refreshed at once."""
    return max(0.5, expires_in - min(ahead, max(expires_in, 0.0) / 3))


def seconds_left(answer: dict) -> float:
    """`expires_in` from the router, else (an older router) exp against this machine's clock."""
    expires_in = answer.get("expires_in")
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        return float(expires_in)
    return float(answer["exp"]) - time.time()


class TokenUnavailable(Exception):
    """get_token() raised or returned no token."""

    error = TOKEN_UNAVAILABLE  # the reason, like an ApplicationError's


class NoToken(TokenUnavailable):
    """get_token() returned None: there is no user to log in."""

    error = NO_TOKEN


async def fresh_token(get_token: Callable[[], Any]) -> str:
    """A token from the application's get_token (sync, or returning an awaitable)."""
    try:
        token = get_token()
        if inspect.isawaitable(token):
            token = await token
    except Exception as error:  # noqa: BLE001 - whatever the application's fetch raised
        raise TokenUnavailable(f"get_token() failed: {type(error).__name__}: {error}") from error
    if token is None:
        raise NoToken("get_token() returned None: no user to log in")
    if not isinstance(token, str) or not token:
        raise TokenUnavailable("get_token() returned no token")
    return token
