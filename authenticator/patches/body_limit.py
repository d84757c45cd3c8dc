"""One bound on HTTP request bodies, for every path of every worker, enforced while they arrive.

Twisted Web takes a request's whole body (into a temporary file past 100 KB) before any resource
sees it, with no limit, and some resources then read all of it into memory: Autobahn's
``WebSocketResource`` (``/ws``), Crossbar's ``reverseproxy`` (every path a proxy worker
forwards). A resource's own check comes after the bytes were taken. Here every request that has
a body gets a bound before the first byte of it is kept:

- the bound of the resource Twisted will render the request with, found the way Twisted finds it
  (the request target split at ``?`` and cut at ``/``, each segment percent-decoded, the tree
  walked from the site's root; so ``/%70ublish`` is ``/publish``, and ``//publish`` or
  ``/PUBLISH`` are whatever Twisted makes of them, not what a string match would);
- a resource (or the WSGI application of a ``wsgi`` path) declares its own with an int
  ``max_body_bytes`` (HTTP publishing's ``max_body_bytes``, the demo issuer's 4 KiB), optionally
  ``too_large_error`` (an error URI: the answer is ``{"error", "message"}``), ``too_large_advice``
  (a sentence for the answer) and ``body_refused(request, limit)`` (told of each refusal);
- a top-level path named to :func:`declare_path` (a proxy worker's forwarded paths) has that one;
- a WebSocket path or static files take no body: 0;
- anything else: :data:`DEFAULT_MAX_BYTES`.

A declared ``Content-Length`` over the bound is answered 413 before a byte of the body is read
(and no ``100 Continue`` is sent); a chunked body is cut off with 413 when it passes the bound.
Both close the connection. Each refusal is one warn line naming the client (behind a trusted
proxy: the client, via the proxy; authenticator/core/peer_address.py).

A bound on size alone still let a body be held without end: 300 connections each sending 65,000
of a declared 65,536 bytes, then one byte every 5 s, were all open after 25 s (Twisted's idle
timeout of 15 s starts again at every byte), each holding its 64 KiB. So also:

- the whole body must arrive within :data:`BODY_DEADLINE` seconds of the end of its headers, or
  the request is answered 408 (JSON, saying what to do) and the connection closed (an HTTP/2
  stream: reset), with one warn line naming the client;
- a worker holds at most :data:`MAX_BUFFERED_BYTES` of bodies in flight, counted from the
  declared length (a chunked body: as it grows) until the request is answered or its connection
  lost: a body past it is refused 503 with ``Retry-After`` (unread, when its length is
  declared), and the connection closed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from twisted.logger import Logger
from twisted.web import http, server, static, wsgi

from authenticator.core.logtext import clip
from authenticator.core.peer_address import request_peer

# Any path that declares nothing: more than any form or JSON body our paths take, far less than a
# worker's memory (the WebSocket's max_message_size is the same).
DEFAULT_MAX_BYTES = 65536
DEFAULT_ADVICE = "Send less per request."
# Seconds from the end of a request's headers by which its whole body must have arrived. Why 10:
# the largest body a shipped path takes is 64 KiB (/publish, and the default), which takes 9.4 s
# over a 56 kbit/s link, slower than any link a real client of this service still uses; a body
# slower than that is a broken client or one holding the worker's memory on purpose (Twisted's
# idle timeout, 15 s, starts again at every byte and never ends a trickle). It ends each held
# body within 10 s, so what MAX_BUFFERED_BYTES lets in is free again within 10 s. A path that
# declares a much larger bound needs clients fast enough to send it in this time.
BODY_DEADLINE = 10.0
# Body bytes one worker holds for the requests in flight, at most (each counted from its
# declared length, a chunked body as it grows, until the request is answered or its connection
# lost). 64 MiB: 1,024 bodies of the largest shipped bound at once, far more than the
# legitimate load of a worker (a publish body is answered in milliseconds) and far less than the
# memory it has. Past it a new body is refused 503 with Retry-After: the deadline frees the held
# ones within BODY_DEADLINE.
MAX_BUFFERED_BYTES = 64 * 1024 * 1024
RETRY_AFTER = int(BODY_DEADLINE)
STATUS_LINES = {
    400: b"400 Bad Request",
    408: b"408 Request Timeout",
    413: b"413 Request Entity Too Large",
    503: b"503 Service Unavailable",
}
REFUSAL = (
    b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
    b"Connection: close\r\n%sContent-Length: %d\r\n\r\n%s"
)
TOO_SLOW_MESSAGE = (
    f"The request body did not arrive within {BODY_DEADLINE:.0f} seconds of its headers. Send the whole body "
    "right after the headers, or retry over a faster connection."
)
BUSY_MESSAGE = "The server holds as many request bodies as it takes at once. Retry after the seconds in Retry-After."
# The error URIs of a path that answers {"error": <uri>, "message": ...} (/publish), per status.
ERROR_URIS = {408: "wamp.error.timeout", 503: "wamp.error.unavailable"}
# A request without a Host header (HTTP/1.0 may omit it) is answered 400 before it is routed, in every
# worker: a proxy's reverseproxy read the missing header and answered 500 with a traceback in the log.
NO_HOST_MESSAGE = "The request has no Host header. Send a Host header."

log = Logger()


@dataclass(frozen=True)
class Bound:
    max_bytes: int
    error: str | None = None  # an error URI: the answer is {"error": error, "message": text}; else {"error": text}
    advice: str | None = None
    refused: Callable[[object, int], None] | None = None

    def answer(self, status: int = 413) -> bytes:
        if status == 400:
            return json.dumps({"error": NO_HOST_MESSAGE}).encode()
        if status == 413:
            return json.dumps(too_large_answer(self.max_bytes, self.error, self.advice)).encode()
        message = TOO_SLOW_MESSAGE if status == 408 else BUSY_MESSAGE
        return json.dumps(
            {"error": ERROR_URIS[status], "message": message} if self.error else {"error": message}
        ).encode()


# "buffered": the body bytes this worker holds for requests in flight (MAX_BUFFERED_BYTES);
# "clock": what schedules the deadlines (the reactor; a test's Clock).
_WRAPPED = ("gotLength", "handleContentChunk", "process")  # of twisted.web.server.Request
_state: dict = {"installed": False, "paths": {}, "trusted": frozenset(), "buffered": 0, "clock": None}


def too_large_answer(limit: int, error: str | None = None, advice: str | None = None) -> dict:
    """The JSON answer of a 413 for a path whose bound is `limit`."""
    if limit == 0:
        message = "This path takes no request body."
    else:
        message = f"The request body is larger than {limit} bytes. {advice or DEFAULT_ADVICE}"
    return {"error": error, "message": message} if error else {"error": message}


def declare_path(name: str, max_bytes: int, *, error: str | None = None, advice: str | None = None) -> None:
    """Bound the bodies of requests routed to the top-level path `name` (e.g. "publish") of this
    process's web transports, where its resource declares nothing (a proxy's ``reverseproxy``)."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise ValueError(f"the body bound of /{name} must be a whole number of bytes, not {max_bytes!r}")
    _state["paths"][name.encode()] = Bound(max_bytes, error, advice)


