"""A Twisted Web resource that takes a JSON body with a Bearer token and answers JSON: the part of
every token-carrying HTTP endpoint that is not its own business. POST /publish is one
(authenticator/endpoints/publish.py); an endpoint adds its service, its answers and its metric.

What it does, in order, each refusal a JSON answer ``{"error": <URI>, "message": <what to do>}``
logged once with its reason: one method (405), a JSON content type (400), a body within the
path's bound (413; authenticator/patches/body_limit.py refuses a larger one while it arrives, this
holds without it too), a service that is ready (503 with Retry-After), one well-formed
``Authorization: Bearer`` header (core/carriers.bearer_token) — then the endpoint's ``handle``,
whose answer may come later (a Deferred: the request stays open until it does, and an answer for
a client that went away is dropped). A failure in ``handle`` is a 500 logged by its type only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import Resource

from authenticator.core.carriers import bearer_token
from authenticator.core.logtext import clip
from authenticator.core.peer_address import request_peer
from authenticator.core.reasons import Reason, Rejected
from authenticator.patches import body_limit


@dataclass
class Answer:
    status: int
    body: object
    headers: dict = field(default_factory=dict)
    # Set on a refusal the resource made itself, before the service, and not logged yet: its reason.
    unlogged_reason: str | None = None


class BearerJsonResource(Resource):
    isLeaf = True
    method = b"POST"
    wrong_method_message = "Only POST is answered here."
    # Its log lines begin with it ("http publish refused: ...").
    log_name = "http endpoint"
    # The body bound this path declares to body_limit (with max_body_bytes): the answer is one of ours.
    too_large_error = "wamp.error.invalid_argument"
    too_large_advice = "Send less per request."
    refusal_error = "wamp.error.invalid_argument"  # the error URI of the resource's own refusals

    def __init__(self, max_body_bytes: int) -> None:
        super().__init__()
        self.max_body_bytes = max_body_bytes
        self.log = Logger()

    # -- what an endpoint provides ----------------------------------------------------------------

    def service(self):
        """The service that answers, or None while it is not ready (503)."""
        raise NotImplementedError

    def unavailable_message(self) -> str:
        return "This endpoint is not ready yet; retry."

    def handle(self, service, token: str | None, body: bytes, peer: str, headers) -> Answer | Deferred:
        """`headers`: the request's headers (Twisted's Headers), for what else the endpoint reads."""
        raise NotImplementedError

    def token_refused(self, service, rejection: Rejected, peer: str) -> Answer:
        """The answer (logged and counted by the service) to an Authorization header that is not one Bearer token."""
        raise NotImplementedError

    def count(self, outcome: str) -> None:
        """Count a refusal the resource made itself (method, invalid, too_large, unavailable, failed)."""

    def trusted_proxies(self) -> frozenset[str]:
        return frozenset()

    # -- the request ------------------------------------------------------------------------------

    @classmethod
    def body_refused(cls, request, limit: int) -> None:
        """body_limit answered 413 before the body was read (and logged it)."""

    def render(self, request):
        peer = request_peer(request, self.trusted_proxies())
        if request.method != self.method:
            request.setHeader(b"allow", self.method)
            return self._finish(request, self.refused(405, self.wrong_method_message, "method"), peer)
        problem = content_type_problem(request.getHeader(b"content-type"))
        if problem is not None:
            return self._finish(request, self.refused(400, problem, "invalid"), peer)
        body = request.content.read(self.max_body_bytes + 1)
        if len(body) > self.max_body_bytes:
            answer = body_limit.too_large_answer(self.max_body_bytes, self.too_large_error, self.too_large_advice)
            return self._finish(request, self.refused(413, answer["message"], "too_large"), peer)
        service = self.service()
        if service is None:
            answer = self.refused(503, self.unavailable_message(), "unavailable", error="wamp.error.no_such_realm")
            answer.headers["Retry-After"] = "1"
            return self._finish(request, answer, peer)
        try:
            token = bearer_from_headers(request.requestHeaders.getRawHeaders(b"authorization") or [])
        except Rejected as rejection:
            return self._finish(request, self.token_refused(service, rejection, peer), peer)
        try:
            answered = self.handle(service, token, body, peer, request.requestHeaders)
        except Exception:  # noqa: BLE001 - a bug must still be a JSON answer, logged by its type only
            answered = Failure()
        if isinstance(answered, Failure):
            return self._finish(request, self._answer_of(answered), peer)
        if not isinstance(answered, Deferred):
            return self._finish(request, answered, peer)
        outcome: list = []
        answered.addBoth(outcome.append)
        if outcome:  # answered at once: no NOT_DONE_YET round
            return self._finish(request, self._answer_of(outcome[0]), peer)
        gone: list = []
        request.notifyFinish().addErrback(gone.append)  # the client went away meanwhile
        answered.addCallback(lambda _: None if gone else self._write(request, self._answer_of(outcome[0]), peer))
        return server.NOT_DONE_YET

    def refused(self, status: int, message: str, outcome: str, *, error: str | None = None) -> Answer:
        self.count(outcome)
        return Answer(status, {"error": error or self.refusal_error, "message": message}, unlogged_reason=outcome)

    def _answer_of(self, result) -> Answer:
        if isinstance(result, Failure):
            self.log.warn("{name} failed: internal error {kind}", name=self.log_name, kind=type(result.value).__name__)
            answer = self.refused(500, Rejected(Reason.INTERNAL_ERROR).message, "failed",
                                  error=Reason.INTERNAL_ERROR.uri)  # fmt: skip
            answer.unlogged_reason = None  # logged just above
            return answer
        return result

    def _finish(self, request, answer: Answer, peer: str) -> bytes:
        if answer.unlogged_reason is not None:
            self.log.warn(
                "{name} refused: status={status} reason={reason} detail={detail} authid=None peer={peer}",
                name=self.log_name, status=answer.status, reason=answer.unlogged_reason,
                detail=clip(answer.body.get("message"), 300), peer=peer,
            )  # fmt: skip
        return json_answer(request, answer)

    def _write(self, request, answer: Answer, peer: str) -> None:
        request.write(json_answer(request, answer))
        request.finish()


def json_answer(request, answer: Answer) -> bytes:
    request.setResponseCode(answer.status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    for name, value in answer.headers.items():
        request.setHeader(name.encode("ascii"), value.encode("ascii"))
    body = json.dumps(answer.body, separators=(",", ":")).encode("utf-8")
    request.setHeader(b"content-length", b"%d" % len(body))
    return body


def bearer_from_headers(values: list[bytes]) -> str | None:
    """The token of the request's one Authorization header, None without one; Rejected otherwise."""
    if not values:
        return None
    if len(values) > 1:
        raise Rejected(Reason.MALFORMED_TOKEN, "send one Authorization header")
    token = bearer_token(values[0].decode("latin-1"))
    if not token:
        raise Rejected(Reason.MISSING_TOKEN, "the Authorization header must be 'Bearer <token>'")
    return token


def content_type_problem(value: bytes | None) -> str | None:
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
