"""Keys from identity providers' JWKS URLs, kept fresh without blocking the reactor.

Fetched on a thread of their own (a slow identity provider must not hold logins that wait for the
token store), every `refresh_seconds`, and again when a token names a kid we do not know (a key
rotated at the provider) -- at most once per `min_refetch_seconds`. A failed fetch keeps the keys
we have: an identity provider outage must not log everyone out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import jwt
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from authenticator.core.keys import VerificationKey, keys_from_jwks
from authenticator.core.reasons import Reason, Rejected
from authenticator.core.settings import Settings
from authenticator.endpoints import metrics


class JwksRefresher:
    def __init__(self, settings: Settings, log, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._log = log
        self._clock = clock
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="authenticator-jwks")
        self._fetch: Deferred | None = None
        self._fetched_at = float("-inf")
        self._loop: task.LoopingCall | None = None

    def start(self) -> None:
        if not self._settings.jwks_urls:
            return
        self._pool.start()
        reactor.addSystemEventTrigger("during", "shutdown", self._pool.stop)
        self._loop = task.LoopingCall(self.refresh)
        self._loop.start(min(u.refresh_seconds for u in self._settings.jwks_urls), now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def worth_a_refetch(self, rejection: Rejected) -> bool:
        """An unknown kid may be a key rotated at the identity provider: fetch once, then verify again."""
        if rejection.reason is not Reason.UNKNOWN_KEY or not self._settings.jwks_urls:
            return False
        spacing = min(u.min_refetch_seconds for u in self._settings.jwks_urls)
        return self._fetch is not None or self._clock() - self._fetched_at >= spacing

    def refresh(self) -> Deferred:
        """Fires (with None) when the fetch under way, or a new one, is done; never fails.
        One fetch at a time: concurrent logins with a new kid wait for the same fetch."""
        if self._fetch is None:
            self._fetched_at = self._clock()
            self._fetch = deferToThreadPool(reactor, self._pool, self._fetch_all)
            self._fetch.addCallbacks(self._install, self._failed)
            self._fetch.addBoth(self._done)
        waiter: Deferred = Deferred()
        self._fetch.addBoth(lambda result: (waiter.callback(None), result)[1])
        return waiter

    def _fetch_all(self):
        urls = self._settings.jwks_urls
        return [key for u in urls for key in fetch_jwks(u.url, u.algorithms, u.timeout_seconds)]

    def _install(self, keys) -> None:
        metrics.JWKS_FETCHES.labels(metrics.realm_label(self._settings), "ok").inc()
        self._settings.keys.replace_remote(keys)
        self._log.info("authenticator: JWKS fetched, {n} key(s): {kids}", n=len(keys), kids=[k.kid for k in keys])

    def _failed(self, failure) -> None:
        metrics.JWKS_FETCHES.labels(metrics.realm_label(self._settings), "failed").inc()
        self._log.warn("authenticator: JWKS fetch failed ({error}); keeping cached keys", error=failure.value)

    def _done(self, result):
        self._fetch = None
        return result


def fetch_jwks(url: str, algorithms: Iterable[str] | None, timeout: float) -> list[VerificationKey]:
    """Fetch a JWKS over http(s) with PyJWT's client (no redirects, no other schemes). Blocking:
    call it off the reactor thread."""
    client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=timeout)
    return keys_from_jwks(client.fetch_data(), algorithms, url)
