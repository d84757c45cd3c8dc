"""The Autobahn component that wires the pure core to the router: a thin adapter.

It runs inside the router worker (a router component), so its procedures are registered before
the transports open. Verification and policy run on the reactor (CPU only, microseconds); the
token store runs on the component's I/O threads, JWKS fetches on their own (authenticator/server/jwks.py);
the live-session keeper (authenticator/server/session_keeper.py) ends sessions at expiry and on revocation;
authenticator/server/admission.py is the one token check of logins and refreshes (verify, JWKS refetch,
store); authenticator/server/authorizer.py answers Crossbar's authorization questions.
"""

from __future__ import annotations

import time
from pathlib import Path

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import RegisterOptions
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater
from twisted.internet.threads import blockingCallFromThread
from twisted.python.threadpool import ThreadPool

from authenticator.config.node_config import (
    authenticator_realms,
    deprecated_path_lines,
    extra_place,
    realm_has_rlinks,
    smallest_max_message_size,
)
from authenticator.config.settings import ConfigError, load_settings
from authenticator.config.stop import stop_for_configuration
from authenticator.contract import AUTHENTICATE, AUTHENTICATE_HEADERS, AUTHORIZE, HISTORY, PRESENCE, REFRESH, REVOKE
from authenticator.core import redis_url
from authenticator.core.carriers import token_from_headers
from authenticator.core.logtext import clip
from authenticator.core.peer_address import session_peer
from authenticator.core.reasons import Reason, Rejected, as_rejection
from authenticator.core.tokens import Identity, TokenVerifier
from authenticator.endpoints import metrics
from authenticator.endpoints.publish import REALMS as PUBLISH_REALMS
from authenticator.endpoints.publish import HttpPublishing
from authenticator.patches import body_limit
from authenticator.patches.event_positions import install_history_tap
from authenticator.patches.forwarded_yields import drop_forwarded_yields
from authenticator.patches.guard import guard_this_process
from authenticator.patches.hardening import harden_router_worker
from authenticator.patches.hello_timeout import install_hello_timeout
from authenticator.patches.meta_events import install as follow_meta_events
from authenticator.patches.publish_decisions import install as reuse_publish_decisions
from authenticator.patches.rlink_events import install as install_rlink_events
from authenticator.server.admission import Admission
from authenticator.server.authorizer import Authorizer
from authenticator.server.history import History
from authenticator.server.jwks import JwksRefresher
from authenticator.server.presence import Presence
from authenticator.server.procedures import Procedures
from authenticator.server.redis_idempotency import open_idempotency
from authenticator.server.session_keeper import SessionKeeper
from authenticator.server.startup import node_config_file, node_problems, read_node, ready_line
from authenticator.server.store import StoreUnavailable, open_store

# Our own procedures need to know who calls them, so their callers are always disclosed to us.
OWN_PROCEDURES = frozenset({REFRESH, REVOKE, PRESENCE, HISTORY})
# Store calls in flight at once: one call waiting out its timeout does not hold the others (a
# revocation, the one retry of a store that was down); the GuardedStore refuses the rest at once.
IO_THREADS = 4
# What clients are told when the router stops (a WAMP close reason: the kits reconnect on it).
SHUTDOWN_REASON = "wamp.close.system_shutdown"
SHUTDOWN_MESSAGE = "The router is stopping; reconnect (another router may take you)."
SHUTDOWN_GOODBYE_SECONDS = 2
# The roles of every realm's policy in this router worker (one component per realm): only other
# roles (router links) may relay a YIELD's forward_for (patches/forwarded_yields.py).
POLICY_ROLES_OF_THIS_WORKER: set[str] = set()