def trust_forwarded_for(trusted: Iterable[str]) -> None:
    """The proxies whose X-Forwarded-For names the client in the refusal lines (``trusted_proxies``)."""
    _state["trusted"] = frozenset(trusted)


def install() -> None:
    """Bound every request body of this process while it arrives (idempotent): the patch.

    Targets (Twisted 26.10.0, verified; authenticator/patches/inventory.py, "request-bodies"):

    - ``twisted.web.server.Request.gotLength``: called by ``HTTPChannel.allHeadersReceived`` once
      the headers are in (the request line is still only on the channel: ``_command``, ``_path``,
      ``_version``), before ``100 Continue`` and before any byte of the body; the bound is
      decided here, and a declared length over it refused; a request without a Host header is
      answered 400 here, before it is routed (:data:`NO_HOST_MESSAGE`);
    - ``twisted.web.server.Request.handleContentChunk``: each decoded piece of the body
      (identity or chunked), counted against the bound;
    - ``twisted.web.server.Request.process``: not run for a refused request; for the others, the
      body is complete: its deadline is cancelled.

    The deadline is a ``callLater`` from ``gotLength``; what a body holds is given back on
    ``Request.notifyFinish`` (answered, or its connection lost): no further target.

    The path is routed with ``twisted.web.server.unquote`` and ``Site.getResourceFor``, as
    ``requestReceived`` and ``process`` will route it. A target that is missing raises here.
    """
    if _state["installed"]:
        return
    for owner, name in ((server.Request, "gotLength"), (server.Request, "handleContentChunk"),
                        (server.Request, "process"), (server.Site, "getResourceFor"), (server, "unquote"),
                        (http.HTTPChannel, "allHeadersReceived")):  # fmt: skip
        if not callable(getattr(owner, name, None)):
            raise RuntimeError(f"authenticator.patches.body_limit: {owner.__name__}.{name} is gone (Twisted changed): "
                               "request bodies cannot be bounded")  # fmt: skip
    # Twisted's own methods, kept from the first install (a test installs again on top of them).
    originals = _state.setdefault("originals", {name: getattr(server.Request, name) for name in _WRAPPED})
    got_length, handle_chunk, process = (
        originals["gotLength"],
        originals["handleContentChunk"],
        originals["process"],
    )

    def bounded_got_length(request, length):
        if not request.requestHeaders.hasHeader(b"host"):
            _refuse_without_host(request)
            return got_length(request, 0)  # nothing of a body is kept
        if length == 0:  # no body (GET, a WebSocket upgrade): nothing to bound, no routing
            return got_length(request, length)
        bound = _bound(request)
        if length is not None and length > bound.max_bytes:
            request.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after the 413
            _refuse(request, bound, f"Content-Length {length} over {bound.max_bytes} bytes, refused unread")
            return got_length(request, 0)  # nothing of it is kept
        _track(request, length)
        if length is not None and not _reserve(request, length):
            request.requestHeaders.removeHeader(b"expect")
            _refuse(request, bound, f"Content-Length {length}, refused unread", 503)
            return got_length(request, 0)
        # chunked (no length): at most the bound is kept, in memory when it is small
        return got_length(request, length if length is not None else bound.max_bytes)

    def bounded_chunk(request, data):
        if getattr(request, "_crossbar_jwt_body_refused", False):
            return
        bound = _bound(request)
        request._crossbar_jwt_body_left -= len(data)
        request._crossbar_jwt_body_received = getattr(request, "_crossbar_jwt_body_received", 0) + len(data)
        if request._crossbar_jwt_body_left < 0:
            _refuse(request, bound, f"chunked body past {bound.max_bytes} bytes, cut off while it arrived")
            return
        if request._crossbar_jwt_body_chunked and not _reserve(request, len(data)):
            received = request._crossbar_jwt_body_received
            _refuse(request, bound, f"chunked body at {received} bytes, cut off while it arrived", 503)
            return
        handle_chunk(request, data)

    def process_unless_refused(request):
        deadline = getattr(request, "_crossbar_jwt_body_deadline", None)
        if deadline is not None and deadline.active():
            deadline.cancel()  # the body is complete
        if not getattr(request, "_crossbar_jwt_body_refused", False):
            return process(request)
        if not isinstance(request.channel, http.HTTPChannel):  # an HTTP/2 stream: answered on it now
            _answer_on_stream(request)
        return None  # HTTP/1.x: answered already, the connection is closing

    server.Request.gotLength = bounded_got_length
    server.Request.handleContentChunk = bounded_chunk
    server.Request.process = process_unless_refused
    _state["installed"] = True


