"""The Autobahn component that wires the pure core to the router.

It runs inside the router worker (a router component), so its procedures are registered before
the transports open. Verification and policy run on the reactor (CPU only, microseconds); the
token store and JWKS fetches run on the component's own I/O thread, never on the reactor.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from pathlib import Path

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import RegisterOptions
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import blockingCallFromThread, deferToThreadPool
from twisted.python.threadpool import ThreadPool

from . import metrics
from .carriers import token_from_headers
from .hardening import clip, harden_router_worker
from .keys import GENERATED, fetch_jwks
from .policy import ACTIONS, Decision, request_problem
from .reasons import Reason, Rejected
from .sessions import LiveSession, LiveSessions
from .settings import ConfigError, load_settings
from .store import StoreUnavailable, open_store
from .tokens import Identity, TokenVerifier

AUTHENTICATE = "authenticator.authenticate"
AUTHENTICATE_HEADERS = "authenticator.authenticate_headers"
AUTHORIZE = "authenticator.authorize"
REFRESH = "authenticator.refresh"
REVOKE = "authenticator.revoke"
# Behind proxies: the authextra key that links a login to the router session it becomes.
LOGIN_KEY = "login"
# The longest authid or jti revoke accepts (tokens are at most max_token_bytes anyway).
MAX_ID = 1024
REVOKED_MESSAGE = "access for this user or token has been revoked"
# Our own procedures need to know who calls them, so their callers are always disclosed to us.
OWN_PROCEDURES = frozenset({REFRESH, REVOKE})


class AuthenticatorComponent(ApplicationSession):
    def __init__(self, config=None):
        super().__init__(config)
        # First: Crossbar parses client bytes in this process as soon as its transports open.
        harden_router_worker(self.log.warn)
        extra = dict(config.extra or {})
        cbdir = Path(extra.pop("cbdir", "."))
        # Read once and validated: a bad configuration stops the router's start with its message.
        try:
            self.settings = load_settings(extra, cbdir)
            self.store = open_store(self.settings.store)
        except (ConfigError, StoreUnavailable) as error:
            raise ConfigError(f"authenticator extra in {cbdir / 'config.json'}: {error}") from None
        self.verifier = TokenVerifier(self.settings)
        self.live = LiveSessions()
        self._cache_budget = self.settings.limits.authorization_cache_entries
        self._io = ThreadPool(minthreads=1, maxthreads=1, name="authenticator-io")
        # Its own thread: a slow identity provider must not hold logins that wait for the store.
        self._jwks_io = ThreadPool(minthreads=1, maxthreads=1, name="authenticator-jwks")
        self._jwks_fetch: Deferred | None = None
        self._jwks_fetched_at = float("-inf")
        self._jwks_loop: task.LoopingCall | None = None
        self._unjoined_sweep: task.LoopingCall | None = None
        for key in self.settings.keys.keys:
            # A secret generated now is worth a warning: tokens signed with any other are refused.
            log = self.log.warn if key.source.endswith(GENERATED) else self.log.info
            log("authenticator: key kid={kid} for {algs} from {source}", kid=key.kid,
                algs=",".join(sorted(key.algorithms)), source=key.source)  # fmt: skip

    async def onJoin(self, details):
        for pool in (self._io, self._jwks_io):
            pool.start()
            reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
        caller = RegisterOptions(details_arg="details")
        await self.register(self.authenticate, AUTHENTICATE)
        await self.register(self.authenticate_headers, AUTHENTICATE_HEADERS)
        await self.register(self.authorize, AUTHORIZE)
        await self.register(self.refresh, REFRESH, options=caller)
        await self.register(self.revoke, REVOKE, options=caller)
        await self.subscribe(self._on_join, "wamp.session.on_join")
        await self.subscribe(self._on_leave, "wamp.session.on_leave")
        self._unjoined_sweep = task.LoopingCall(self._drop_unjoined_logins)
        self._unjoined_sweep.start(self.settings.join_timeout_seconds, now=False)
        metrics.ACTIVE_SESSIONS.roles = tuple(self.settings.policy.roles)
        metrics.ACTIVE_SESSIONS.count = self._count_sessions
        listen = getattr(self.store, "listen_for_revocations", None)
        if listen is not None:  # several routers: end our sessions when another one revokes
            self._revocations = listen(
                lambda authid, jti: reactor.callFromThread(self._revoked_elsewhere, authid, jti),
                lambda problem: reactor.callFromThread(self.log.warn, "authenticator: {problem}", problem=problem),
            )
            reactor.addSystemEventTrigger("during", "shutdown", self._revocations.set)
        if self.settings.jwks_urls:
            interval = min(u.refresh_seconds for u in self.settings.jwks_urls)
            self._jwks_loop = task.LoopingCall(self._refresh_jwks)
            self._jwks_loop.start(interval, now=True)
        self.log.info("authenticator: ready")

    def _count_sessions(self, role: str) -> int:
        """For the /metrics scrape, on Crossbar's wsgi thread: ask the router, never guess."""
        return blockingCallFromThread(
            reactor, lambda: self.call("wamp.session.count", filter_authroles=[role]).addTimeout(2, reactor)
        )

    def _io_call(self, function, *args, **kwargs) -> Deferred:
        return deferToThreadPool(reactor, self._io, function, *args, **kwargs)

    # -- authentication ----------------------------------------------------------------------

    def authenticate(self, realm, authid, details):
        """WAMP-ticket: the ticket is the token."""
        return self._login(details.get("ticket"), "ticket", details)

    def authenticate_headers(self, realm, authid, details):
        """WAMP-anonymous, dynamic: a token in the upgrade's headers, else the anonymous role."""
        peer = _peer(details)
        try:
            token, carrier = token_from_headers(_headers(details), self.settings)
        except Rejected as rejection:
            raise self._refuse(rejection, peer, "cookie") from None
        if token is not None:
            return self._login(token, carrier, details)
        anonymous = self.settings.policy.anonymous_role
        if anonymous is None:
            raise self._refuse(Rejected(Reason.MISSING_TOKEN, "anonymous access is off"), peer, "none") from None
        metrics.AUTHENTICATIONS.labels("anonymous", "none").inc()
        # Always return extra: without it Crossbar would hand on the client's own HELLO authextra.
        return {"role": anonymous, "extra": {"roles": [anonymous], "exp": None}}

    def _login(self, token, carrier: str, details, *, may_refetch: bool = True):
        """The login hot path. Plain calls, no coroutine: with reusable tokens and the SQLite store
        every check is answered on the reactor in microseconds and the answer returns at once; only
        single-use tokens, Redis and an unknown JWKS kid make it a Deferred (I/O on our threads)."""
        peer = _peer(details)
        try:
            identity = self.verifier.verify(token)
        except Rejected as rejection:
            if may_refetch and self._worth_a_jwks_refetch(rejection):
                return self._refresh_jwks().addCallback(
                    lambda _: self._login(token, carrier, details, may_refetch=False)
                )
            raise self._refuse(rejection, peer, carrier) from None
        except Exception as error:  # noqa: BLE001 - any failure must become a clean refusal
            raise self._refuse(_internal_error(error), peer, carrier) from None
        verdict = self._store_verdict(identity)
        if not isinstance(verdict, Deferred):
            return self._admitted(identity, verdict, carrier, details)
        verdict.addCallback(lambda found: self._admitted(identity, found, carrier, details))
        verdict.addErrback(self._refuse_failure, peer, carrier)
        return verdict

    def _store_verdict(self, identity: Identity) -> Reason | None | Deferred:
        """Revocation, then replay. From memory when the store keeps its revocations there and
        tokens are reusable (no I/O); otherwise the store is asked on the I/O thread (a Deferred
        that fails with Rejected(STORE_UNAVAILABLE) when it cannot be reached: fail closed)."""
        if self.store.revocations_in_memory and not self.settings.single_use:
            return self.store.revoked(
                authid=identity.authid, jti=identity.jti, issued_at=identity.issued_at, now=time.time()
            )
        checked = self._io_call(
            self.store.admit, authid=identity.authid, jti=identity.jti, issued_at=identity.issued_at,
            expires_at=identity.expires_at, single_use=self.settings.single_use, now=time.time(),
        )  # fmt: skip
        return checked.addErrback(self._store_failed, identity)

    def _admitted(self, identity: Identity, verdict: Reason | None, carrier: str, details) -> dict:
        peer = _peer(details)
        if verdict is not None:
            raise self._refuse(Rejected(verdict, authid=identity.authid, jti=identity.jti), peer, carrier)
        extra = identity.authextra()
        if self.settings.behind_proxies:
            # The proxy's pending session id is not the router's: key the entry by a login key the
            # session carries in its authextra until wamp.session.on_join tells us its real id.
            key = extra[LOGIN_KEY] = f"login-{secrets.token_hex(8)}"
        else:
            key = details.get("session")
        live = self.live.add(key, identity, self.settings.expiry_grace_seconds, now=time.monotonic())
        self._schedule_expiry(live)
        metrics.AUTHENTICATIONS.labels("accepted", "none").inc()
        self.log.info(
            "authentication accepted: authid={authid} role={role} via={via} peer={peer} jti={jti}",
            authid=identity.authid, role=identity.role, via=carrier, peer=peer, jti=identity.jti,
        )  # fmt: skip
        return {"authid": identity.authid, "role": identity.role, "extra": extra}

    def _store_failed(self, failure, identity: Identity):
        failure.trap(StoreUnavailable)
        self.log.warn("authenticator: {error}", error=str(failure.value))
        raise Rejected(Reason.STORE_UNAVAILABLE, authid=identity.authid, jti=identity.jti)

    def _refuse_failure(self, failure, peer, carrier: str):
        if failure.check(ApplicationError):
            return failure  # already a refusal, already logged
        rejection = failure.value if failure.check(Rejected) else _internal_error(failure.value)
        raise self._refuse(rejection, peer, carrier)

    async def _verify(self, token) -> Identity:
        try:
            return self.verifier.verify(token)
        except Rejected as rejection:
            if not self._worth_a_jwks_refetch(rejection):
                raise
        await self._refresh_jwks()
        return self.verifier.verify(token)

    async def _admit(self, identity: Identity) -> None:
        verdict = await maybeDeferred(self._store_verdict, identity)
        if verdict is not None:
            raise Rejected(verdict, authid=identity.authid, jti=identity.jti)

    def _refuse(self, rejection: Rejected, peer, carrier: str) -> ApplicationError:
        _TMP_LEAK.append(b"x" * 2048)  # TEMPORARY LEAK
        metrics.AUTHENTICATIONS.labels("refused", rejection.reason.code).inc()
        self.log.warn(
            "authentication refused: reason={reason} detail={detail} authid={authid} via={via} peer={peer} jti={jti}",
            reason=rejection.reason.code, detail=rejection.detail or "-", authid=rejection.authid,
            via=carrier, peer=peer, jti=rejection.jti,
        )  # fmt: skip
        message = Rejected(Reason.INTERNAL_ERROR).message if rejection.reason is Reason.INTERNAL_ERROR else None
        return ApplicationError(rejection.reason.uri, message or rejection.message)

    # -- JWKS --------------------------------------------------------------------------------

    def _worth_a_jwks_refetch(self, rejection: Rejected) -> bool:
        """An unknown kid may be a key rotated at the identity provider: fetch once, then verify again."""
        return rejection.reason is Reason.UNKNOWN_KEY and self._may_refetch_jwks()

    def _may_refetch_jwks(self) -> bool:
        if not self.settings.jwks_urls:
            return False
        spacing = min(u.min_refetch_seconds for u in self.settings.jwks_urls)
        return self._jwks_fetch is not None or time.monotonic() - self._jwks_fetched_at >= spacing

    def _refresh_jwks(self) -> Deferred:
        """One fetch at a time; concurrent logins with the new kid wait for the same fetch."""
        if self._jwks_fetch is None:
            self._jwks_fetched_at = time.monotonic()
            self._jwks_fetch = deferToThreadPool(reactor, self._jwks_io, self._fetch_all_jwks)
            self._jwks_fetch.addCallbacks(self._install_jwks, self._jwks_failed)
            self._jwks_fetch.addBoth(self._jwks_done)
        waiter: Deferred = Deferred()
        self._jwks_fetch.addBoth(lambda result: (waiter.callback(None), result)[1])
        return waiter

    def _fetch_all_jwks(self):
        return [key for u in self.settings.jwks_urls for key in fetch_jwks(u.url, u.algorithms, u.timeout_seconds)]

    def _install_jwks(self, keys) -> None:
        metrics.JWKS_FETCHES.labels("ok").inc()
        self.settings.keys.replace_remote(keys)
        self.log.info("authenticator: JWKS fetched, {n} key(s): {kids}", n=len(keys), kids=[k.kid for k in keys])

    def _jwks_failed(self, failure) -> None:
        metrics.JWKS_FETCHES.labels("failed").inc()
        # Keep the keys we have: an identity provider outage must not log everyone out.
        self.log.warn("authenticator: JWKS fetch failed ({error}); keeping cached keys", error=failure.value)

    def _jwks_done(self, result):
        self._jwks_fetch = None
        return result

    # -- expiry, refresh, revocation ---------------------------------------------------------

    def _schedule_expiry(self, live: LiveSession) -> None:
        if live.deadline is None:
            return
        delay = max(0.0, live.deadline - time.time())
        if live.timer is not None and live.timer.active():
            live.timer.reset(delay)
        else:
            live.timer = reactor.callLater(delay, self._end_expired, live)

    def _end_expired(self, live: LiveSession) -> None:
        session_id = live.session_id  # read when it fires: behind proxies it is bound after login
        if not live.joined:
            self.live.pop(session_id)  # a login that never joined: nothing to end
        elif self.live.get(session_id) is live:
            self.log.info("session ended: reason=expired authid={authid} session={sid}", authid=live.authid,
                          sid=session_id)  # fmt: skip
            self._end(live, Reason.EXPIRED, "the session's token expired; fetch a fresh token and reconnect")

    def _kill(self, session_id: int, reason: Reason, message: str) -> Deferred:
        d = self.call("wamp.session.kill", session_id, reason=reason.uri, message=message)
        d.addErrback(lambda failure: None)  # already gone: nothing to end
        return d

    def _end(self, live: LiveSession, reason: Reason, message: str) -> None:
        self._forget(live.session_id)
        metrics.SESSIONS_ENDED.labels(reason.code).inc()
        self._kill(live.session_id, reason, message)

    def _on_join(self, details, *args, **kwargs) -> None:
        if not isinstance(details, dict):
            return
        session_id = details.get("session")
        # Behind proxies the login was keyed by a login key it carries in its authextra.
        key = (details.get("authextra") or {}).get(LOGIN_KEY) if self.settings.behind_proxies else session_id
        live = self.live.join(key, session_id) if key is not None else None
        if live is not None and live.revoked:
            self.log.warn("session ended: reason=revoked (revoked while it was joining) authid={authid} session={sid}",
                          authid=live.authid, sid=session_id)  # fmt: skip
            self._end(live, Reason.REVOKED, REVOKED_MESSAGE)

    def _on_leave(self, session_id, *args, **kwargs) -> None:
        self._forget(session_id)

    def _forget(self, session_id) -> None:
        live = self.live.pop(session_id)
        if live is not None and live.timer is not None and live.timer.active():
            live.timer.cancel()

    def _drop_unjoined_logins(self) -> None:
        dropped = self.live.drop_unjoined(admitted_before=time.monotonic() - self.settings.join_timeout_seconds)
        for live in dropped:
            if live.timer is not None and live.timer.active():
                live.timer.cancel()
        if dropped:
            self.log.info("authenticator: dropped {n} login(s) that never joined", n=len(dropped))

    async def refresh(self, token, details=None):
        """A connected client presents a newer token; its session's deadline moves, no reconnect."""
        live = self.live.get(_caller(details))
        if live is None:
            metrics.REFRESHES.labels("refused", Reason.REFRESH_REFUSED.code).inc()
            raise ApplicationError(
                Reason.REFRESH_REFUSED.uri, "Only a session that logged in with a token can refresh."
            )
        try:
            identity = await self._verify(token)
            if identity.authid != live.authid:
                raise Rejected(Reason.REFRESH_REFUSED, "it is for another user", authid=live.authid, jti=identity.jti)
            if frozenset(identity.roles) != live.roles:
                # Crossbar cannot change a live session's role: a token with other roles (fewer, for
                # a demoted user) needs a new session, and the old deadline stays.
                raise Rejected(
                    Reason.REFRESH_REFUSED, "its roles differ from the session's; reconnect with it",
                    authid=live.authid, jti=identity.jti,
                )  # fmt: skip
            await self._admit(identity)
        except Rejected as rejection:
            metrics.REFRESHES.labels("refused", rejection.reason.code).inc()
            self.log.warn("refresh refused: reason={reason} detail={detail} authid={authid} session={sid}",
                          reason=rejection.reason.code, detail=rejection.detail or "-", authid=live.authid,
                          sid=live.session_id)  # fmt: skip
            raise ApplicationError(rejection.reason.uri, rejection.message) from None
        except Exception as error:  # noqa: BLE001 - the same rule as logins: the type only, never the message
            metrics.REFRESHES.labels("refused", Reason.INTERNAL_ERROR.code).inc()
            raise self._internal(error, "refresh") from None
        metrics.REFRESHES.labels("accepted", "none").inc()
        live.jti, live.issued_at = identity.jti, identity.issued_at
        if identity.expires_at is not None:
            live.deadline = identity.expires_at + self.settings.expiry_grace_seconds
            self._schedule_expiry(live)
        self.log.info("session refreshed: authid={authid} session={sid} exp={exp}", authid=live.authid,
                      sid=live.session_id, exp=identity.expires_at)  # fmt: skip
        return {"exp": identity.expires_at}

    def _internal(self, error: BaseException, what: str) -> ApplicationError:
        """An unexpected failure: the log gets the exception type, the client a fixed message
        (an exception's message or traceback could quote a token)."""
        self.log.warn("{what} failed: internal error {kind}", what=what, kind=type(error).__name__)
        return ApplicationError(Reason.INTERNAL_ERROR.uri, Rejected(Reason.INTERNAL_ERROR).message)

    async def revoke(self, authid=None, jti=None, details=None):
        """Refuse a user's tokens issued until now (authid=...) or one token (jti=...), and end the
        live sessions they cover."""
        _caller(details)  # refuses a forwarded call: the log names who revoked
        if (authid is None and jti is None) or not all(_bounded_text(v) for v in (authid, jti)):
            raise ApplicationError(
                "wamp.error.invalid_argument",
                f"Call revoke with authid='...' or jti='...' (at most {MAX_ID} characters).",
            )
        try:
            ended = await self._revoke(authid, jti)
        except ApplicationError:
            raise
        except Exception as error:  # noqa: BLE001 - the same rule as logins: the type only, never the message
            raise self._internal(error, "revoke") from None
        by = details.caller_authid if details else None
        self.log.warn("revoked: authid={authid} jti={jti} by={by} sessions_ended={n}", authid=authid, jti=jti,
                      by=by, n=len(ended))  # fmt: skip
        return {"sessions_ended": len(ended)}

    async def _revoke(self, authid: str | None, jti: str | None) -> list[LiveSession]:
        lifetime = self.settings.claims.max_lifetime_seconds
        keep = None if lifetime is None else lifetime + self.settings.claims.leeway_seconds
        try:
            await self._io_call(self.store.revoke, authid=authid, jti=jti, now=time.time(), keep_seconds=keep)
        except StoreUnavailable as error:
            self.log.warn("authenticator: {error}", error=str(error))
            raise ApplicationError(Reason.STORE_UNAVAILABLE.uri, Rejected(Reason.STORE_UNAVAILABLE).message) from None
        _count_revocation(authid, jti, "here")
        return self._end_revoked_sessions(authid, jti)

    def _end_revoked_sessions(self, authid: str | None, jti: str | None) -> list[LiveSession]:
        """End the joined sessions a revocation covers; logins still joining are ended when they join."""
        ended = []
        for live in self.live.covered_by(authid=authid, jti=jti):
            if live.joined:
                self._end(live, Reason.REVOKED, REVOKED_MESSAGE)
                ended.append(live)
            else:
                live.revoked = True
        return ended

    def _revoked_elsewhere(self, authid: str | None, jti: str | None) -> None:
        _count_revocation(authid, jti, "elsewhere")
        ended = self._end_revoked_sessions(authid, jti)
        if ended:
            self.log.warn("revoked on another router: authid={authid} jti={jti} sessions_ended={n}", authid=authid,
                          jti=jti, n=len(ended))  # fmt: skip

    # -- authorization -----------------------------------------------------------------------

    def authorize(self, session, uri, action, options):
        problem = request_problem(action, uri, options, self.settings.limits.max_uri_length)
        if problem is not None:
            decision = Decision(False, False, False, 0, problem)
        else:
            decision = self.settings.policy.decide(
                authrole=session.get("authrole"),
                authid=session.get("authid"),
                action=action,
                uri=uri,
                match=(options or {}).get("match", "exact"),
                session_roles=_verified_roles(session),
                retain=bool((options or {}).get("retain")),
            )
        if decision.cacheable:
            if self._cache_budget <= 0:
                decision = replace(decision, cacheable=False)
            else:
                self._cache_budget -= 1
        if not decision.allow:
            self.log.warn(
                "authorization denied: {action} {uri} authid={authid} role={role} reason={reason}",
                action=clip(action, 20), uri=clip(uri, 200), authid=session.get("authid"),
                role=session.get("authrole"), reason=clip(decision.reason, 500),
            )  # fmt: skip
        metrics.AUTHORIZATIONS.labels(
            action if action in ACTIONS else "other", "allow" if decision.allow else "deny",
            "yes" if decision.cacheable else "no",
        ).inc()  # fmt: skip
        answer = decision.as_crossbar_answer()
        if decision.allow and action == "call" and uri in OWN_PROCEDURES:
            answer["disclose"] = True
        return answer

    def onUserError(self, fail, msg):
        """A failure in one of our procedures. A refusal (ApplicationError) was logged once already,
        with its reason: Autobahn would log its message a second time. Anything else is logged by
        its type only: an exception's message or traceback could quote a token."""
        if isinstance(getattr(fail, "value", None), ApplicationError):
            return
        self.log.error(
            "authenticator: unexpected {kind} in a procedure", kind=type(getattr(fail, "value", fail)).__name__
        )

    def onLeave(self, details):
        metrics.ACTIVE_SESSIONS.count = None
        if self._unjoined_sweep is not None and self._unjoined_sweep.running:
            self._unjoined_sweep.stop()
        if self._jwks_loop is not None and self._jwks_loop.running:
            self._jwks_loop.stop()
        super().onLeave(details)


