"""The authenticator's own procedures: `authenticator.refresh` (a live session hands over a
fresh token) and `authenticator.revoke` (the admin role ends a user's or a token's sessions).
Their rules are pure (authenticator/core/session_rules.py); this module runs them against the
token store (on the component's I/O threads), the live-session keeper and the metrics."""

from __future__ import annotations

import time

from autobahn.wamp.exception import ApplicationError
from twisted.internet import reactor
from twisted.internet.defer import maybeDeferred
from twisted.internet.threads import deferToThreadPool

from authenticator.core.reasons import Reason, Rejected
from authenticator.core.session_rules import (
    refresh_refusal,
    revocation_keep_seconds,
    revocation_problem,
    tokens_issued_until,
)
from authenticator.endpoints import metrics
from authenticator.server.store import StoreUnavailable


class Procedures:
    def __init__(self, settings, admission, keeper, store, io, log) -> None:
        self.settings, self.admission, self.keeper, self.store, self._io, self.log = (
            settings, admission, keeper, store, io, log)  # fmt: skip

    async def refresh(self, token, details=None):
        """A connected client presents a newer token; its session's deadline moves, no reconnect."""
        live = self.keeper.session(_caller(details))
        if live is None:
            metrics.REFRESHES.labels(metrics.realm_label(self.settings), "refused", Reason.REFRESH_REFUSED.code).inc()
            raise ApplicationError(
                Reason.REFRESH_REFUSED.uri, "Only a session that logged in with a token can refresh."
            )
        try:
            identity = await maybeDeferred(self.admission.check, token)
            refusal = refresh_refusal(live.authid, live.roles, identity, live.grants)
            if refusal is not None:
                raise refusal
        except Rejected as rejection:
            metrics.REFRESHES.labels(metrics.realm_label(self.settings), "refused", rejection.reason.code).inc()
            self.log.warn("refresh refused: reason={reason} detail={detail} authid={authid} session={sid}",
                          reason=rejection.reason.code, detail=rejection.detail or "-", authid=live.authid,
                          sid=live.session_id)  # fmt: skip
            raise ApplicationError(rejection.reason.uri, rejection.message) from None
        except Exception as error:  # noqa: BLE001 - the same rule as logins: the type only, never the message
            metrics.REFRESHES.labels(metrics.realm_label(self.settings), "refused", Reason.INTERNAL_ERROR.code).inc()
            raise self._internal(error, "refresh") from None
        metrics.REFRESHES.labels(metrics.realm_label(self.settings), "accepted", "none").inc()
        self.keeper.refreshed(live, identity)
        self.log.info("session refreshed: authid={authid} session={sid} exp={exp}", authid=live.authid,
                      sid=live.session_id, exp=identity.expires_at)  # fmt: skip
        # expires_in: seconds to exp on the router's clock (the kits time the next refresh by it)
        return {"exp": identity.expires_at, "expires_in": round(identity.expires_at - time.time(), 3)}

    async def revoke(self, authid=None, jti=None, details=None):
        """Refuse a user's tokens issued until now (authid=...) or one token (jti=...), and end the
        live sessions they cover. The answer says up to when (`tokens_issued_until`, Unix time on
        the router's clock): the user's next token must be issued after it."""
        problem = revocation_problem(authid, jti)
        if problem is not None:
            raise ApplicationError("wamp.error.invalid_argument", problem)
        if self.store.known_down:
            self.log.warn("authenticator: the token store is down; revocation refused: authid={authid} jti={jti}",
                          authid=authid, jti=jti)  # fmt: skip
            raise ApplicationError(Reason.STORE_UNAVAILABLE.uri, Rejected(Reason.STORE_UNAVAILABLE).message)
        now = time.time()
        keep = revocation_keep_seconds(self.settings.claims)
        try:
            await deferToThreadPool(
                reactor, self._io, self.store.revoke, authid=authid, jti=jti, now=now, keep_seconds=keep
            )
        except StoreUnavailable as error:
            self.log.warn("authenticator: {error}", error=str(error))
            raise ApplicationError(Reason.STORE_UNAVAILABLE.uri, Rejected(Reason.STORE_UNAVAILABLE).message) from None
        except Exception as error:  # noqa: BLE001 - the same rule as logins: the type only, never the message
            raise self._internal(error, "revoke") from None
        _count_revocation(metrics.realm_label(self.settings), authid, jti, "here")
        ended = self.keeper.revoke(authid, jti)
        by = details.caller_authid if details else None
        self.log.warn("revoked: authid={authid} jti={jti} by={by} sessions_ended={n}", authid=authid, jti=jti,
                      by=by, n=len(ended))  # fmt: skip
        answer = {"sessions_ended": len(ended)}
        if authid is not None:
            answer["tokens_issued_until"] = tokens_issued_until(now, self.settings.claims)
        return answer

    def revoked_elsewhere(self, authid: str | None, jti: str | None) -> None:
        """Another router revoked (the Redis store's announcement): end our sessions it covers."""
        _count_revocation(metrics.realm_label(self.settings), authid, jti, "elsewhere")
        ended = self.keeper.revoke(authid, jti)
        if ended:
            self.log.warn("revoked on another router: authid={authid} jti={jti} sessions_ended={n}", authid=authid,
                          jti=jti, n=len(ended))  # fmt: skip

    def _internal(self, error: BaseException, what: str) -> ApplicationError:
        """An unexpected failure: the log gets the exception type, the client a fixed message
        (an exception's message or traceback could quote a token)."""
        self.log.warn("{what} failed: internal error {kind}", what=what, kind=type(error).__name__)
        return ApplicationError(Reason.INTERNAL_ERROR.uri, Rejected(Reason.INTERNAL_ERROR).message)


def _caller(details) -> int | None:
    """The calling session of one of our procedures (disclosed to us: OWN_PROCEDURES of the component).

    A CALL that carries forward_for would make Crossbar disclose its first entry as the caller; the
    authorizer refuses every such CALL from a client before it reaches us (policy.py; tested through
    the router by tests/router/test_hostile_clients.py::test_a_client_cannot_call_our_procedures_as_another_session).
    There is no second check here: Autobahn 26 never fills CallDetails.forward_for of an
    invocation, so one would never see it."""
    return details.caller if details is not None else None


def _count_revocation(realm: str, authid, jti, origin: str) -> None:
    for kind, value in (("authid", authid), ("jti", jti)):
        if value is not None:
            metrics.REVOCATIONS.labels(realm, kind, origin).inc()
