"""POST /publish: a backend publishes over HTTP with a token, under the same policy as WebSocket clients.

The token (``Authorization: Bearer <JWT>``) goes through the same admission as a WebSocket login
(authenticator/server/admission.py: keys, claim rules, revocation, single use, reasons); each publication
is decided by the same authorizer, for the token's authid and roles; it is published from an
embedded session of that identity (authenticator/endpoints/publisher_pool.py), so subscribers see it as
from a WAMP publisher. All on the reactor, as Crossbar's own HTTP bridge: no thread per request;
the token store and the Redis store of idempotency keys (core/idempotency.py) are asked on the
component's I/O threads.

Node config, a path of the router worker's web transport (Crossbar's ``resource`` path type)::

    "publish": {"type": "resource", "classname": "authenticator.endpoints.publish.publish_resource",
                "extra": {"realm": "realm1", "max_body_bytes": 65536, "max_batch": 100}}

Answers: docs/publishing.md.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from authenticator.core.idempotency import (
    PENDING_SECONDS,
    Claim,
    KeysUnavailable,
    MemoryIdempotency,
    State,
    fingerprint,
    scope,
)
from authenticator.core.logtext import clip
from authenticator.core.publish_request import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_BYTES,
    HISTORY_UNAVAILABLE,
    INVALID_ARGUMENT,
    KEY_IN_USE,
    KEY_REUSED,
    NOT_AUTHORIZED,
    RETRY_AFTER,
    STORE_UNAVAILABLE,
    BodyProblem,
    Publication,
    Refusal,
    Replayed,
    batch_answer,
    idempotency_keys,
    parse_body,
    single_answer,
)
from authenticator.core.reasons import Reason, Rejected, as_rejection
from authenticator.core.tokens import Identity, claimed_realms
from authenticator.core.unknown_keys import unknown_keys
from authenticator.endpoints import metrics
from authenticator.endpoints.bearer_json import Answer, BearerJsonResource
from authenticator.endpoints.publisher_pool import PublisherPool
from authenticator.patches import body_limit

# The realm's publishing service, by realm: filled by the authenticator component when it joins.
# Crossbar hands a ``resource`` path nothing but its own extra, so the two meet here, in the one
# router worker process they share.
SERVICES: dict[str, HttpPublishing] = {}
# Every realm of this router worker, with the claim that binds a token to it and the token bound:
# filled by each realm's component as it is built (before any transport opens), so a realm whose
# component has not joined yet is known to exist (503), not taken for another.
REALMS: dict[str, tuple[str | None, int]] = {}
RESOURCE_KEYS = ("realm", "max_body_bytes", "max_batch")
BEARER_ADVICE = (
    "Send the JWT in an 'Authorization: Bearer <token>' header (a cookie is never taken here: a browser "
    "would attach it to any site's form)."
)
TOKEN_STATUS = {Reason.STORE_UNAVAILABLE: 503, Reason.INTERNAL_ERROR: 500}
TOO_LARGE_ADVICE = "Send less per request (a batch can be split)."
# Requests waiting for the Redis store of idempotency keys at once (I/O threads and their queue);
# past it a keyed request is answered 503 at once, as logins are past MAX_STORE_CHECKS_WAITING.
MAX_KEY_CALLS_WAITING = 1000
KEYS_UNAVAILABLE = "The store of idempotency keys cannot be reached; nothing was published. Retry with the same key."


class HttpPublishing:
    """The realm's HTTP publishing: token -> identity -> decisions -> publications -> answer."""

    def __init__(self, realm: str, router, admission, authorizer, settings, log, *, keys=None, io_pool=None) -> None:
        """`keys`: the store of idempotency keys (server/redis_idempotency.open_idempotency; this
        process's memory when None); `io_pool`: the threads a blocking one is called on."""
        if keys is None:
            keys = MemoryIdempotency(window_seconds=settings.publish.idempotency_window_seconds,
                                     max_keys=settings.publish.idempotency_max_keys)  # fmt: skip
        if keys.blocking and io_pool is None:
            raise ValueError("a blocking store of idempotency keys needs the I/O threads: never on the reactor")
        self.keys, self._keys_io = keys, (io_pool if keys.blocking else None)
        self.key_calls_waiting = 0
        self._forgotten_logged = 0
        self.realm = realm
        self._published_count = metrics.HTTP_PUBLISHES.labels(realm, "published", "none")
        self._admission, self._authorizer, self._settings, self._log = admission, authorizer, settings, log
        self.trusted_proxies = settings.trusted_proxies  # whose X-Forwarded-For names the client (peers.py)
        body_limit.trust_forwarded_for(self.trusted_proxies)  # the same in the worker's early 413 lines
        self.pool = PublisherPool(router, realm)
        self._sweep = LoopingCall(self.pool.close_idle)

    def start(self) -> None:
        SERVICES[self.realm] = self
        self._sweep.start(15, now=False)

    def stop(self) -> None:
        if SERVICES.get(self.realm) is self:
            del SERVICES[self.realm]
        if self._sweep.running:
            self._sweep.stop()
        self.pool.close()

    def handle(
        self, token: str | None, body: bytes, peer: str, max_batch: int, key_header: list[bytes] | None = None
    ) -> Answer | Deferred:
        """`key_header`: the values of the request's Idempotency-Key header, if it has one."""
        if token is None:
            return self._token_refused(Rejected(Reason.MISSING_TOKEN), peer)
        try:
            checked = self._admission.check(token)
        except Exception as error:  # noqa: BLE001 - any failure must become a clean refusal
            return self._token_refused(as_rejection(error), peer)
        if isinstance(checked, Deferred):
            return checked.addCallbacks(
                self._admitted, lambda failure: self._token_refused(as_rejection(failure.value), peer),
                callbackArgs=(body, peer, max_batch, key_header),
            )  # fmt: skip
        return self._admitted(checked, body, peer, max_batch, key_header)

    def _admitted(
        self, identity: Identity, body: bytes, peer: str, max_batch: int, key_header: list[bytes] | None = None
    ) -> Answer | Deferred:
        try:
            batch, items = parse_body(body, max_batch=max_batch, max_uri_length=self._settings.limits.max_uri_length)
            keys = idempotency_keys(batch, items, key_header)
        except BodyProblem as problem:
            self._log_refusal(400, INVALID_ARGUMENT, str(problem), identity.authid, peer)
            self._count("invalid")
            return Answer(400, Refusal(INVALID_ARGUMENT, str(problem)).answer())
        if any(keys):
            return self._with_keys(identity, batch, items, keys, peer)
        return self._answered(batch, [self._publish_guarded(identity, item, peer) for item in items])

    def _answered(self, batch: bool, results: list) -> Answer | Deferred:
        if not batch:
            (result,) = results
            return result.addCallback(self._single) if isinstance(result, Deferred) else self._single(result)
        done = DeferredList([maybeDeferred(lambda r=r: r) for r in results], consumeErrors=True)
        return done.addCallback(self._batch)

    # -- idempotency keys (core/idempotency.py) -------------------------------------------------

    def _with_keys(self, identity: Identity, batch: bool, items: list, keys: list, peer: str) -> Answer | Deferred:
        """Reserve every key of the request in one store call, then publish in the request's order
        (a publication whose key is held or done is not published), then remember the ids of what
        was published and release the keys of what was refused, then answer."""
        keyed = {
            index: (scope(identity.authid, key), fingerprint(item.topic, item.args, item.kwargs, item.options))
            for index, (item, key) in enumerate(zip(items, keys, strict=True))
            if key is not None and isinstance(item, Publication)
        }
        try:
            claims = self._key_call(self.keys.reserve, list(keyed.values()))
        except KeysUnavailable as error:
            return self._keys_unavailable(error, identity, peer)
        if isinstance(claims, Deferred):
            return claims.addCallbacks(
                self._claimed, self._keys_failed, callbackArgs=(identity, batch, items, keys, keyed, peer),
                errbackArgs=(identity, peer),
            )  # fmt: skip
        return self._claimed(claims, identity, batch, items, keys, keyed, peer)

    def _claimed(self, claims: list[Claim], identity, batch, items, keys, keyed, peer) -> Answer | Deferred:
        claim_of = dict(zip(keyed, claims, strict=True))
        results, owned = [], {}
        for index, item in enumerate(items):
            claim = claim_of.get(index)
            if claim is None:
                results.append(self._publish_guarded(identity, item, peer))
            elif claim.state is State.RESERVED:
                owned[index] = (keyed[index][0], claim.owner)
                results.append(self._publish_guarded(identity, item, peer))
            else:
                results.append(self._not_published(claim, keys[index], identity, peer))
        done = DeferredList([maybeDeferred(lambda r=r: r) for r in results], consumeErrors=True)
        return done.addCallback(self._remember, batch, owned)

    def _not_published(self, claim: Claim, key: str, identity: Identity, peer: str) -> Replayed | Refusal:
        if claim.state is State.DONE:
            self._count("replayed")
            return Replayed(claim.publication_id)
        if claim.state is State.IN_PROGRESS:
            status, error, outcome = 409, KEY_IN_USE, "in_progress"
            message = (f"A request with idempotency key '{key}' is publishing this publication now: retry in a "
                       "second, and you get its answer.")  # fmt: skip
        elif claim.state is State.OTHER_PUBLICATION:
            status, error, outcome = 422, KEY_REUSED, "key_reused"
            message = (
                f"Idempotency key '{key}' came with another publication (its topic, args, kwargs or options differ) "
                f"within the last {_duration(self.keys.window_seconds)}: a key names one publication. Send a new key "
                "for a new publication."
            )
        else:  # State.FULL: every key the memory store may hold is in flight
            status, error, outcome = 503, STORE_UNAVAILABLE, "unavailable"
            message = "The router holds as many idempotency keys in flight as it may; nothing was published. Retry."
        self._log_refusal(status, error, message, identity.authid, peer)
        self._count(outcome)
        return Refusal(error, message)

    def _remember(self, outcomes: list, batch: bool, owned: dict) -> Answer | Deferred:
        results = [value if ok else Refusal("wamp.error.runtime_error", "internal error") for ok, value in outcomes]
        published = [(name, owner, results[i]) for i, (name, owner) in owned.items() if isinstance(results[i], int)]
        refused = [(name, owner) for i, (name, owner) in owned.items() if not isinstance(results[i], int)]
        self._note_forgotten()
        calls = [(self.keys.settle, published), (self.keys.release, refused)]
        done = [self._key_call_logged(call, arg) for call, arg in calls if arg]
        answer = self._batch(outcomes) if batch else self._single(results[0])
        if any(isinstance(d, Deferred) for d in done):
            return DeferredList([d for d in done if isinstance(d, Deferred)]).addCallback(lambda _: answer)
        return answer

    def _key_call(self, operation, argument):
        """The memory store on the reactor (dict operations); the Redis store on the I/O threads."""
        if self._keys_io is None:
            return operation(argument)
        if self.key_calls_waiting >= MAX_KEY_CALLS_WAITING:
            raise KeysUnavailable("too many requests waiting for the Redis store of idempotency keys")
        self.key_calls_waiting += 1
        called = deferToThreadPool(reactor, self._keys_io, operation, argument)
        return called.addBoth(self._key_call_done)

    def _key_call_done(self, result):
        self.key_calls_waiting -= 1
        return result

    def _key_call_logged(self, operation, argument):
        """Remember or release keys after the publications: a failure changes no answer (what was
        published was published); the reservations it could not update expire by themselves."""

        def failed(failure):
            self._log.warn("http publish: could not update idempotency keys ({kind}); they expire in "
                           "{seconds:.0f} s", kind=type(failure.value).__name__, seconds=PENDING_SECONDS)  # fmt: skip

        try:
            done = self._key_call(operation, argument)
        except Exception:  # noqa: BLE001 - as failed() says
            return failed(Failure())
        return done.addErrback(failed) if isinstance(done, Deferred) else done

    def _keys_failed(self, failure, identity: Identity, peer: str) -> Answer:
        failure.trap(KeysUnavailable)
        return self._keys_unavailable(failure.value, identity, peer)

    def _keys_unavailable(self, error: Exception, identity: Identity, peer: str) -> Answer:
        self._log_refusal(503, STORE_UNAVAILABLE, "idempotency keys: " + str(error), identity.authid, peer)
        self._count("unavailable", "store_unavailable")
        return Answer(503, Refusal(STORE_UNAVAILABLE, KEYS_UNAVAILABLE).answer(), {"Retry-After": "1"})

    def _note_forgotten(self) -> None:
        """One warn line per 1,000 keys the memory store forgot at its bound (never per request)."""
        forgotten = getattr(self.keys, "forgotten", 0)
        if forgotten >= self._forgotten_logged + 1000 or (forgotten and not self._forgotten_logged):
            self._forgotten_logged = forgotten
            self._log.warn(
                "http publish: {forgotten} idempotency keys forgotten before their window ended: this router "
                "holds at most {bound} (publish.idempotency_max_keys)", forgotten=forgotten, bound=self.keys.max_keys,
            )  # fmt: skip

    def _publish_guarded(self, identity: Identity, item: Publication | Refusal, peer: str):
        """One publication; a failure of its own is its refusal, never the batch's (the ones
        before it were published: failing the request would have the client publish them twice)."""
        try:
            return self._publish_one(identity, item, peer)
        except Exception as error:  # noqa: BLE001 - logged by its type only
            self._log.warn("http publish failed: internal error {kind}", kind=type(error).__name__)
            self._count("failed")
            return Refusal("wamp.error.runtime_error", "The router could not publish this; retry, or read its log.")

    def _publish_one(self, identity: Identity, item: Publication | Refusal, peer: str):
        if isinstance(item, Refusal):
            self._log_refusal(400, item.error, item.message, identity.authid, peer)
            self._count("invalid")
            return item
        decision = self._authorizer.decide(
            authrole=identity.role, authid=identity.authid, roles=identity.roles, action="publish",
            uri=item.topic, options=item.options, via="http", grants=identity.grants,
        )  # fmt: skip
        if not decision.allow:
            self._count("denied")
            return Refusal(
                NOT_AUTHORIZED,
                f"Not authorized to publish to '{clip(item.topic, 200)}' as '{identity.authid}' (role "
                f"'{identity.role}'): {decision.reason}. Ask for a token with a role whose rules allow it.",
            )
        session = self.pool.session(identity.authid, identity.role)
        published = session.publish_decided(
            item.topic, item.args, item.kwargs, item.options, decision.as_crossbar_answer()
        )
        return published.addCallbacks(self._published, self._broker_refused, errbackArgs=(identity, item, peer))

    def _count(self, outcome: str, reason: str = "none") -> None:
        metrics.HTTP_PUBLISHES.labels(self.realm, outcome, reason).inc()

    def _published(self, publication_id: int) -> int:
        self._published_count.inc()  # the hot path: the child looked up once
        return publication_id

    def _broker_refused(self, failure, identity: Identity, item: Publication, peer: str) -> Refusal:
        error = getattr(failure.value, "error", None)
        if error == NOT_AUTHORIZED:  # the broker's own refusals (e.g. wamp.* topics)
            self._log_refusal(403, error, "refused by the broker", identity.authid, peer)
            self._count("denied")
            return Refusal(NOT_AUTHORIZED, f"The router refused to publish to '{clip(item.topic, 200)}'.")
        if error in (INVALID_ARGUMENT, "wamp.error.invalid_uri"):
            text = clip(failure.value.args[0] if failure.value.args else error, 300)
            self._log_refusal(400, error, text, identity.authid, peer)
            self._count("invalid")
            return Refusal(INVALID_ARGUMENT, text)  # a permanent error: 400, not "retry"
        if error == "wamp.error.authorization_failed" and HISTORY_UNAVAILABLE in str(failure.value.args[:1]):
            # a topic that keeps history, and its store could not keep the event: nothing was sent
            self._log_refusal(503, HISTORY_UNAVAILABLE, "the history store cannot be reached", identity.authid, peer)
            self._count("failed")
            return Refusal(HISTORY_UNAVAILABLE, f"'{clip(item.topic, 200)}' keeps history and its store cannot be "
                           "reached: nothing was sent to subscribers (after a timeout the event may have been kept). "
                           "Retry (with the same Idempotency-Key).")  # fmt: skip
        kind = error or type(failure.value).__name__
        self._log.warn("http publish failed: {kind} topic={topic} authid={authid} peer={peer}", kind=clip(kind, 100),
                       topic=clip(item.topic, 200), authid=identity.authid, peer=peer)  # fmt: skip
        self._count("failed")
        return Refusal("wamp.error.runtime_error", "The router could not publish this; retry, or read the router log.")

    @staticmethod
    def _single(result: int | Replayed | Refusal) -> Answer:
        status, body = single_answer(result)
        headers = {}
        if isinstance(result, Replayed):
            headers["Idempotent-Replayed"] = "true"  # Stripe's name: the first answer, nothing published now
        elif isinstance(result, Refusal) and result.error in RETRY_AFTER:
            headers["Retry-After"] = RETRY_AFTER[result.error]
        return Answer(status, body, headers)

    @staticmethod
    def _batch(results: list) -> Answer:
        items = [value if ok else Refusal("wamp.error.runtime_error", "internal error") for ok, value in results]
        status, body = batch_answer(items)
        return Answer(status, body)

    def _token_refused(self, rejection: Rejected, peer: str) -> Answer:
        status = TOKEN_STATUS.get(rejection.reason, 401)
        self._count("token_refused", rejection.reason.code)
        self._log_refusal(status, rejection.reason.code, rejection.detail or "-", rejection.authid, peer,
                          jti=rejection.jti)  # fmt: skip
        message = rejection.message
        if rejection.reason is Reason.INTERNAL_ERROR:
            message = Rejected(Reason.INTERNAL_ERROR).message  # never the exception's words
        elif rejection.reason is Reason.MISSING_TOKEN:  # the WAMP advice (the ticket) does not apply here
            what = rejection.reason.what + (f": {rejection.detail}" if rejection.detail else "")
            message = f"{what}. {BEARER_ADVICE}"
        headers = {}
        if status == 401:
            # RFC 6750 3.1: a request without a token gets the challenge without an error code.
            headers["WWW-Authenticate"] = (
                f'Bearer realm="{self.realm}"' if rejection.reason is Reason.MISSING_TOKEN
                else f'Bearer realm="{self.realm}", error="invalid_token"'
            )  # fmt: skip
        elif status == 503:
            headers["Retry-After"] = "1"
        body = {"error": rejection.reason.uri, "message": message}
        return Answer(status, body, headers)

    def _log_refusal(self, status: int, reason: str, detail: str, authid, peer: str, jti=None) -> None:
        self._log.warn(
            "http publish refused: status={status} reason={reason} detail={detail} authid={authid} peer={peer} "
            "jti={jti}", status=status, reason=reason, detail=clip(detail, 300), authid=authid, peer=peer, jti=jti,
        )  # fmt: skip


