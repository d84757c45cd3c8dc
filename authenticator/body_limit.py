"""A bound on HTTP request bodies, enforced while they arrive.

Twisted Web buffers a request's whole body (into a temporary file past 100 KB) before any
resource sees it, with no limit: a resource's own check comes after the bytes were taken. Here a
path whose resource declares ``max_body_bytes`` (the HTTP publish resource), or a path named to
:func:`limit_path` (a proxy worker's forwarded /publish), is bounded as its body arrives: a
declared Content-Length above the bound is answered 413 at once, and a chunked body is cut off
with 413 as it passes the bound. Other paths are left as they were (the demo issuer checks its
own 4 KiB).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.web import http, server

_state: dict = {"installed": False, "paths": {}, "refused": None}
TOO_LARGE = (
    b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)


def limit_path(name: str, max_bytes: int, refused: Callable[[object, int], None] | None = None) -> None:
    """Bound the bodies of requests to the top-level path `name` (e.g. "publish") in this process;
    `refused(request, limit)` is told of each refusal (to log and count it)."""
    install(refused)
    _state["paths"][name.encode()] = max_bytes


def install(refused: Callable[[object, int], None] | None = None) -> None:
    """Bound the paths whose resource declares ``max_body_bytes`` (idempotent)."""
    if refused is not None:
        _state["refused"] = refused
    if _state["installed"]:
        return
    _state["installed"] = True
    got_length, handle_chunk, process = (
        server.Request.gotLength,
        server.Request.handleContentChunk,
        server.Request.process,
    )

    def bounded_got_length(request, length):
        limit = _limit_for(request)
        request._body_limit = request._body_left = limit
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
                _refuse(request, request._body_limit)
                return
        handle_chunk(request, data)

    def process_unless_refused(request):
        if not getattr(request, "_body_refused", False):  # answered 413 already; the connection is closing
            process(request)

    server.Request.gotLength = bounded_got_length
    server.Request.handleContentChunk = bounded_chunk
    server.Request.process = process_unless_refused


def _limit_for(request) -> int | None:
    """The bound of the request's top-level path: its resource's ``max_body_bytes``, or a named one.
    Read from the request line (the channel's): the request itself is not parsed yet."""
    channel = request.channel
    raw = getattr(channel, "_path", None)
    if not isinstance(raw, bytes):
        return None
    first = raw.split(b"?", 1)[0].lstrip(b"/").split(b"/", 1)[0]
    root = getattr(getattr(channel, "site", None), "resource", None)
    child = getattr(root, "children", {}).get(first)
    limit = getattr(child, "max_body_bytes", None)
    return limit if isinstance(limit, int) else _state["paths"].get(first)


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
    if channel.transport is not None:
        channel.transport.write(TOO_LARGE % (len(body), body))
        channel.loseConnection()
