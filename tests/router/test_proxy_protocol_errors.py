"""Protocol errors behind proxies, and requests without a Host header, in both deployments.

A proxy worker's frontend session (crossbar.worker.proxy:ProxyFrontendSession) raises its
ProtocolError inside its own Deferred, outside the patched WebSocket onMessage: a GOODBYE or a
PUBLISH pipelined before WELCOME, or a second HELLO, wrote "Unhandled error in Deferred" with a
traceback per connection, no token needed (authenticator/patches/protocol_errors.py,
``install_proxy_frontend``). A request without Host made a proxy's reverseproxy answer 500 with a
traceback (authenticator/patches/body_limit.py answers 400 first, in every worker).

Behind proxies the lines of a proxy worker reach the node log late (10 s and more after a flood):
every test ends with a marker line (a refused login with a fresh authid) and waits for it before
it asserts that something is absent.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time

import pytest

from tests.support.raw_websocket import (
    AUTHENTICATE,
    CHALLENGE,
    CLOSE,
    HELLO,
    PING,
    PONG,
    TEXT,
    WELCOME,
    RawWebSocket,
    frame,
)
from tests.support.router import wait_for
from tests.support.tokens import mint, unique

GOODBYE, PUBLISH = 6, 16
PROTOCOL_ERROR = 1002
PROTOCOL_ERROR_LINE = "protocol error, connection closed (1002)"
SUMMARY = re.compile(r"protocol errors: (\d+) more in the last")
ANONYMOUS = {"roles": {"subscriber": {}, "publisher": {}}, "authmethods": ["anonymous"]}
CONNECTIONS = 60
OPEN_AFTER_SECONDS = 5  # for all the flood's connections together


def marker_line(router) -> None:
    """A refused login with a fresh authid, and its line in the log: what the workers wrote before
    it is in the log too."""
    marker = unique("marker")
    ws = RawWebSocket(router.port)
    try:
        ws.send_wamp([HELLO, "realm1", {"roles": {"subscriber": {}}, "authmethods": ["ticket"]}])
        message = ws.next_message()
        assert message is not None and message[0] == CHALLENGE, message
        ws.send_wamp([AUTHENTICATE, mint(marker, ["superuser"]), {}])
        ws.next_message()
    finally:
        ws.close()
    router.wait_for_log(f"authid={marker}", timeout=60)


def _pipelined(ws: RawWebSocket, *messages: list) -> None:
    """In one write: the router reads them together, the second before the first is answered."""
    ws.sock.sendall(b"".join(frame(json.dumps(message).encode()) for message in messages))


def _goodbye_before_welcome(ws: RawWebSocket) -> None:
    _pipelined(ws, [HELLO, "realm1", ANONYMOUS], [GOODBYE, {}, "wamp.close.normal"])


def _publish_before_welcome(ws: RawWebSocket) -> None:
    _pipelined(ws, [HELLO, "realm1", ANONYMOUS], [PUBLISH, 1, {}, "app.public.x", [1]])


def _second_hello(ws: RawWebSocket) -> None:
    ws.send_wamp([HELLO, "realm1", ANONYMOUS])
    message = ws.next_message()
    assert message is not None and message[0] == WELCOME, message
    ws.send_wamp([HELLO, "realm1", ANONYMOUS])


FLOODS = {
    "goodbye-before-welcome": _goodbye_before_welcome,
    "publish-before-welcome": _publish_before_welcome,
    "second-hello": _second_hello,
}


@pytest.mark.parametrize("flood", list(FLOODS))
def test_a_flood_of_messages_out_of_place_gives_a_bounded_number_of_lines_without_traceback(router, flood):
    """One client, CONNECTIONS connections, each a message its session may not take now (behind
    proxies each is a ProtocolError of the proxy's frontend, closed 1002 with the reason; the single
    worker may answer some of them): at most protocol_errors.BURST lines per window and worker, a
    summary counting the rest (behind proxies every connection accounted for), no traceback."""
    from authenticator.patches.protocol_errors import BURST, WINDOW_SECONDS

    offset, closes = router.log_size(), []
    started = time.monotonic()
    connections: list[RawWebSocket] = []
    try:
        # Each connection opens just before its messages: the second-hello flood logs in one after
        # the other, and a connection opened up front waited for its turn past the router's HELLO
        # deadline (10 s from the upgrade) when 60 logins behind the proxies took longer than that.
        for _ in range(CONNECTIONS):
            connections.append(RawWebSocket(router.port))
            FLOODS[flood](connections[-1])
        # One deadline for all: the router closes (1002), answers, or (the single worker, a second
        # HELLO) neither, which is "open" once the deadline has passed.
        deadline = time.monotonic() + OPEN_AFTER_SECONDS
        closes = [first_answer(ws, max(0.05, deadline - time.monotonic())) for ws in connections]
    finally:
        for ws in connections:
            ws.close()
    took = time.monotonic() - started
    if router.proxies:
        assert closes == [PROTOCOL_ERROR] * CONNECTIONS, {code: closes.count(code) for code in set(closes)}
    marker_line(router)

    def accounted():
        written = router.log()[offset:]
        logged = written.count(PROTOCOL_ERROR_LINE)
        more = sum(int(n) for n in SUMMARY.findall(written))
        expected = closes.count(PROTOCOL_ERROR)
        return (logged, more) if logged + more >= expected else None

    logged, more = wait_for(accounted, WINDOW_SECONDS + 30, "the summary of the protocol-error lines not logged")
    marker_line(router)  # the summaries are in: anything else the flood caused is in too
    written = router.log()[offset:]
    assert "Traceback" not in written and "Unhandled error" not in written, written[-3000:]
    workers = max(1, router.proxies)
    windows = int(took // WINDOW_SECONDS) + 2
    assert logged + more == closes.count(PROTOCOL_ERROR) and logged <= workers * windows * BURST, (logged, more)
    # Crossbar's own lines of each connection (at info, ~2 KB with the session's details) remain.
    lines = [line for line in written.splitlines() if PROTOCOL_ERROR_LINE in line]
    assert all(len(line) < 1000 for line in lines), max(lines, key=len)


def first_answer(ws: RawWebSocket, timeout: float = 10) -> int | str | None:
    """The close code, if the router closes the connection before it answers; "answered" if a WAMP
    message comes first (the single worker takes some of these messages); "open" if neither."""
    deadline = time.monotonic() + timeout
    try:
        while (received := ws.next_frame(deadline)) is not None:
            opcode, payload = received
            if opcode == PING:
                ws.send(payload, PONG)
            elif opcode == TEXT:
                return "answered"
            elif opcode == CLOSE:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
    except TimeoutError:
        return "open"
    return None


def _http(port: int, request: bytes) -> bytes:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received
    finally:
        sock.close()


@pytest.mark.parametrize("path", ["/publish", "/metrics", "/auth/login", "/ws", "/", "/%70ublish", "/nowhere"])
def test_a_request_without_host_is_answered_400_without_traceback(router, path):
    offset = router.log_size()
    requests = [
        f"GET {path} HTTP/1.0\r\n\r\n".encode(),
        f"GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n".encode(),
        f"POST {path} HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}".encode(),
    ]
    for request in requests * 5:
        received = _http(router.port, request)
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.split(b"\r\n")[0] == b"HTTP/1.1 400 Bad Request", received[:300]
        assert "Host header" in json.loads(body)["error"]
    marker_line(router)
    written = router.log()[offset:]
    assert "Traceback" not in written and "Unhandled error" not in written, written[-3000:]
    lines = [line for line in written.splitlines() if "reason=no_host_header" in line]  # rate-limited per worker
    assert len(lines) <= 15 and all(len(line) < 600 for line in lines), lines
