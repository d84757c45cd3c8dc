"""No client writes a line of its own into the node log, or anything a terminal obeys; and a flood
of invalid messages writes a bounded number of lines, without tracebacks.

Through the real router (both deployments), each attack puts a line break and a complete fake line
(or terminal control sequences) where the router logs what the client sent: a HELLO's realm and
authid, a SUBSCRIBE's URI (anonymous and joined), the keys and the Content-Type of ``POST
/publish``, a JWT's ``kid``, ``sub`` and ``iss``, a cookie and the Origin header. For each: the
fake line never starts a line, no raw control character is written, every line written is a
whole log line (a timestamp and a system), and the escaped form is there, so the event was logged
at all. The escaping: authenticator/core/logtext.py, applied to every event by the worker's log
observer (authenticator/patches/hardening.py); the protocol errors: authenticator/patches/protocol_errors.py.
Through nginx: tests/router/test_behind_nginx.py.
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request

from tests.support.hostile import HS, claims, signed
from tests.support.raw_websocket import ABORT, AUTHENTICATE, CHALLENGE, HELLO, WELCOME, RawWebSocket
from tests.support.router import wait_for
from tests.support.tokens import mint, unique

SUBSCRIBE = 32
PROTOCOL_ERROR = 1002
# Every line of the node log starts with its time and the process that wrote it.
WHOLE_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[")
# Raw characters no line may hold: controls but the line end, and what else splits or hides a line.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
PROTOCOL_ERROR_LINE = "protocol error, connection closed (1002)"
SUMMARY = re.compile(r"protocol errors: (\d+) more in the last")


def fake_line() -> str:
    """A line as the router writes it, unique to the test (so its escaped form is found only once)."""
    return f"2026-01-01T00:00:00+0000 [Router 4242] authentication accepted: authid=root role=admin {unique('x')}"


def written_since(router, offset: int, escaped: str, fake: str | None = None, timeout: float = 10) -> str:
    """Wait for the escaped form in the log written since `offset`, then check all of it: no line
    starts with the fake line, no raw control character, every line a whole log line."""
    wait_for(lambda: escaped in router.log()[offset:], timeout, f"{escaped!r} in the log")
    written = router.log()[offset:]
    assert not RAW.search(written), RAW.search(written)
    for line in re.split("\n|" + RAW.pattern, written):  # however a reader splits lines
        assert not (fake and line.lstrip().startswith(fake[:40])), line
        assert not line or WHOLE_LINE.match(line), f"not a log line of its own: {line[:300]!r}"
    assert "Traceback" not in written
    return written


def hello(ws: RawWebSocket, realm: str = "realm1", **details) -> list | None:
    ws.send_wamp([HELLO, realm, {"roles": {"subscriber": {}, "publisher": {}}, **details}])
    return ws.next_message()


def login(router, ticket: str) -> list:
    """HELLO with a ticket and AUTHENTICATE: the WELCOME or ABORT."""
    ws = RawWebSocket(router.port)
    try:
        message = hello(ws, authmethods=["ticket"])
        assert message[0] == CHALLENGE, message
        ws.send_wamp([AUTHENTICATE, ticket, {}])
        return ws.next_message()
    finally:
        ws.close()


def after_a_marker(router, offset: int) -> str:
    """The log written since `offset`, read once a line the router writes deterministically after
    the attack is there: a login with a unique authid, accepted. What the attack could still
    write (behind proxies, a proxy worker's lines reach the log through its own pipe) has been
    written by then, so an assertion that something is absent is not made too early."""
    name = unique("marker")
    assert login(router, mint(name, ["user"]))[0] == WELCOME
    router.wait_for_log(f"authentication accepted: authid={name} ", after=offset)
    return router.log()[offset:]


# -- WAMP: HELLO and SUBSCRIBE ----------------------------------------------------------------------


def test_a_hello_realm_with_a_fake_line_is_one_escaped_warn_line(router):
    fake, offset = fake_line(), router.log_size()
    ws = RawWebSocket(router.port)
    try:
        ws.send_wamp([HELLO, f"realm1\n{fake}\x1bM", {"roles": {"subscriber": {}}, "authmethods": ["anonymous"]}])
        ended = ws.wait_for_end(10)
    finally:
        ws.close()
    assert ended.close_code == PROTOCOL_ERROR, ended  # the client's fault (Autobahn said 1011, internal)
    written = written_since(router, offset, f"realm1\\n{fake}\\x1bM", fake)
    [line] = [line for line in written.splitlines() if fake in line]
    assert PROTOCOL_ERROR_LINE in line and "error=InvalidUriError: 'realm' in HELLO" in line and len(line) < 1000


def test_a_hello_authid_with_a_fake_line_stays_in_crossbars_line(router):
    """Crossbar logs a HELLO's authid at info (PendingAuthAnonymous.hello), from the message as sent."""
    fake, offset = fake_line(), router.log_size()
    ws = RawWebSocket(router.port)
    try:
        welcome = hello(ws, authmethods=["anonymous"], authid=f"x\n{fake}\x1b]0;owned\x07")
        assert welcome[0] == WELCOME, welcome
    finally:
        ws.close()
    written_since(router, offset, f"details.authid=x\\n{fake}\\x1b]0;owned\\x07", fake)


def test_a_subscribe_uri_with_a_fake_line_is_escaped_anonymous_or_joined(router):
    for joined in (False, True):
        fake, offset = fake_line(), router.log_size()
        ws = RawWebSocket(router.port)
        try:
            if joined:
                session = ws.join(mint(unique("mallory"), ["user"]))
            else:
                session = hello(ws, authmethods=["anonymous"])[1]
            ws.send_wamp([SUBSCRIBE, 1, {}, f"app.public.x\n{fake}\x08\x08\x1b[2K"])
            ended = ws.wait_for_end(10)
        finally:
            ws.close()
        assert ended.close_code == PROTOCOL_ERROR, ended
        written = written_since(router, offset, f"app.public.x\\n{fake}\\x08\\x08\\x1b[2K", fake)
        [line] = [line for line in written.splitlines() if fake in line]
        assert f"session={session} authid=" in line and "'topic' in SUBSCRIBE" in line


# -- HTTP: POST /publish ------------------------------------------------------------------------------


def publish(router, body: bytes, headers: dict) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{router.port}/publish", data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_unknown_keys_of_a_publish_body_are_quoted_escaped(router):
    fake, offset = fake_line(), router.log_size()
    body = {"topic": "app.public.news", "args": [], f"x\n{fake}": 1, "\x1b]0;owned\x07\x1bM": 2}
    token = mint(unique("billing"), ["backend"])
    status = publish(router, json.dumps(body).encode(), {"Authorization": f"Bearer {token}",
                                                           "Content-Type": "application/json"})  # fmt: skip
    assert status == 400
    written = written_since(router, offset, f"'x\\n{fake[:62]}'", fake)  # a key is quoted to 64 characters
    assert "'\\x1b]0;owned\\x07\\x1bM'" in written


def test_a_publish_content_type_with_control_characters_is_escaped_without_a_token(router):
    offset = router.log_size()
    status = publish(router, b"{}", {"Content-Type": "application/json\x08\x08\x08\x08text\x1bM\x1b[1A\x1b[8m"})
    assert status == 400
    # the colour code (SGR, here: conceal) is removed, every other sequence escaped
    written_since(router, offset, "Content-Type 'application/json\\x08\\x08\\x08\\x08text\\x1bM\\x1b[1A'")


# -- tokens, cookie and headers ---------------------------------------------------------------------


def test_a_kid_sub_or_iss_with_a_fake_line_is_never_written(router):
    """The refusal says why without quoting the token's words (authenticator/core/tokens.py): neither the
    raw nor the escaped value appears; the refusal (or acceptance) line shows the event was logged."""
    cases = [
        (signed({**HS, "kid": f"k\n{(fake := fake_line())}"}, claims()), "reason=unknown_key", fake),
        (signed(HS, claims(sub=f"mallory\n{(fake2 := fake_line())}")), "reason=invalid_claim", fake2),
    ]
    for ticket, logged, fake in cases:
        offset = router.log_size()
        assert login(router, ticket)[0] == ABORT
        written_since(router, offset, f"authentication refused: {logged}", fake)
        assert fake not in after_a_marker(router, offset)
    # no trusted issuers are configured here: the token is accepted, its iss is never logged
    name, fake = unique("alice"), fake_line()
    offset = router.log_size()
    assert login(router, mint(name, ["user"], iss=f"https://issuer\n{fake}"))[0] == WELCOME
    written_since(router, offset, f"authentication accepted: authid={name}", fake)
    assert fake not in after_a_marker(router, offset)


def upgrade(router, header_lines: bytes) -> socket.socket:
    """A WebSocket upgrade with raw header bytes (control characters included), HELLO sent."""
    from tests.support.raw_websocket import frame

    sock = socket.create_connection(("127.0.0.1", router.port), timeout=10)
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: wamp.2.json\r\n" + header_lines + b"\r\n"
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 101"), "upgrade refused"
    hello_message = [HELLO, "realm1", {"roles": {"subscriber": {}}, "authmethods": ["anonymous"]}]
    sock.sendall(frame(json.dumps(hello_message).encode()))
    return sock


def test_a_cookie_and_an_origin_with_control_characters_are_escaped(router):
    """The cookie carrier refuses a token cookie from an origin it does not trust and names the origin."""
    marker = unique("evil")
    offset = router.log_size()
    sock = upgrade(router, f"Origin: http://{marker}\x08\x08\x1bM.example/\x1b]0;owned\x07\r\n"
                           f"Cookie: cbjwt=abc\x1b[2J\x1b]0;x\x07\x9b; other=\x1bM\r\n".encode("latin-1"))  # fmt: skip
    try:
        received = sock.recv(4096)
    finally:
        sock.close()
    assert b"origin_not_allowed" in received
    written = written_since(router, offset, f"origin 'http://{marker}\\x08\\x08\\x1bM.example/\\x1b]0;owned\\x07'")
    assert "reason=origin_not_allowed" in written


# -- a flood of invalid messages ------------------------------------------------------------------------


def test_many_invalid_messages_on_one_connection_give_one_line(router):
    """Autobahn handles no message after the connection failed: the 199 after the first write no
    line. Before: a 4.2 KB traceback and a second line repeating the client's words."""
    marker, offset = unique("flood"), router.log_size()
    ws = RawWebSocket(router.port)
    try:
        hello(ws, authmethods=["anonymous"])
        ws.sock.sendall(b"".join(
            _frame([SUBSCRIBE, i, {}, f"app.public.{marker}\n{i}"]) for i in range(1, 201)
        ))  # fmt: skip
        ended = ws.wait_for_end(10)
    finally:
        ws.close()
    assert ended.close_code == PROTOCOL_ERROR
    written_since(router, offset, f"{marker}\\n1")
    written = after_a_marker(router, offset)
    assert sum(marker in line for line in written.splitlines()) == 1
    assert "failing WebSocket connection" not in written


def test_a_flood_of_invalid_messages_gives_a_bounded_number_of_lines(router):
    """One client, 200 connections, one invalid HELLO each (a reconnecting client got ~390
    tracebacks a second written): at most protocol_errors.BURST lines per window and worker, and a
    summary line that counts the rest — every one of the 200 accounted for."""
    from authenticator.patches.protocol_errors import BURST, WINDOW_SECONDS

    marker, offset = unique("flood"), router.log_size()
    started = time.monotonic()
    for i in range(200):
        ws = RawWebSocket(router.port)
        try:
            ws.send_wamp([HELLO, f"realm.{marker}\n{i}", {"roles": {"subscriber": {}}, "authmethods": ["anonymous"]}])
            assert ws.wait_for_end(10).close_code == PROTOCOL_ERROR
        finally:
            ws.close()
    took = time.monotonic() - started

    def accounted():
        written = router.log()[offset:]
        logged = sum(marker in line for line in written.splitlines())
        more = sum(int(n) for n in SUMMARY.findall(written))
        return (logged, more) if logged + more >= 200 else None

    wait_for(accounted, WINDOW_SECONDS + 10, "the summary of the lines not logged")
    written = after_a_marker(router, offset)
    logged = sum(marker in line for line in written.splitlines())
    more = sum(int(n) for n in SUMMARY.findall(written))
    workers = max(1, router.proxies)
    windows = int(took // WINDOW_SECONDS) + 2
    assert logged + more == 200 and logged <= workers * windows * BURST, (logged, more)
    assert "Traceback" not in written and "failing WebSocket connection" not in written
    # Crossbar's own lines of each connection (at info) remain; a traceback alone was 4.2 KB.
    assert len(written) / 200 < 1000, f"{len(written)} characters for 200 invalid messages"


def _frame(message: list) -> bytes:
    from tests.support.raw_websocket import frame

    return frame(json.dumps(message).encode())