def _bound(request) -> Bound:
    """The request's bound, decided once, at its first body byte or its declared length."""
    bound = getattr(request, "_crossbar_jwt_body_bound", None)
    if bound is None:
        resource, prepath = _route(request)
        bound = request._crossbar_jwt_body_bound = _bound_of(resource, prepath, request.channel.site.resource)
        request._crossbar_jwt_body_left = bound.max_bytes
    return bound


def _route(request) -> tuple[object | None, list[bytes]]:
    """The resource Twisted will render the request with, and the path segments that led there.

    As ``Request.requestReceived`` and ``server.Request.process`` do it (Twisted 26.10.0): the
    target up to ``?`` is the path (an absolute-form target such as ``http://host/publish`` stays
    whole: Twisted routes it as segments of that text), its segments after the first ``/`` are
    percent-decoded one by one, and ``Site.getResourceFor`` walks the tree (no ``.``/``..``
    removal, no case folding: Twisted does none). ``process`` does all of it again for the render
    and sets every attribute set here anew.
    """
    channel = request.channel
    if isinstance(channel, http.HTTPChannel):
        command, target, version = channel._command, channel._path, channel._version  # gone: AttributeError, loud
    else:  # an HTTP/2 stream (over TLS with ALPN h2): the pseudo-headers are parsed already
        command, target, version = channel.command, channel.path, b"HTTP/2"
    request.method, request.uri, request.clientproto = command, target, version
    request.path = target.split(b"?", 1)[0]
    if request.path == b"*":
        return None, []
    request.prepath = []
    request.postpath = list(map(server.unquote, request.path[1:].split(b"/")))
    try:
        return channel.site.getResourceFor(request), list(request.prepath)
    except Exception:  # noqa: BLE001 - process() meets the same failure and answers it; the default holds
        return None, list(request.prepath)


