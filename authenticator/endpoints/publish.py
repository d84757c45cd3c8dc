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

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import Resource

from authenticator.core.carriers import bearer_token
from authenticator.core.logtext import clip
from authenticator.core.peer_address import request_peer
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


@dataclass
class Answer:
    status: int
    body: object
    headers: dict = field(default_factory=dict)
    # Set on a refusal the resource made itself, before the service, and not logged yet: its reason.
    unlogged_reason: str | None = None


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


class PublishResource(Resource):
    isLeaf = True
    # The body bound this path declares to authenticator/patches/body_limit.py (with max_body_bytes): the
    # bound holds while the body arrives, the answer is one of ours.
    too_large_error = INVALID_ARGUMENT
    too_large_advice = TOO_LARGE_ADVICE

    def __init__(self, realm: str, max_body_bytes: int, max_batch: int) -> None:
        super().__init__()
        self.realm, self.max_body_bytes, self.max_batch = realm, max_body_bytes, max_batch
        self.log = Logger()

    @staticmethod
    def body_refused(request, limit: int) -> None:
        """body_limit answered 413 before the body was read (and logged it): counted."""
        metrics.HTTP_PUBLISHES.labels("too_large", "none").inc()

    def render(self, request):
        request._crossbar_jwt_publish_realm = self.realm
        peer = _peer(request)
        if request.method != b"POST":
            request.setHeader(b"allow", b"POST")
            return self._finish(request, _refused(405, "Only POST publishes here.", "method"), peer)
        problem = _content_type_problem(request.getHeader(b"content-type"))
        if problem is not None:
            return self._finish(request, _refused(400, problem, "invalid"), peer)
        body = request.content.read(self.max_body_bytes + 1)
        if len(body) > self.max_body_bytes:  # body_limit refuses it first; this holds without it too
            message = body_limit.too_large_answer(self.max_body_bytes, INVALID_ARGUMENT, TOO_LARGE_ADVICE)["message"]
            return self._finish(request, _refused(413, message, "too_large"), peer)
        service = SERVICES.get(self.realm)
        if service is None:
            message = f"HTTP publishing on realm '{self.realm}' is not ready: the authenticator has not joined it."
            answer = _refused(503, message, "unavailable", error="wamp.error.no_such_realm")
            answer.headers["Retry-After"] = "1"
            return self._finish(request, answer, peer)
        try:
            token = _bearer_token(request.requestHeaders.getRawHeaders(b"authorization") or [])
        except Rejected as rejection:
            return self._finish(request, service._token_refused(rejection, peer), peer)
        try:
            answered = service.handle(token, body, peer, self.max_batch)
        except Exception:  # noqa: BLE001 - a bug must still be a JSON answer, logged by its type only
            answered = Failure()
        if isinstance(answered, Failure):
            return self._finish(request, self._answer_of(answered), peer)
        if not isinstance(answered, Deferred):
            return self._finish(request, answered, peer)
        outcome: list = []
        answered.addBoth(outcome.append)
        if outcome:  # an embedded publish is answered at once: no NOT_DONE_YET round
            return self._finish(request, self._answer_of(outcome[0]), peer)
        gone: list = []
        request.notifyFinish().addErrback(gone.append)  # the client went away meanwhile
        answered.addCallback(lambda _: None if gone else self._write(request, self._answer_of(outcome[0]), peer))
        return server.NOT_DONE_YET

    def _answer_of(self, result) -> Answer:
        if isinstance(result, Failure):
            self.log.warn("http publish failed: internal error {kind}", kind=type(result.value).__name__)
            answer = _refused(500, Rejected(Reason.INTERNAL_ERROR).message, "failed", error=Reason.INTERNAL_ERROR.uri)
            answer.unlogged_reason = None  # logged just above
            return answer
        return result

    def _finish(self, request, answer: Answer, peer: str) -> bytes:
        if answer.unlogged_reason is not None:
            self.log.warn(
                "http publish refused: status={status} reason={reason} detail={detail} authid=None peer={peer}",
                status=answer.status, reason=answer.unlogged_reason, detail=clip(answer.body.get("message"), 300),
                peer=peer,
            )  # fmt: skip
        return self._body(request, answer)

    def _write(self, request, answer: Answer, peer: str) -> None:
        request.write(self._body(request, answer))
        request.finish()

    def _body(self, request, answer: Answer) -> bytes:
        request.setResponseCode(answer.status)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        for name, value in answer.headers.items():
            request.setHeader(name.encode("ascii"), value.encode("ascii"))
        body = json.dumps(answer.body, separators=(",", ":")).encode("utf-8")
        request.setHeader(b"content-length", b"%d" % len(body))
        return body


def _refused(status: int, message: str, outcome: str, *, error: str = INVALID_ARGUMENT) -> Answer:
    metrics.HTTP_PUBLISHES.labels(outcome, "none").inc()
    return Answer(status, {"error": error, "message": message}, unlogged_reason=outcome)


def _bearer_token(values: list[bytes]) -> str | None:
    if not values:
        return None
    if len(values) > 1:
        raise Rejected(Reason.MALFORMED_TOKEN, "send one Authorization header")
    token = bearer_token(values[0].decode("latin-1"))
    if not token:
        raise Rejected(Reason.MISSING_TOKEN, "the Authorization header must be 'Bearer <token>'")
    return token


def _content_type_problem(value: bytes | None) -> str | None:
    if value is None:
        return None  # curl --data-binary @file sends none; the body must still be JSON
    media, _, params = value.decode("latin-1").partition(";")
    charset = params.strip().lower()
    if media.strip().lower() != "application/json" or charset not in ("", "charset=utf-8", "charset=utf8"):
        return (
            f"Content-Type '{clip(value.decode('latin-1'), 100)}' is not accepted: send "
            "'Content-Type: application/json' with a UTF-8 JSON body."
        )
    return None


def _peer(request) -> str:
    service = SERVICES.get(getattr(request, "_crossbar_jwt_publish_realm", None))
    return request_peer(request, getattr(service, "trusted_proxies", frozenset()))


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
