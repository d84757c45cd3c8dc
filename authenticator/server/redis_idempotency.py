"""Idempotency keys of POST /publish in Redis: the contract of authenticator/core/idempotency.py
(MemoryIdempotency) shared by every router of a deployment, so a retry that reaches another
router is still answered with the first answer and never published twice.

One key per (authid, idempotency key): `crossbar-jwt:idempotency:<digest>` (core.idempotency.scope,
hex), whose value is `p:<owner>:<fingerprint>` while a request holds it (reserved with SET NX PX:
it expires PENDING_SECONDS later, so a router that died while publishing blocks the key only that
long) and `d:<publication id>:<fingerprint>` once published (kept for the window). The
reservation, the answer and the release are each one Lua script, so each is atomic: of two
routers that reserve the same key at once exactly one gets it, and a settle or release touches
the key only while it is still this request's reservation.

What Redis holds is bounded, and a flood of fresh keys (any role that may publish over HTTP can
send them) cannot fill the Redis that also holds revocations and used jtis: every key expires,
and the reservations of each window-long period are counted (`crossbar-jwt:idempotency-budget:
<period>`); past `max_keys` in a period a key is kept SHORT_KEEP_SECONDS instead of the window
(its retries within that minute are still answered). So Redis holds at most about 2 x max_keys
keys for the window, plus what one minute of publications adds.

Blocking, as redis-py is: the publishing service calls it on the component's I/O threads, never on
the reactor. A Redis error is KeysUnavailable (the request is answered 503, nothing published).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from authenticator.core import redis_url
from authenticator.core.idempotency import (
    DEFAULT_MAX_KEYS,
    PENDING_SECONDS,
    Claim,
    KeysUnavailable,
    MemoryIdempotency,
    State,
)
from authenticator.core.settings import Settings

KEY_PREFIX = "crossbar-jwt:idempotency:"
BUDGET_PREFIX = "crossbar-jwt:idempotency-budget:"
SHORT_KEEP_SECONDS = 60  # a published key past the period's budget: as the shortest window
_OVER = "!"  # marks the owner of a reservation made past the budget (kept SHORT_KEEP_SECONDS)

# KEYS[1]: the key, KEYS[2]: the period's budget counter; ARGV: the reservation's value, its time
# to live (ms), the counter's time to live (ms), the budget. The value already there; nil when this
# call reserved the key within the budget, 0 when past it: SET NX PX and GET in one step, on any
# Redis version.
_RESERVE = """
local current = redis.call('GET', KEYS[1])
if current then
  return current
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local used = redis.call('INCR', KEYS[2])
if used == 1 then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
if used > tonumber(ARGV[4]) then
  return 0
