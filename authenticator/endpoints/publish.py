"""POST /publish: a backend publishes over HTTP with a token, under the same policy as WebSocket clients.

The token (``Authorization: Bearer <JWT>``) goes through the same admission as a WebSocket login
(authenticator/server/admission.py: keys, claim rules, revocation, single use, reasons); each publication
is decided by the same authorizer, for the token's authid and roles; it is published from an
embedded session of that identity (authenticator/endpoints/publisher_pool.py), so subscribers see it as
from a WAMP publisher. All on the reactor, as Crossbar's own HTTP bridge: no thread per request.

Node config, a path of the router worker's web transport (Crossbar's ``resource`` path type)::

    "publish": {"type": "resource", "classname": "authenticator.endpoints.publish.publish_resource",
                "extra": {"realm": "realm1", "max_body_bytes": 65536, "max_batch": 100}}

Answers: docs/publishing.md.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.task import LoopingCall

from authenticator.core.logtext import clip
from authenticator.core.publish_request import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_BYTES,
    INVALID_ARGUMENT,
    NOT_AUTHORIZED,
    BodyProblem,
    Publication,
    Refusal,
    batch_answer,
    parse_body,
    single_answer,
)
from authenticator.core.reasons import Reason, Rejected, as_rejection
from authenticator.core.tokens import Identity
from authenticator.core.unknown_keys import unknown_keys
from authenticator.endpoints import metrics
from authenticator.endpoints.bearer_json import Answer, BearerJsonResource
from authenticator.endpoints.publisher_pool import PublisherPool
from authenticator.patches import body_limit

# The realm's publishing service, by realm: filled by the authenticator component when it joins.
# Crossbar hands a ``resource`` path nothing but its own extra, so the two meet here, in the one
# router worker process they share.
SERVICES: dict[str, HttpPublishing] = {}
RESOURCE_KEYS = ("realm", "max_body_bytes", "max_batch")
BEARER_ADVICE = (
    "Send the JWT in an 'Authorization: Bearer <token>' header (a cookie is never taken here: a browser "
    "would attach it to any site's form)."
)
PUBLISHED = metrics.HTTP_PUBLISHES.labels("published", "none")  # the hot path: looked up once
TOKEN_STATUS = {Reason.STORE_UNAVAILABLE: 503, Reason.INTERNAL_ERROR: 500}
TOO_LARGE_ADVICE = "Send less per request (a batch can be split)."


class HttpPublishing:
    """The realm's HTTP publishing: token -> identity -> decisions -> publications -> answer."""

    def __init__(self, realm: str, router, admission, authorizer, settings, log) -> None:
        self.realm = realm
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

    def handle(self, token: str | None, body: bytes, peer: str, max_batch: int) -> Answer | Deferred:
        if token is None:
            return self._token_refused(Rejected(Reason.MISSING_TOKEN), peer)
        try:
            checked = self._admission.check(token)
        except Exception as error:  # noqa: BLE001 - any failure must become a clean refusal
            return self._token_refused(as_rejection(error), peer)
        if isinstance(checked, Deferred):
            return checked.addCallbacks(
                self._admitted, lambda failure: self._token_refused(as_rejection(failure.value), peer),
                callbackArgs=(body, peer, max_batch),
            )  # fmt: skip
        return self._admitted(checked, body, peer, max_batch)

    def _admitted(self, identity: Identity, body: bytes, peer: str, max_batch: int) -> Answer | Deferred:
        try:
            batch, items = parse_body(body, max_batch=max_batch, max_uri_length=self._settings.limits.max_uri_length)
        except BodyProblem as problem:
            self._log_refusal(400, INVALID_ARGUMENT, str(problem), identity.authid, peer)
            metrics.HTTP_PUBLISHES.labels("invalid", "none").inc()
            return Answer(400, Refusal(INVALID_ARGUMENT, str(problem)).answer())
        results = [self._publish_guarded(identity, item, peer) for item in items]
        if not batch:
            (result,) = results
            return result.addCallback(self._single) if isinstance(result, Deferred) else self._single(result)
        done = DeferredList([maybeDeferred(lambda r=r: r) for r in results], consumeErrors=True)
        return done.addCallback(self._batch)

    def _publish_guarded(self, identity: Identity, item: Publication | Refusal, peer: str):
        """One publication; a failure of its own is its refusal, never the batch's (the ones
        before it were published: failing the request would have the client publish them twice)."""
        try:
            return self._publish_one(identity, item, peer)
        except Exception as error:  # noqa: BLE001 - logged by its type only
            self._log.warn("http publish failed: internal error {kind}", kind=type(error).__name__)
            metrics.HTTP_PUBLISHES.labels("failed", "none").inc()
            return Refusal("wamp.error.runtime_error", "The router could not publish this; retry, or read its log.")

    def _publish_one(self, identity: Identity, item: Publication | Refusal, peer: str):
        if isinstance(item, Refusal):
            self._log_refusal(400, item.error, item.message, identity.authid, peer)
            metrics.HTTP_PUBLISHES.labels("invalid", "none").inc()
            return item
        decision = self._authorizer.decide(
            authrole=identity.role, authid=identity.authid, roles=identity.roles, action="publish",
            uri=item.topic, options=item.options, via="http",
        )  # fmt: skip
        if not decision.allow:
            metrics.HTTP_PUBLISHES.labels("denied", "none").inc()
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

    @staticmethod
    def _published(publication_id: int) -> int:
        PUBLISHED.inc()
        return publication_id

    def _broker_refused(self, failure, identity: Identity, item: Publication, peer: str) -> Refusal:
        error = getattr(failure.value, "error", None)
        if error == NOT_AUTHORIZED:  # the broker's own refusals (e.g. wamp.* topics)
            self._log_refusal(403, error, "refused by the broker", identity.authid, peer)
            metrics.HTTP_PUBLISHES.labels("denied", "none").inc()
            return Refusal(NOT_AUTHORIZED, f"The router refused to publish to '{clip(item.topic, 200)}'.")
        if error in (INVALID_ARGUMENT, "wamp.error.invalid_uri"):
            text = clip(failure.value.args[0] if failure.value.args else error, 300)
            self._log_refusal(400, error, text, identity.authid, peer)
            metrics.HTTP_PUBLISHES.labels("invalid", "none").inc()
            return Refusal(INVALID_ARGUMENT, text)  # a permanent error: 400, not "retry"
        kind = error or type(failure.value).__name__
        self._log.warn("http publish failed: {kind} topic={topic} authid={authid} peer={peer}", kind=clip(kind, 100),
                       topic=clip(item.topic, 200), authid=identity.authid, peer=peer)  # fmt: skip
        metrics.HTTP_PUBLISHES.labels("failed", "none").inc()
        return Refusal("wamp.error.runtime_error", "The router could not publish this; retry, or read the router log.")

    @staticmethod
    def _single(result: int | Refusal) -> Answer:
        status, body = single_answer(result)
        return Answer(status, body)

    @staticmethod
    def _batch(results: list) -> Answer:
        items = [value if ok else Refusal("wamp.error.runtime_error", "internal error") for ok, value in results]
        status, body = batch_answer(items)
        return Answer(status, body)

    def _token_refused(self, rejection: Rejected, peer: str) -> Answer:
        status = TOKEN_STATUS.get(rejection.reason, 401)
        metrics.HTTP_PUBLISHES.labels("token_refused", rejection.reason.code).inc()
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

    def __init__(self, realm: str, max_body_bytes: int, max_batch: int) -> None:
        super().__init__(max_body_bytes)
        self.realm, self.max_batch = realm, max_batch

    def service(self) -> HttpPublishing | None:
        return SERVICES.get(self.realm)

    def unavailable_message(self) -> str:
        return f"HTTP publishing on realm '{self.realm}' is not ready: the authenticator has not joined it."

    def handle(self, service: HttpPublishing, token: str | None, body: bytes, peer: str) -> Answer | Deferred:
        return service.handle(token, body, peer, self.max_batch)

    def token_refused(self, service: HttpPublishing, rejection: Rejected, peer: str) -> Answer:
        return service._token_refused(rejection, peer)

    def count(self, outcome: str) -> None:
        metrics.HTTP_PUBLISHES.labels(outcome, "none").inc()

    def trusted_proxies(self) -> frozenset[str]:
        service = SERVICES.get(self.realm)
        return getattr(service, "trusted_proxies", frozenset())

    @classmethod
    def body_refused(cls, request, limit: int) -> None:
        """body_limit answered 413 before the body was read (and logged it): counted."""
        metrics.HTTP_PUBLISHES.labels("too_large", "none").inc()


def publish_resource(extra: Mapping) -> PublishResource:
    """Factory of the ``resource`` path (Crossbar calls it with the path's ``extra``)."""
    from authenticator.config.stop import stop_for_configuration

    extra = dict(extra or {})
    where = "the HTTP publish path's extra (authenticator.endpoints.publish.publish_resource)"
    problems = []
    unknown = unknown_keys(where, extra, RESOURCE_KEYS)
    if unknown:
        problems.append(unknown)
    realm = extra.get("realm")
    if not isinstance(realm, str) or not realm:
        problems.append(f"{where}: 'realm' must name the realm to publish on, such as \"realm1\"")
    limits = {}
    for key, default in (("max_body_bytes", DEFAULT_MAX_BODY_BYTES), ("max_batch", DEFAULT_MAX_BATCH)):
        value = extra.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"{where}: '{key}' must be a positive whole number (default {default})")
        limits[key] = value
    if problems:
        stop_for_configuration(problems)
    return PublishResource(realm, limits["max_body_bytes"], limits["max_batch"])