# -- the Twisted Web resource ---------------------------------------------------------------------


class PublishResource(BearerJsonResource):
    log_name = "http publish"
    wrong_method_message = "Only POST publishes here."
    too_large_error = INVALID_ARGUMENT
    too_large_advice = TOO_LARGE_ADVICE

    def __init__(self, realm: str | None, max_body_bytes: int, max_batch: int) -> None:
        """realm None: the realm the token names (a node with several realms, docs/publishing.md)."""
        super().__init__(max_body_bytes)
        self.realm, self.max_batch = realm, max_batch

    def service(self) -> HttpPublishing | RealmOfTheToken | None:
        if self.realm is not None:
            return SERVICES.get(self.realm)
        return RealmOfTheToken() if SERVICES else None

    def unavailable_message(self) -> str:
        if self.realm is None:
            return "HTTP publishing is not ready: no realm's authenticator has joined yet."
        return f"HTTP publishing on realm '{self.realm}' is not ready: the authenticator has not joined it."

    def handle(self, service, token: str | None, body: bytes, peer: str, headers) -> Answer | Deferred:
        if isinstance(service, RealmOfTheToken):
            service = service.of(token)
            if isinstance(service, Rejected):
                return RealmOfTheToken.refused(service, peer)
            if isinstance(service, Answer):
                return service
        return service.handle(token, body, peer, self.max_batch, headers.getRawHeaders(b"idempotency-key"))

    def token_refused(self, service, rejection: Rejected, peer: str) -> Answer:
        if isinstance(service, RealmOfTheToken):
            return RealmOfTheToken.refused(rejection, peer)
        return service._token_refused(rejection, peer)

    def count(self, outcome: str) -> None:
        metrics.HTTP_PUBLISHES.labels(self.realm or metrics.NO_REALM, outcome, "none").inc()

    def trusted_proxies(self) -> frozenset[str]:
        # One value per router worker (the node check makes every realm's component agree).
        service = SERVICES.get(self.realm) if self.realm is not None else next(iter(SERVICES.values()), None)
        return getattr(service, "trusted_proxies", frozenset())

    def body_refused(self, request, limit: int) -> None:
        """body_limit answered 413 before the body was read (and logged it): counted."""
        self.count("too_large")