end
return false
"""

# KEYS[1]: the key; ARGV: the reservation's prefix (`p:<owner>:`), the answer's prefix
# (`d:<publication id>:`, '' to delete), its time to live (ms). Only while the key still holds
# this request's reservation; the answer keeps the reservation's fingerprint.
_FINISH = """
local current = redis.call('GET', KEYS[1])
if not current or string.sub(current, 1, #ARGV[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2] .. string.sub(current, #ARGV[1] + 1), 'PX', ARGV[3])
end
return 1
"""


def open_idempotency(settings: Settings) -> MemoryIdempotency | RedisIdempotency:
    """Redis when the token store is Redis (every router shares the keys), else this process's memory."""
    publish = settings.publish
    if settings.store.redis_url:
        return RedisIdempotency.from_url(settings.store.redis_url, timeout_seconds=settings.store.timeout_seconds,
                                         window_seconds=publish.idempotency_window_seconds,
                                         max_keys=publish.idempotency_max_keys,
                                         namespace=redis_url.realm_namespace(settings.claims))  # fmt: skip
    return MemoryIdempotency(window_seconds=publish.idempotency_window_seconds, max_keys=publish.idempotency_max_keys)


class RedisIdempotency:
    blocking = True  # redis-py: on the I/O threads

    def __init__(
        self, client, *, window_seconds: float, url_shown: str, max_keys: int = DEFAULT_MAX_KEYS,
        pending_seconds: float = PENDING_SECONDS, clock: Callable[[], float] = time.time, namespace: str = "",
    ) -> None:  # fmt: skip
        import redis

        # Several realms: each its own keys and budget (core/redis_url.realm_namespace).
        self._key_prefix = redis_url.in_namespace(KEY_PREFIX, namespace)
        self._budget_prefix = redis_url.in_namespace(BUDGET_PREFIX, namespace)

        self._redis, self.window_seconds, self._url_shown = client, window_seconds, url_shown
        self.max_keys, self._clock = max_keys, clock
        self._window_ms = max(1, round(window_seconds * 1000))
        self._pending_ms = max(1, round(pending_seconds * 1000))
        self._errors = (redis.RedisError,)
        self._reserve = client.register_script(_RESERVE)
        self._finish = client.register_script(_FINISH)

    @classmethod
    def from_url(cls, url: str, *, timeout_seconds: float, window_seconds: float, max_keys: int,
                 namespace: str = "") -> RedisIdempotency:  # fmt: skip
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis.from_url(url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds,
                                      retry=Retry(NoBackoff(), 0))  # fmt: skip
        return cls(client, window_seconds=window_seconds, url_shown=redis_url.shown(url), max_keys=max_keys,
                   namespace=namespace)  # fmt: skip

    def reserve(self, requests) -> list[Claim]:
        requests = list(requests)
        owners = [secrets.token_hex(8) for _ in requests]
        # The period (window-long) this reservation counts in; the counter outlives it by a window.
        budget = f"{self._budget_prefix}{int(self._clock() * 1000) // self._window_ms}"
        try:
            pipe = self._redis.pipeline(transaction=False)
            for (name, bound_to), owner in zip(requests, owners, strict=True):
                self._reserve(keys=[_key(name, self._key_prefix), budget], client=pipe, args=[
                    _pending(owner, bound_to), self._pending_ms, 2 * self._window_ms, self.max_keys,
                ])  # fmt: skip
            found = pipe.execute()
        except self._errors as error:
            raise KeysUnavailable(f"Redis idempotency store at {self._url_shown}: {type(error).__name__}") from error
        return [_claim(value, bound_to, owner) for value, (_, bound_to), owner in zip(found, requests, owners,
                                                                                      strict=True)]  # fmt: skip

    def settle(self, published) -> None:
        short_ms = min(self._window_ms, SHORT_KEEP_SECONDS * 1000)
        self._finish_all([
            (name, _pending(owner.rstrip(_OVER), b""), f"d:{publication_id}:",
             short_ms if owner.endswith(_OVER) else self._window_ms)
            for name, owner, publication_id in published
        ])  # fmt: skip

    def release(self, refused) -> None:
        self._finish_all([(name, _pending(owner.rstrip(_OVER), b""), "", 0) for name, owner in refused])

    def _finish_all(self, changes) -> None:
        """Each change: (name, the reservation's prefix, the answer's prefix or '', ttl in ms)."""
        if not changes:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for name, reserved, new, ttl_ms in changes:
                self._finish(keys=[_key(name, self._key_prefix)], args=[reserved, new, ttl_ms], client=pipe)
            pipe.execute()
        except self._errors as error:
            raise KeysUnavailable(f"Redis idempotency store at {self._url_shown}: {type(error).__name__}") from error

    def close(self) -> None:
        self._redis.close()


def _key(name: bytes, prefix: str = KEY_PREFIX) -> str:
    return prefix + name.hex()


def _pending(owner: str, bound_to: bytes) -> str:
    return f"p:{owner}:{bound_to.hex()}"


def _claim(value, bound_to: bytes, owner: str) -> Claim:
    if value is None:
        return Claim(State.RESERVED, owner=owner)
    if isinstance(value, int):  # reserved past the period's budget: kept SHORT_KEEP_SECONDS once published
        return Claim(State.RESERVED, owner=owner + _OVER)
    kind, _, rest = (value.decode() if isinstance(value, bytes) else value).partition(":")
    detail, _, stored = rest.partition(":")
    if stored != bound_to.hex():
        return Claim(State.OTHER_PUBLICATION)
    if kind == "d":
        return Claim(State.DONE, publication_id=int(detail))
    return Claim(State.IN_PROGRESS)