def _bound_of(resource, prepath: list[bytes], root) -> Bound:
    declared = _declared(resource)
    if declared is not None:
        return declared
    if prepath and prepath[0] in _state["paths"] and prepath[0] in getattr(root, "children", {}):
        return _state["paths"][prepath[0]]
    if isinstance(resource, _takes_no_body()):
        return Bound(0)
    return Bound(DEFAULT_MAX_BYTES)


def _declared(resource) -> Bound | None:
    holder = resource._application if isinstance(resource, wsgi.WSGIResource) else resource
    limit = getattr(holder, "max_body_bytes", None)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        return None
    return Bound(limit, getattr(holder, "too_large_error", None), getattr(holder, "too_large_advice", None),
                 getattr(holder, "body_refused", None))  # fmt: skip


def _takes_no_body() -> tuple[type, ...]:
    from autobahn.twisted.resource import WebSocketResource

    return (WebSocketResource, static.File)


def _track(request, length: int | None) -> None:
    """A body is coming (`length` declared, or None: chunked): start its deadline, and release
    what it holds when the request is answered or its connection lost (Twisted fires
    notifyFinish for both)."""
    request._crossbar_jwt_body_reserved = 0
    request._crossbar_jwt_body_received = 0
    request._crossbar_jwt_body_declared = length
    request._crossbar_jwt_body_chunked = length is None
    clock = _state["clock"]
    if clock is None:
        from twisted.internet import reactor as clock
    request._crossbar_jwt_body_deadline = clock.callLater(BODY_DEADLINE, _too_slow, request)
    request.notifyFinish().addBoth(_released, request)


def _reserve(request, size: int) -> bool:
    """Count `size` more body bytes as held by this worker, unless that passes the cap."""
    if _state["buffered"] + size > MAX_BUFFERED_BYTES:
        return False
    _state["buffered"] += size
    request._crossbar_jwt_body_reserved += size
    return True


def _released(result, request):
    deadline = getattr(request, "_crossbar_jwt_body_deadline", None)
    if deadline is not None and deadline.active():
        deadline.cancel()
    _state["buffered"] -= getattr(request, "_crossbar_jwt_body_reserved", 0)
    request._crossbar_jwt_body_reserved = 0
    return None  # a lost connection's failure is handled: nothing to log


def buffered_bytes() -> int:
    """The body bytes this worker holds for requests in flight."""
    return _state["buffered"]


