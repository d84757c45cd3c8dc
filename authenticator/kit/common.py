"""What the Python client kit decides, with no framework and no Autobahn: the reasons, the
backoff, the refresh timing and how a token is asked for. authenticator/kit/loop.py runs it (one
loop, on txaio); authenticator/kit/twisted.py and authenticator/kit/asyncio.py pick the framework."""

from __future__ import annotations

import inspect
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from authenticator.contract import (  # noqa: F401 - the kit's vocabulary, importable from here
    EXPIRED,
    FINAL_ROUTER_REASONS,
    NO_TOKEN,
    REFRESH,
    REFRESH_REFUSED,
    TOKEN_UNAVAILABLE,
)

UNREACHABLE = "unreachable"  # no connection could be made
LOST = "lost"  # the connection closed without a WAMP reason

# Reasons after which the kit stops instead of reconnecting (authenticator/contract.py says why):
# the router's final reasons, and get_token() saying there is no user.
FINAL_REASONS = FINAL_ROUTER_REASONS | {NO_TOKEN}


# The longest timer either kit sets: 2^31 - 1 ms, about 24.8 days. JavaScript's setTimeout fires at
# once for a longer delay (web/crossbar-jwt/crossbar-jwt.js clamps to it); the Python kits use the same bound, so
# that both refresh a long-lived token at the same time, after at most this long.
MAX_TIMER_SECONDS = (2**31 - 1) / 1000


def timer_seconds(delay: float) -> float:
    """A delay as a timer takes it: within [0, MAX_TIMER_SECONDS]. NaN (a delay nobody could
    compute) waits the longest, never 0 s: "at once" is how a timer turns into a tight loop."""
    try:
        seconds = float(delay)
    except (TypeError, ValueError, OverflowError):
        return MAX_TIMER_SECONDS
    if math.isnan(seconds):
        return MAX_TIMER_SECONDS
    return min(MAX_TIMER_SECONDS, max(0.0, seconds))


@dataclass(frozen=True)
class Backoff:
    """Seconds to wait before reconnect attempt n (0, 1, ...) since the last join: full jitter, a
    random time in [0, cap] where the cap starts at `initial` and grows `growth`x per attempt to at
    most `maximum` (web/crossbar-jwt/crossbar-jwt.js, retryDelay: the same numbers). The clients
    of a restarted router spread over the whole window instead of arriving together; the first
    retry (after a lost connection or an expiry) is on average initial / 2 away. `jitter` is the
    random part of each delay, uniform in [(1 - jitter) * cap, cap]: 1 is full jitter, 0 exactly
    the cap. The defaults come from a restart under 5,000 clients (docs/benchmarks.md#restart-with-many-clients)."""

    initial: float = 0.5
    maximum: float = 10.0
    growth: float = 2.0
    jitter: float = 1.0

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Within [0, maximum] for any attempt count: growth**attempt overflows a float after some
        1,000 attempts of 2x (hours of outage), where `maximum` has long been reached."""
        try:
            grown = self.initial * float(self.growth) ** attempt if self.initial > 0 else 0.0
        except OverflowError:
            grown = math.inf
        cap = min(self.maximum, grown) if math.isfinite(grown) else self.maximum
        spread = math.nan if math.isnan(self.jitter) else min(1.0, max(0.0, self.jitter))  # NaN: as in JS
        delay = min(self.maximum, cap * (1 - spread * rand()))
        if math.isfinite(delay):
            return max(0.0, delay)
        return self.maximum if math.isfinite(self.maximum) else Backoff.maximum  # never NaN, never "at once"


def refresh_delay(expires_in: float, ahead: float = 10.0) -> float:
    """Seconds from now until the refresh, from the seconds the router says the token has left
    (`expires_in`, on the router's clock: this machine's may be off by minutes): `ahead` before
    exp, at most a third of what is left, never under 0.5 s. A token already past exp (admitted
    within the leeway) is refreshed at once. A lifetime that is not a number is not refreshed
    ahead (the router ends the session at exp and the kit reconnects with a fresh token). The
    timer takes at most MAX_TIMER_SECONDS of it (timer_seconds)."""
    if math.isnan(expires_in):
        return MAX_TIMER_SECONDS
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