class AuthenticatorComponent(ApplicationSession):
    def __init__(self, config=None):
        super().__init__(config)
        # First: Crossbar parses client bytes in this process as soon as its transports open.
        guard = harden_router_worker(self.log.warn)
        extra = dict(config.extra or {})
        cbdir = Path(extra.pop("cbdir", "."))
        self._node_config = node_config_file(cbdir)
        # Read once and validated: a bad configuration stops the router's start with its message.
        self.served_realm = config.realm
        self._node, unreadable = read_node(self._node_config)
        realms = authenticator_realms(self._node)
        where = extra_place(self._node_config or cbdir, self.served_realm, realms)
        try:
            self.settings = load_settings(extra, cbdir, realm=self.served_realm, node_realms=realms)
        except ConfigError as error:
            stop_for_configuration([f"{where}: {error}"])
        except Exception as error:  # noqa: BLE001 - a value of a type no check foresaw: still one line
            stop_for_configuration([f"{where}: unreadable ({type(error).__name__}: {clip(str(error), 300)})"])
        problems = unreadable or node_problems(self._node, self._node_config, self.settings, self.served_realm)
        # POST /publish without a fixed realm: this realm exists from now on, joined or not.
        PUBLISH_REALMS[self.served_realm] = (self.settings.claims.realm_claim, self.settings.max_token_bytes)
        if self._node is None and self.settings.claims.realm_claim is None:
            self.log.warn(
                "authenticator: the node config could not be found, so whether this node serves several realms is "
                "unknown: tokens are bound to realm {realm} only if claims.realm_claim is set (set it to \"aud\" on "
                "a node with several realms)", realm=self.served_realm,
            )  # fmt: skip
        if problems:
            stop_for_configuration(problems)
        if self._node is not None:  # 0.1's dotted paths: they work, this release only
            for line in deprecated_path_lines(self._node, self._node_config):
                self.log.warn("authenticator: {line}", line=line)
        try:
            self.store = open_store(self.settings.store, leeway_seconds=self.settings.claims.leeway_seconds,
                                    namespace=redis_url.realm_namespace(self.settings.claims))  # fmt: skip
        except StoreUnavailable as error:
            stop_for_configuration([f"{where}: 'store': {error}"])
        guard.apply("hello-timeout", install_hello_timeout, self.settings.limits.hello_timeout_seconds)
        # Before the transports open: an early 413 names the client behind a trusted proxy from the first request.
        body_limit.trust_forwarded_for(self.settings.trusted_proxies)
        # Roles the policy does not know are static ones (router links): they may relay results.
        # Several realms in this worker: a role is a policy role if any realm's policy defines it.
        POLICY_ROLES_OF_THIS_WORKER.update(self.settings.policy.roles)
        guard.apply("forwarded-yields", drop_forwarded_yields, lambda role: role not in POLICY_ROLES_OF_THIS_WORKER,
                    self.log.warn)  # fmt: skip
        # Before any router.authorize is wrapped per router (HTTP publishing, history): router links
        # relay pattern subscriptions and undisclosed events (patches/rlink_events.py).
        guard.apply("rlink-events", install_rlink_events)
        self.verifier = TokenVerifier(self.settings)
        self.keeper = SessionKeeper(
            grace_seconds=self.settings.expiry_grace_seconds, join_timeout_seconds=self.settings.join_timeout_seconds,
            behind_proxies=self.settings.behind_proxies, kill=self._kill, log=self.log, realm=self.served_realm,
        )  # fmt: skip
        self.jwks = JwksRefresher(self.settings, self.log)
        self._io = ThreadPool(minthreads=1, maxthreads=IO_THREADS, name="authenticator-io")
        # Router links (several nodes) cannot carry a publication's eligible/exclude options.
        self.authorizer = Authorizer(self.settings, self.keeper.token_roles, self.log, OWN_PROCEDURES,
                                     linked=realm_has_rlinks(self._node, config.realm),
                                     grants=self.keeper.grants)  # fmt: skip
        self.admission = Admission(self.verifier, self.jwks, self.store, self._io, self.settings, self.log)
        self.procedures = Procedures(self.settings, self.admission, self.keeper, self.store, self._io, self.log)
        self.presence = Presence(self.settings, self.authorizer, self.keeper.token_roles, self.publish, self._io,
                                 self.log)  # fmt: skip
        self.history = History(self.settings, self.authorizer, self.keeper.token_roles, self.log,
                               max_message_size=smallest_max_message_size(self._node))  # fmt: skip
        for key in self.settings.keys.keys:
            if key.generated:  # tokens signed with any other secret are refused: say where it is
                self.log.warn(
                    "authenticator: generated a development secret in {source}; give it to your application "
                    "with: python -m authenticator secret (production: set JWT_SECRET)", source=key.source,
                )  # fmt: skip

    async def onJoin(self, details):
        self._io.start()
        reactor.addSystemEventTrigger("during", "shutdown", self._io.stop)
        caller = RegisterOptions(details_arg="details")
        await self.register(self.authenticate, AUTHENTICATE)
        await self.register(self.authenticate_headers, AUTHENTICATE_HEADERS)
        await self.register(self.authorizer.authorize, AUTHORIZE)
        await self.register(self.procedures.refresh, REFRESH, options=caller)
        await self.register(self.procedures.revoke, REVOKE, options=caller)
        await self.register(self.presence.presence, PRESENCE, options=caller)
        await self.register(self.history.read, HISTORY, options=caller)
        await self._follow_sessions()
        self.keeper.start()
        self.jwks.start()
        metrics.ACTIVE_SESSIONS.serve(self.served_realm, tuple(self.settings.policy.roles), self._count_sessions)
        listen = getattr(self.store, "listen_for_revocations", None)
        if listen is not None:  # several routers: end our sessions when another one revokes
            stop = listen(
                lambda authid, jti: reactor.callFromThread(self.procedures.revoked_elsewhere, authid, jti),
                lambda problem: reactor.callFromThread(self.log.warn, "authenticator: {problem}", problem=problem),
            )
            reactor.addSystemEventTrigger("during", "shutdown", stop.set)
        self._reuse_publish_decisions()  # first: the HTTP publisher's hook and the history tap wrap it
        self._start_http_publishing(details.realm)
        self._keep_history()
        if self.settings.goodbye_on_stop:
            # A stopping router (SIGINT, systemd's stop) drops its connections: clients would see a
            # lost transport. They get a GOODBYE with a reason first, and the kits reconnect.
            reactor.addSystemEventTrigger("before", "shutdown", lambda: ensureDeferred(self._goodbye_to_everyone()))
        self.log.warn(ready_line(self._node, self.settings, details.realm, self._node_config))

    async def _follow_sessions(self) -> None:
        """Sessions joining and leaving (the keeper: expiry, revocation) and who is subscribed to
        what (presence, authenticator/server/presence.py), from Crossbar's meta events: handed over
        by the realm's service session as it publishes them (patches/meta_events.py), or, outside a
        router worker, as subscribed events."""

        listeners = {
            "wamp.session.on_join": (self.keeper.joined, self.presence.joined),
            "wamp.session.on_leave": (self.keeper.left, self.presence.left),
            "wamp.subscription.on_create": (self.presence.created,),
            "wamp.subscription.on_subscribe": (self.presence.subscribed,),
            "wamp.subscription.on_unsubscribe": (self.presence.unsubscribed,),
            "wamp.subscription.on_delete": (self.presence.deleted,),
        }
        router = getattr(self._transport, "_router", None)
        in_process = router is not None and guard_this_process(self.log.warn).apply(
            "meta-events-in-process", follow_meta_events, router, listeners, self.log
        )  # fmt: skip
        if not in_process:
            for topic, handlers in listeners.items():
                for handler in handlers:
                    await self.subscribe(handler, topic)
        self.presence.start()

    async def _goodbye_to_everyone(self) -> None:
        """Before the reactor stops: GOODBYE to every client session, then wait (at most
        SHUTDOWN_GOODBYE_SECONDS) until they have left, so the GOODBYEs are on the wire before the
        connections are dropped."""
        if not self.is_attached():
            return
        roles = list(self.settings.policy.roles)
        deadline = time.monotonic() + SHUTDOWN_GOODBYE_SECONDS
        try:
            for role in roles:
                await self.call("wamp.session.kill_by_authrole", role, reason=SHUTDOWN_REASON,
                                message=SHUTDOWN_MESSAGE).addTimeout(SHUTDOWN_GOODBYE_SECONDS, reactor)  # fmt: skip
            self.log.warn("authenticator: router stopping; sent GOODBYE ({reason}) to every client session",
                          reason=SHUTDOWN_REASON)  # fmt: skip
            while time.monotonic() < deadline and await self.call(
                "wamp.session.count", filter_authroles=roles
            ).addTimeout(SHUTDOWN_GOODBYE_SECONDS, reactor):
                await deferLater(reactor, 0.05, lambda: None)
        except Exception as error:  # noqa: BLE001 - a stop must go on whatever happens here
            self.log.warn("authenticator: could not say GOODBYE to every session ({kind})", kind=type(error).__name__)

    def _reuse_publish_decisions(self) -> None:
        """A session's repeated publications to a topic reuse its decision (patches/publish_decisions.py)."""
        router = getattr(self._transport, "_router", None)
        if router is not None:
            guard_this_process(self.log.warn).apply("session-publish-decisions", reuse_publish_decisions, router,
                                                    AUTHORIZE)  # fmt: skip

    def _start_http_publishing(self, realm: str) -> None:
        """POST /publish (authenticator/endpoints/publish.py) publishes through the router this
        component is embedded in."""
        router = getattr(self._transport, "_router", None)
        if router is None:
            self.log.warn("authenticator: not embedded in a router worker; HTTP publishing is off")
            return
        self.http_publishing = HttpPublishing(realm, router, self.admission, self.authorizer, self.settings, self.log,
                                              keys=open_idempotency(self.settings), io_pool=self._io)  # fmt: skip
        self.http_publishing.start()

    def _keep_history(self) -> None:
        """Events of history topics are kept as the router publishes them (patches/event_positions.py).
        After HTTP publishing started: its decision hook wraps the router's authorize too, and the
        tap must see the publications it answers."""
        router = getattr(self._transport, "_router", None)
        if router is None:
            self.log.warn("authenticator: not embedded in a router worker; history is off")
            return
        self.history.start()
        guard_this_process(self.log.warn).apply("history-tap", install_history_tap, router, self.history.tap,
                                                self.history.observed())  # fmt: skip

    # -- authentication ----------------------------------------------------------------------

    def authenticate(self, realm, authid, details):
        """WAMP-ticket: the ticket is the token."""
        self._refuse_other_realms(realm, "ticket", details)
        return self._login(details.get("ticket"), "ticket", details)

    def authenticate_headers(self, realm, authid, details):
        """WAMP-anonymous, dynamic: a token in the upgrade's headers, else the anonymous role."""
        self._refuse_other_realms(realm, "none", details)
        peer = session_peer(details, self.settings.trusted_proxies)
        try:
            token, carrier = token_from_headers(_headers(details), self.settings)
        except Rejected as rejection:  # a Bearer token that is not ASCII, or a cookie from a foreign origin
            carrier = "cookie" if rejection.reason is Reason.ORIGIN_NOT_ALLOWED else "bearer"
            raise self._refuse(rejection, peer, carrier) from None
        if token is not None:
            return self._login(token, carrier, details)
        anonymous = self.settings.policy.anonymous_role
        if anonymous is None:
            raise self._refuse(Rejected(Reason.MISSING_TOKEN, "anonymous access is off"), peer, "none") from None
        metrics.AUTHENTICATIONS.labels(self.served_realm, "anonymous", "none").inc()
        # Always return extra: without it Crossbar would hand on the client's own HELLO authextra.
        return {"role": anonymous, "extra": {"roles": [anonymous], "exp": None}}

    def _refuse_other_realms(self, realm, carrier: str, details) -> None:
        """This component's keys and policy are its realm's: a login to any other realm (a path whose
        'authenticator-realm' sends it here) is refused, whatever the token says."""
        if realm != self.served_realm:
            shown = clip(realm, 80) if isinstance(realm, str) else type(realm).__name__
            detail = (f"the client joins realm {shown!r}, and this authenticator serves realm {self.served_realm!r} "
                      "only; give that realm an authenticator component of its own")  # fmt: skip
            peer = session_peer(details, self.settings.trusted_proxies)
            raise self._refuse(Rejected(Reason.WRONG_REALM, detail), peer, carrier) from None

    def _login(self, token, carrier: str, details):
        """The login hot path: plain calls while no I/O is needed, so that with reusable tokens and
        the SQLite store the answer returns at once, on the reactor."""
        peer = session_peer(details, self.settings.trusted_proxies)
        try:
            checked = self.admission.check(token)
        except Exception as error:  # noqa: BLE001 - any failure must become a clean refusal
            raise self._refuse(as_rejection(error), peer, carrier) from None
        if isinstance(checked, Deferred):
            return checked.addCallbacks(
                self._admitted, self._refuse_failure, callbackArgs=(carrier, details), errbackArgs=(peer, carrier)
            )
        return self._admitted(checked, carrier, details)

    def _admitted(self, identity: Identity, carrier: str, details) -> dict:
        extra = self.keeper.admitted(identity, details.get("session"))
        metrics.AUTHENTICATIONS.labels(self.served_realm, "accepted", "none").inc()
        self.log.info(
            "authentication accepted: authid={authid} role={role} via={via} peer={peer} jti={jti}",
            authid=identity.authid, role=identity.role, via=carrier,
            peer=session_peer(details, self.settings.trusted_proxies), jti=identity.jti,
        )  # fmt: skip
        return {"authid": identity.authid, "role": identity.role, "extra": extra}

    def _refuse_failure(self, failure, peer, carrier: str):
        raise self._refuse(as_rejection(failure.value), peer, carrier)

    def _refuse(self, rejection: Rejected, peer, carrier: str) -> ApplicationError:
        metrics.AUTHENTICATIONS.labels(self.served_realm, "refused", rejection.reason.code).inc()
        self.log.warn(
            "authentication refused: reason={reason} detail={detail} authid={authid} via={via} peer={peer} jti={jti}",
            reason=rejection.reason.code, detail=rejection.detail or "-", authid=rejection.authid,
            via=carrier, peer=peer, jti=rejection.jti,
        )  # fmt: skip
        message = Rejected(Reason.INTERNAL_ERROR).message if rejection.reason is Reason.INTERNAL_ERROR else None
        return ApplicationError(rejection.reason.uri, message or rejection.message)

    def _kill(self, session_id: int, reason: Reason, message: str) -> Deferred:
        d = self.call("wamp.session.kill", session_id, reason=reason.uri, message=message)
        d.addErrback(self._kill_failed, session_id)
        return d

    def _kill_failed(self, failure, session_id) -> None:
        if not (failure.check(ApplicationError) and failure.value.error == "wamp.error.no_such_session"):
            self.log.warn("authenticator: could not end session {sid}: {kind}", sid=session_id,
                          kind=type(failure.value).__name__)  # fmt: skip

    # -- Crossbar and Autobahn hooks ------------------------------------------------------------

    def _count_sessions(self, role: str) -> int:
        """For the /metrics scrape, on Crossbar's wsgi thread: ask the router, never guess.

        Crossbar's count includes the embedded sessions HTTP publications are made from (one per
        identity, kept for reuse: authenticator/endpoints/publisher_pool.py); they are not clients and are
        left out. The router answers an embedded session's call within the call, so the count and
        the publisher sessions it holds are read in the same reactor turn."""
        publishing = getattr(self, "http_publishing", None)

        def clients(count: int) -> int:
            return count - (publishing.pool.held(role) if publishing is not None else 0)

        def ask() -> Deferred:
            return self.call("wamp.session.count", filter_authroles=[role]).addCallback(clients).addTimeout(2, reactor)

        return blockingCallFromThread(reactor, ask)

    def onUserError(self, fail, msg):
        """A failure in one of our procedures. A refusal (ApplicationError) was logged once already,
        with its reason: Autobahn would log its message a second time. Anything else is logged by
        its type only: an exception's message or traceback could quote a token."""
        if isinstance(getattr(fail, "value", None), ApplicationError):
            return
        self.log.error(
            "authenticator: unexpected {kind} in a procedure", kind=type(getattr(fail, "value", fail)).__name__
        )

    def disconnect(self):
        """Once. When the router worker stops, Crossbar removes the component (which disconnects it)
        and the leave that follows disconnects it again: Crossbar then detaches the session twice
        and logs 'cannot detach session ...: session not currently attached' at every stop."""
        if getattr(self, "_disconnect_requested", False):
            return
        self._disconnect_requested = True
        super().disconnect()

    def onLeave(self, details):
        metrics.ACTIVE_SESSIONS.stop(self.served_realm)
        if getattr(self, "http_publishing", None) is not None:
            self.http_publishing.stop()
        self.keeper.stop()
        self.jwks.stop()
        self.presence.stop()
        super().onLeave(details)


def _headers(details) -> dict:
    return (details.get("transport") or {}).get("http_headers_received") or {}