def _too_slow(request) -> None:
    """The deadline passed with the body incomplete: 408, and the connection closed."""
    if getattr(request, "_crossbar_jwt_body_refused", False) or getattr(request, "_disconnected", False):
        return
    of = "" if request._crossbar_jwt_body_declared is None else f" of {request._crossbar_jwt_body_declared}"
    received = request._crossbar_jwt_body_received
    detail = f"body incomplete {BODY_DEADLINE:.0f} s after its headers ({received}{of} bytes)"
    _refuse(request, request._crossbar_jwt_body_bound, detail, 408)
    if not isinstance(request.channel, http.HTTPChannel):
        # An HTTP/2 stream is reset (RST_STREAM), not answered: Twisted forgets a stream once its
        # answer is sent, and DATA the client still sends on it raised KeyError in Twisted's
        # connection (a traceback, the connection dropped). A reset stream's DATA is ignored by
        # the h2 state machine; Twisted does not tell the request, so it is told here (what it
        # holds is given back).
        from twisted.internet.error import ConnectionAborted
        from twisted.python.failure import Failure

        request.channel.abortConnection()
        request.connectionLost(Failure(ConnectionAborted("request body too slow")))


def _answer_on_stream(request) -> None:
    if getattr(request, "_crossbar_jwt_body_answered", False):
        return
    request._crossbar_jwt_body_answered = True
    status = request._crossbar_jwt_body_status
    body = request._crossbar_jwt_body_bound.answer(status)
    request.setResponseCode(status)
    for name, value in ((b"content-type", b"application/json"), (b"cache-control", b"no-store"),
                        (b"content-length", b"%d" % len(body))):  # fmt: skip
        request.setHeader(name, value)
    if status == 503:
        request.setHeader(b"retry-after", b"%d" % RETRY_AFTER)
    request.write(body)
    request.finish()


REASONS = {408: "too_slow", 413: "too_large", 503: "too_many_bodies"}


def _refuse(request, bound: Bound, detail: str, status: int = 413) -> None:
    """Answer `status` (413, 408, 503) and close. Over HTTP/1.x Twisted handles one request of a
    connection at a time (later pipelined ones wait unread), so nothing else is being written on
    it; an HTTP/2 stream is answered when it ends (process) or at its deadline, its body dropped
    meanwhile."""
    request._crossbar_jwt_body_refused = True
    request._crossbar_jwt_body_bound = bound
    request._crossbar_jwt_body_status = status
    log.warn(
        "http request refused: status={status} reason={reason} detail={detail} path={path} peer={peer}",
        status=status, reason=REASONS[status], detail=detail, path=clip(request.uri.decode("latin-1"), 200),
        peer=request_peer(request, _state["trusted"]),
    )  # fmt: skip
    if status == 413 and bound.refused is not None:
        bound.refused(request, bound.max_bytes)
    channel = request.channel
    if isinstance(channel, http.HTTPChannel) and channel.transport is not None:
        body = bound.answer(status)
        retry = b"Retry-After: %d\r\n" % RETRY_AFTER if status == 503 else b""
        channel.transport.write(REFUSAL % (STATUS_LINES[status], retry, len(body), body))
        channel.loseConnection()


def _refuse_without_host(request) -> None:
    """400 before routing, and the connection closed (an HTTP/2 stream: answered when it ends); at
    most protocol_errors.BURST lines per window, the next line counts those not logged."""
    from authenticator.patches.protocol_errors import Budget

    request._crossbar_jwt_body_refused, request._crossbar_jwt_body_status = True, 400
    request._crossbar_jwt_body_bound = Bound(0)
    budget = _state.setdefault("no_host", Budget())
    if budget.take():
        channel = request.channel
        target = channel._path if isinstance(channel, http.HTTPChannel) else getattr(channel, "path", b"")
        log.warn(
            "http request refused: status=400 reason=no_host_header path={path} peer={peer} not_logged_before={more}",
            path=clip((target or b"").decode("latin-1"), 200), peer=request_peer(request, _state["trusted"]),
            more=budget.drain(),
        )  # fmt: skip
    channel = request.channel
    if isinstance(channel, http.HTTPChannel) and channel.transport is not None:
        body = Bound(0).answer(400)
        channel.transport.write(REFUSAL % (STATUS_LINES[400], b"", len(body), body))
        channel.loseConnection()
