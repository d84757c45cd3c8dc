"""A bound on HTTP request bodies, enforced while they arrive.

Twisted Web buffers a request's whole body (into a temporary file past 100 KB) before any
resource sees it, with no limit: a resource's own check comes after the bytes were taken. This
bounds every request body of the worker's web transports at the largest limit our paths take
(the HTTP publish path's ``max_body_bytes``): a declared Content-Length above it is answered 413
at once, and a chunked body is cut off with 413 as it passes the bound. Paths check their own,
smaller limits themselves (the demo issuer: 4 KiB).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.web import http, server

_state: dict = {"limit": None, "refused": None}
TOO_LARGE = (
    b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)


def limit_request_bodies(max_bytes: int, refused: Callable[[object, int], None] | None = None) -> None:
    """Bound request bodies in this process at `max_bytes` (the largest any caller asks for);
    `refused(request, limit)` is told of each refusal (to log and count it)."""
    if _state["limit"] is None:
        _install()
    _state["limit"] = max(_state["limit"] or 0, max_bytes)
    if refused is not None:
        _state["refused"] = refused


def current_limit() -> int | None:
    return _state["limit"]


def _install() -> None:
    got_length, handle_chunk, process = (
        server.Request.gotLength,
        server.Request.handleContentChunk,
        server.Request.process,
    )

    def bounded_got_length(request, length):
        limit = _state["limit"]
        request._body_left = limit
        if limit is not None and length is not None and length > limit:
            _refuse(request, limit)
            length = 0  # nothing of it is kept
        got_length(request, length)

    def bounded_chunk(request, data):
        if getattr(request, "_body_refused", False):
            return
        left = getattr(request, "_body_left", None)
        if left is not None:
            left -= len(data)
            request._body_left = left
            if left < 0:
                _refuse(request, _state["limit"])
                return
        handle_chunk(request, data)

    def process_unless_refused(request):
        if not getattr(request, "_body_refused", False):  # answered 413 already; the connection is closing
            process(request)

    server.Request.gotLength = bounded_got_length
    server.Request.handleContentChunk = bounded_chunk
    server.Request.process = process_unless_refused


def _refuse(request, limit: int) -> None:
    """Answer 413 and close. HTTP/1.x only: Twisted handles one request of a connection at a time
    (later pipelined ones wait unread), so nothing else is being written on it. An HTTP/2 stream
    (TLS with ALPN h2) is not refused early: the path's own check answers it once it is read."""
    if not isinstance(request.channel, http.HTTPChannel):
        return
    request._body_refused = True
    if _state["refused"] is not None:
        _state["refused"](request, limit)
    body = (
        b'{"error": "wamp.error.invalid_argument", "message": "The request body is larger than %d bytes; '
        b'send less per request (a batch can be split)."}' % limit
    )
    channel = request.channel
    if channel is not None and channel.transport is not None:
        channel.transport.write(TOO_LARGE % (len(body), body))
        channel.loseConnection()