class RealmOfTheToken:
    """POST /publish without a fixed realm: the realm's service is chosen by the realm the token
    names (its claims.realm_claim), read before the signature is checked -- that realm's own
    verification then checks the signature and the same binding, so a token can only reach a
    realm whose keys signed it for that realm. With one realm, that realm."""

    _log = None

    @staticmethod
    def of(token: str | None) -> HttpPublishing | Rejected | Answer:
        if len(REALMS) <= 1 and SERVICES:  # one realm (its component registered itself before it joined)
            return next(iter(SERVICES.values()))
        if token is None:  # refused without naming any realm (the realms of a router are not told to strangers)
            return Rejected(Reason.MISSING_TOKEN)
        named = [
            realm for realm, (claim, limit) in REALMS.items() if claim and realm in claimed_realms(token, claim, limit)
        ]
        if not named:
            return Rejected(Reason.WRONG_REALM, "it names no realm this router serves (claims.realm_claim)")
        if len(named) > 1:
            return Rejected(Reason.WRONG_REALM, "it names several realms; publish with a token for one")
        service = SERVICES.get(named[0])
        if service is None:  # its component has not joined (yet): retry, as for a router that is starting
            metrics.HTTP_PUBLISHES.labels(metrics.NO_REALM, "unavailable", "none").inc()
            message = "HTTP publishing on the token's realm is not ready: its authenticator has not joined it. Retry."
            return Answer(503, {"error": "wamp.error.no_such_realm", "message": message}, {"Retry-After": "1"})
        return service

    @classmethod
    def refused(cls, rejection: Rejected, peer: str) -> Answer:
        """401 before any realm is known: counted and logged under realm "none", no realm named."""
        if cls._log is None:
            from twisted.logger import Logger

            cls._log = Logger(namespace="authenticator.endpoints.publish")
        status = TOKEN_STATUS.get(rejection.reason, 401)
        metrics.HTTP_PUBLISHES.labels(metrics.NO_REALM, "token_refused", rejection.reason.code).inc()
        cls._log.warn(
            "http publish refused: status={status} reason={reason} detail={detail} authid=None peer={peer} jti=None",
            status=status, reason=rejection.reason.code, detail=clip(rejection.detail or "-", 300), peer=peer,
        )  # fmt: skip
        message, headers = rejection.message, {}
        if rejection.reason is Reason.MISSING_TOKEN:  # RFC 6750 3.1: no error code without a token
            message, headers = f"{rejection.reason.what}. {BEARER_ADVICE}", {"WWW-Authenticate": "Bearer"}
        elif status == 401:
            headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        return Answer(status, {"error": rejection.reason.uri, "message": message}, headers)


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"


def publish_resource(extra: Mapping) -> PublishResource:
    """Factory of the ``resource`` path (Crossbar calls it with the path's ``extra``)."""
    from authenticator.config.stop import stop_for_configuration

    extra = dict(extra or {})
    where = "the HTTP publish path's extra (authenticator.endpoints.publish.publish_resource)"
    problems = []
    unknown = unknown_keys(where, extra, RESOURCE_KEYS)
    if unknown:
        problems.append(unknown)
    realm = extra.get("realm")  # absent: the realm the token names
    if realm is not None and (not isinstance(realm, str) or not realm):
        problems.append(f"{where}: 'realm' must name the realm to publish on, such as \"realm1\" (or be left out: "
                        "the realm the token names)")  # fmt: skip
    limits = {}
    for key, default in (("max_body_bytes", DEFAULT_MAX_BODY_BYTES), ("max_batch", DEFAULT_MAX_BATCH)):
        value = extra.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"{where}: '{key}' must be a positive whole number (default {default})")
        limits[key] = value
    if problems:
        stop_for_configuration(problems)
    return PublishResource(realm, limits["max_body_bytes"], limits["max_batch"])
