"""Admission of a token: the one sequence logins and refreshes share.

Verify (an unknown kid: fetch the JWKS once and verify again), then revocation and replay in the
token store. Plain calls while no I/O is needed, so that with reusable tokens and the SQLite store
a login is answered at once, on the reactor; a Deferred when the store or the JWKS must be asked.
Every failure is a Rejected with its reason (fail closed).
"""

from __future__ import annotations

import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool

from authenticator.core.reasons import Reason, Rejected
from authenticator.core.tokens import Identity
from authenticator.server.store import StoreUnavailable

# Logins waiting for a store check at once (in the I/O threads and their queue); past it a login is
# refused store_unavailable at once. A few seconds of logins at the rate one worker admits.
MAX_STORE_CHECKS_WAITING = 1000


class Admission:
    def __init__(self, verifier, jwks, store, io_pool, settings, log) -> None:
        self._verifier, self._jwks, self._store, self._io = verifier, jwks, store, io_pool
        self._settings, self._log = settings, log
        self.store_checks_waiting = 0

    def check(self, token, *, may_refetch: bool = True) -> Identity | Deferred:
        """The one sequence for logins and refreshes: verify (an unknown kid: fetch the JWKS once
        and verify again), then revocation and replay in the store. Raises (or fails with) Rejected;
        a Deferred only when I/O is needed (single-use tokens, Redis, a JWKS fetch)."""
        try:
            identity = self._verifier.verify(token)
        except Rejected as rejection:
            if may_refetch and self._jwks.worth_a_refetch(rejection):
                return self._jwks.refresh().addCallback(lambda _: self.check(token, may_refetch=False))
            raise
        verdict = self._store_verdict(identity)
        if isinstance(verdict, Deferred):
            return verdict.addCallback(_applied, identity)
        return _applied(verdict, identity)

    def _store_verdict(self, identity: Identity) -> Reason | None | Deferred:
        """Revocation, then replay. From memory when the store keeps its revocations there and
        tokens are reusable (no I/O); otherwise the store is asked on the I/O thread (a Deferred
        that fails with Rejected(STORE_UNAVAILABLE) when it cannot be reached: fail closed)."""
        if self._store.revocations_in_memory and not self._settings.single_use:
            return self._store.revoked(
                authid=identity.authid, jti=identity.jti, issued_at=identity.issued_at, now=time.time()
            )
        if self._store.known_down:
            # It failed within its retry interval (GuardedStore): refuse now, on the reactor,
            # without a thread hop or a wait for its timeout. Fail closed, and fast.
            raise Rejected(Reason.STORE_UNAVAILABLE, authid=identity.authid, jti=identity.jti)
        if self.store_checks_waiting >= MAX_STORE_CHECKS_WAITING:
            # A store that answers, slowly: logins must not queue behind it without bound.
            raise Rejected(Reason.STORE_UNAVAILABLE, "too many logins waiting for the token store",
                           authid=identity.authid, jti=identity.jti)  # fmt: skip
        self.store_checks_waiting += 1
        checked = deferToThreadPool(
            reactor, self._io, self._store.admit, authid=identity.authid, jti=identity.jti,
            issued_at=identity.issued_at, expires_at=identity.expires_at, single_use=self._settings.single_use,
            now=time.time(),
        )  # fmt: skip
        checked.addBoth(self._store_check_done)
        return checked.addErrback(self._store_failed, identity)

    def _store_check_done(self, result):
        self.store_checks_waiting -= 1
        return result

    def _store_failed(self, failure, identity: Identity):
        failure.trap(StoreUnavailable)
        self._log.warn("authenticator: {error}", error=str(failure.value))
        raise Rejected(Reason.STORE_UNAVAILABLE, authid=identity.authid, jti=identity.jti)


def _applied(verdict: Reason | None, identity: Identity) -> Identity:
    if verdict is not None:
        raise Rejected(verdict, authid=identity.authid, jti=identity.jti)
    return identity
