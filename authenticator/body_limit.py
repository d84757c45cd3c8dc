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
proxy: the client, via the proxy; authenticator/peers.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from twisted.logger import Logger
from twisted.web import http, server, static, wsgi

from .hardening import clip
from .peers import client_address

# Any path that declares nothing: more than any form or JSON body our paths take, far less than a
# worker's memory (the WebSocket's max_message_size is the same).
DEFAULT_MAX_BYTES = 65536
DEFAULT_ADVICE = "Send less per request."
TOO_LARGE = (
    b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)

log = Logger()


@dataclass(frozen=True)
class Bound:
    max_bytes: int
    error: str | None = None  # an error URI: the answer is {"error": error, "message": text}; else {"error": text}
    advice: str | None = None
    refused: Callable[[object, int], None] | None = None

    def answer(self) -> bytes:
        return json.dumps(too_large_answer(self.max_bytes, self.error, self.advice)).encode()


_state: dict = {"installed": False, "paths": {}, "trusted": frozenset()}


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
      decided here, and a declared length over it refused;
    - ``twisted.web.server.Request.handleContentChunk``: each decoded piece of the body
      (identity or chunked), counted against the bound;
    - ``twisted.web.server.Request.process``: not run for a refused request.

    The path is routed with ``twisted.web.server.unquote`` and ``Site.getResourceFor``, as
    ``requestReceived`` and ``process`` will route it. A target that is missing raises here.
    """
    if _state["installed"]:
        return
    for owner, name in ((server.Request, "gotLength"), (server.Request, "handleContentChunk"),
                        (server.Request, "process"), (server.Site, "getResourceFor"), (server, "unquote"),
                        (http.HTTPChannel, "allHeadersReceived")):  # fmt: skip
        if not callable(getattr(owner, name, None)):
            raise RuntimeError(f"authenticator.body_limit: {owner.__name__}.{name} is gone (Twisted changed): "
                               "request bodies cannot be bounded")  # fmt: skip
    got_length, handle_chunk, process = (
        server.Request.gotLength,
        server.Request.handleContentChunk,
        server.Request.process,
    )

    def bounded_got_length(request, length):
        if length == 0:  # no body (GET, a WebSocket upgrade): nothing to bound, no routing
            return got_length(request, length)
        bound = _bound(request)
        if length is not None and length > bound.max_bytes:
            request.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after the 413
            _refuse(request, bound, f"Content-Length {length} over {bound.max_bytes} bytes, refused unread")
            return got_length(request, 0)  # nothing of it is kept
        # chunked (no length): at most the bound is kept, in memory when it is small
        return got_length(request, length if length is not None else bound.max_bytes)

    def bounded_chunk(request, data):
        if getattr(request, "_body_refused", False):
            return
        bound = _bound(request)
        request._body_left -= len(data)
        if request._body_left < 0:
            _refuse(request, bound, f"chunked body past {bound.max_bytes} bytes, cut off while it arrived")
            return
        handle_chunk(request, data)

    def process_unless_refused(request):
        if not getattr(request, "_body_refused", False):
            return process(request)
        if not isinstance(request.channel, http.HTTPChannel):  # an HTTP/2 stream: answered on it now
            body = request._body_bound.answer()
            request.setResponseCode(413)
            for name, value in ((b"content-type", b"application/json"), (b"cache-control", b"no-store"),
                                (b"content-length", b"%d" % len(body))):  # fmt: skip
                request.setHeader(name, value)
            request.write(body)
            request.finish()
        return None  # HTTP/1.x: answered 413 already, the connection is closing

    server.Request.gotLength = bounded_got_length
    server.Request.handleContentChunk = bounded_chunk
    server.Request.process = process_unless_refused
    _state["installed"] = True


def _bound(request) -> Bound:
    """The request's bound, decided once, at its first body byte or its declared length."""
    bound = getattr(request, "_body_bound", None)
    if bound is None:
        resource, prepath = _route(request)
        bound = request._body_bound = _bound_of(resource, prepath, request.channel.site.resource)
        request._body_left = bound.max_bytes
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


def _refuse(request, bound: Bound, detail: str) -> None:
    """Answer 413 and close. Over HTTP/1.x Twisted handles one request of a connection at a time
    (later pipelined ones wait unread), so nothing else is being written on it; an HTTP/2 stream
    is answered when it ends (process), its body dropped meanwhile."""
    request._body_refused = True
    request._body_bound = bound
    log.warn(
        "http request refused: status=413 reason=too_large detail={detail} path={path} peer={peer}",
        detail=detail, path=clip(request.uri.decode("latin-1"), 200), peer=request_peer(request, _state["trusted"]),
    )  # fmt: skip
    if bound.refused is not None:
        bound.refused(request, bound.max_bytes)
    channel = request.channel
    if isinstance(channel, http.HTTPChannel) and channel.transport is not None:
        body = bound.answer()
        channel.transport.write(TOO_LARGE % (len(body), body))
        channel.loseConnection()


def request_peer(request, trusted: frozenset[str]) -> str:
    """The client of an HTTP request for a log line: its TCP peer, or behind a trusted proxy the
    client that X-Forwarded-For names, via the proxy (authenticator/peers.py)."""
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    peer = f"{host}:{getattr(address, 'port', '')}" if host else str(address)
    forwarded = request.getHeader(b"x-forwarded-for")
    return client_address(peer, forwarded.decode("latin-1") if forwarded else None, trusted)