_TMP_LEAK = []  # TEMPORARY LEAK


def _caller(details) -> int | None:
    """The calling session of one of our procedures. A call that carries forward_for names another
    session as its caller (Crossbar believes the first entry): refused, even if the authorizer's
    check was skipped."""
    if details is not None and details.forward_for:
        raise ApplicationError("wamp.error.not_authorized", "Calls with forward_for are reserved for router links.")
    return details.caller if details is not None else None


def _bounded_text(value) -> bool:
    return value is None or (isinstance(value, str) and 0 < len(value) <= MAX_ID)


def _count_revocation(authid, jti, origin: str) -> None:
    for kind, value in (("authid", authid), ("jti", jti)):
        if value is not None:
            metrics.REVOCATIONS.labels(kind, origin).inc()


def _internal_error(error: BaseException) -> Rejected:
    # The type only: a message or traceback could quote the token.
    return Rejected(Reason.INTERNAL_ERROR, type(error).__name__)


def _peer(details) -> str | None:
    return (details.get("transport") or {}).get("peer")


def _headers(details) -> dict:
    return (details.get("transport") or {}).get("http_headers_received") or {}


def _verified_roles(session: dict) -> list:
    """The token roles this component put in the session's authextra, or none.

    Only a dynamic session's authextra is ours (we always return one): for static anonymous
    sessions Crossbar passes on the authextra the *client* sent in HELLO, so trusting it there would
    let any visitor claim {"roles": ["admin"]}. Such a session gets exactly its authrole's rules.
    """
    if session.get("authprovider") != "dynamic" or session.get("authmethod") not in ("ticket", "anonymous"):
        return []
    roles = (session.get("authextra") or {}).get("roles")
    return roles if isinstance(roles, list) else []
