"""Request bodies are bounded on every path of every worker while they arrive, on the path as
Twisted routes it (authenticator/patches/body_limit.py), in both deployments: a declared length over the
bound is answered 413 before the body is sent, a chunked body is cut off with 413 when it passes
the bound, and neither costs the worker memory or a temporary file (issue 20, finding 2)."""

from __future__ import annotations

import json
import os
import select
import socket
import stat
import time

import psutil
import pytest

from authenticator.patches.body_limit import BODY_DEADLINE, DEFAULT_MAX_BYTES, TOO_SLOW_MESSAGE
from tests.conftest import DEPLOYMENTS
from tests.support.router import RouterProcess
from tests.support.tokens import TEST_SECRET, mint, unique

HUGE = 1_000_000_000  # a declared Content-Length no worker could hold
MIB = 1024 * 1024
# The /publish bound of the `narrow` node: not the default bound of every other path
# (DEFAULT_MAX_BYTES, 65,536, which the shipped /publish also has), so that a spelling routed to
# the default instead of /publish shows in the number the 413 names.
PUBLISH_BOUND = 40000
# Spellings of /publish that Twisted routes to the /publish resource (segments percent-decoded,
# the query left out, a trailing slash a leaf resource ignores, the first character of the target
# dropped whatever it is; behind the proxies, the forwarded path): each must get the /publish bound.
TO_PUBLISH = ["/publish", "/%70ublish", "/%70%75%62%6C%69%73%68", "/%70%75%62%6c%69%73%68", "/publish/",
              "/publish?x=1", "/%70ublish?x=1&y=%2F", "xpublish", "Zpublish?x"]  # fmt: skip
# Spellings Twisted does not route to it (no '//' or '/./' removal, no case folding, an
# absolute-form target is routed as segments of its own text): never published, and bounded by
# the bound of whatever they reach.
NOT_TO_PUBLISH = ["//publish", "/./publish", "/PUBLISH", "/%50UBLISH", "/publish%2F", "ABSOLUTE"]


@pytest.fixture(scope="module", params=list(DEPLOYMENTS))
def narrow(request, tmp_path_factory):
    """The shipped config with /publish bounded at PUBLISH_BOUND, in both deployments."""

    def narrow_publish(config):
        config["workers"][0]["transports"][0]["paths"]["publish"]["extra"]["max_body_bytes"] = PUBLISH_BOUND

    node = RouterProcess(tmp_path_factory.mktemp(f"narrow-{request.param}"), env={"JWT_SECRET": TEST_SECRET},
                         edit_config=narrow_publish, proxies=DEPLOYMENTS[request.param]).start()  # fmt: skip
    yield node
    assert node.stop() == 0, node.log()[-3000:]


def target(router, spelling: str) -> str:
    return f"http://127.0.0.1:{router.port}/publish" if spelling == "ABSOLUTE" else spelling


def head(router, method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{router.port}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def exchange(router, request_head: bytes, body=(), *, source: str = "127.0.0.1") -> tuple[bytes, int, int]:
    """Send a request head, then the body's pieces while reading the answer: the sending stops at
    the first byte of an answer (or when the router closes). Returns (the answer, the body bytes
    sent when it began, the client's port). The answer is read until the router closes the
    connection; a router that never answers fails the test after 30 s."""
    pieces, pending, sent, answered_at, answer, not_before = iter(body), b"", 0, None, b"", 0.0
    with socket.create_connection(("127.0.0.1", router.port), timeout=10, source_address=(source, 0)) as s:
        port = s.getsockname()[1]
        s.sendall(request_head)
        s.setblocking(False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if answered_at is None and not pending:
                pending = next(pieces, b"")
                not_before = time.monotonic() + getattr(pending, "delay", 0)
            writing = [s] if answered_at is None and pending and time.monotonic() >= not_before else []
            readable, writable, _ = select.select([s], writing, [], 0.5 if writing or not pending else 0.05)
            if readable:
                try:
                    data = s.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break  # closed by the router
                answered_at = sent if answered_at is None else answered_at
                answer += data
            elif writable:
                try:
                    done = s.send(pending[:65536])
                except (BrokenPipeError, ConnectionResetError):
                    pending = b""
                    continue  # closed by the router: its answer, if any, is still to be read
                sent, pending = sent + done, pending[done:]
        else:
            pytest.fail(f"no answer, or the connection stayed open, 30 s after {sent} body bytes")
    return answer, (sent if answered_at is None else answered_at), port


def chunks(total: int, size: int = 16384):
    piece = b"%x\r\n%s\r\n" % (size, b"x" * size)
    for _ in range(total // size):
        yield piece
    yield b"0\r\n\r\n"


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


def body_of(answer: bytes) -> dict:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


def refused_unread(router, path: str, length: int = HUGE, **headers) -> dict:
    """A head declaring `length` and no byte of its body: answered 413 all the same, and the
    connection closed. A router that waited for the body would answer nothing before the body
    deadline, and then 408."""
    answer, sent, _ = exchange(router, head(router, "POST", path, {"Content-Length": str(length), **headers}))
    assert status_of(answer) == 413, answer[:300]
    assert sent == 0
    assert b"Connection: close" in answer
    return body_of(answer)


def publish(router, path: str, body: dict) -> int:
    data = json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {mint(unique('backend'), ['backend'])}",
               "Content-Type": "application/json", "Content-Length": str(len(data)), "Connection": "close"}  # fmt: skip
    answer, _, _ = exchange(router, head(router, "POST", target(router, path), headers), [data])
    return status_of(answer)


# -- /publish, however it is spelled ---------------------------------------------------------------


@pytest.mark.parametrize("spelling", TO_PUBLISH)
def test_every_spelling_of_publish_gets_its_bound(narrow, spelling):
    assert publish(narrow, spelling, {"topic": "app.public.news", "args": ["spelled"]}) == 200
    for length in (HUGE, PUBLISH_BOUND + 1):
        answer = refused_unread(narrow, spelling, length)
        assert answer["error"] == "wamp.error.invalid_argument", answer
        # (behind the proxies the proxy answers, without the publish path's own advice)
        assert answer["message"].startswith(f"The request body is larger than {PUBLISH_BOUND} bytes. Send less"), answer
    answer = cut_off(narrow, spelling)
    assert answer["message"].startswith(f"The request body is larger than {PUBLISH_BOUND} bytes."), answer


DEFAULT_REFUSAL = {"error": f"The request body is larger than {DEFAULT_MAX_BYTES} bytes. Send less per request."}


@pytest.mark.parametrize("spelling", NOT_TO_PUBLISH)
def test_spellings_twisted_does_not_route_to_publish_never_publish_and_get_the_default_bound(narrow, spelling):
    assert publish(narrow, spelling, {"topic": "app.public.news", "args": ["not published"]}) in (404, 405)
    for length in (HUGE, DEFAULT_MAX_BYTES + 1):
        assert refused_unread(narrow, target(narrow, spelling), length) == DEFAULT_REFUSAL
    assert cut_off(narrow, target(narrow, spelling)) == DEFAULT_REFUSAL


def cut_off(router, path: str) -> dict:
    """A chunked body of 4 MiB: cut off with 413 while it arrives, and the connection closed."""
    headers = {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}
    answer, sent, _ = exchange(router, head(router, "POST", path, headers), chunks(4 * MIB))
    assert status_of(answer) == 413, answer[:300]
    assert sent < 4 * MIB  # cut off while it arrived, and the connection closed (exchange read to the end)
    return body_of(answer)


# -- bodies that take too long -----------------------------------------------------------------------


def test_a_body_trickled_past_the_deadline_is_answered_408_and_its_connection_closed(router):
    """65,000 of a declared 65,536 bytes, then a byte a second (Twisted's idle timeout of 15 s
    starts again at each): answered 408 at the deadline, counted from the end of the headers."""
    offset = router.log_size()
    request = head(router, "POST", "/nowhere", {"Content-Length": "65536"})
    started = time.monotonic()
    answer, sent, port = exchange(router, request, trickle(b"x" * 65000), source="127.0.0.4")
    took = time.monotonic() - started
    assert status_of(answer) == 408, answer[:300]
    assert body_of(answer) == {"error": TOO_SLOW_MESSAGE} and b"Connection: close" in answer
    assert 65000 < sent < 65536 and BODY_DEADLINE - 1 < took < BODY_DEADLINE + 3, (sent, took)
    line = router.wait_for_log(f"peer=127.0.0.4:{port}", after=offset)
    assert "http request refused: status=408 reason=too_slow detail=body incomplete" in line, line
    assert "bytes) path=/nowhere" in line, line


def trickle(first: bytes):
    """`first`, then a byte a second, without end (exchange stops at the answer)."""
    yield first
    while True:
        yield Paced(b"x", 1.0)


class Paced(bytes):
    """A piece exchange sends `delay` seconds after the one before it."""

    delay = 0.0

    def __new__(cls, data: bytes, delay: float):
        piece = super().__new__(cls, data)
        piece.delay = delay
        return piece


# -- paths that take no body, or a small one ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/ws", "/ws?x=1", "/%77s", "/", "/index.html", "/app.js"])
def test_the_websocket_and_static_paths_take_no_body(router, path):
    assert refused_unread(router, path, 1) == {"error": "This path takes no request body."}
    # a plain GET of each is as before
    answer, _, _ = exchange(router, head(router, "GET", path, {"Connection": "close"}))
    assert status_of(answer) != 413


def test_metrics_are_bounded(router):
    """/metrics (a wsgi app in the router worker; behind the proxies Crossbar's reverseproxy,
    which would read the body whole before forwarding it)."""
    refused_unread(router, "/metrics")
    headers = {"Transfer-Encoding": "chunked"}
    answer, sent, _ = exchange(router, head(router, "POST", "/%6Detrics", headers), chunks(4 * MIB))
    assert status_of(answer) == 413 and sent < 4 * MIB


def test_the_demo_login_refuses_a_body_over_its_bound_before_reading_it(router):
    answer = refused_unread(router, "/auth/login", 4097, **{"Content-Type": "application/json"})
    assert "larger than 4096 bytes" in answer["error"]
    assert refused_unread(router, "/%61uth/login", HUGE) == answer
    if not router.proxies:  # its own advice; behind the proxies the proxy answers, with the bound
        assert '"username"' in answer["error"]
    # a login of the right size is as before
    body = json.dumps({"username": "alice", "password": "alice-demo-password"}).encode()
    login = head(router, "POST", "/auth/login", {"Content-Type": "application/json", "Content-Length": str(len(body)),
                                                 "Connection": "close"})  # fmt: skip
    answer, _, _ = exchange(router, login, [body])
    assert status_of(answer) in (200, 429)  # 429: other tests' logins from this address


def test_a_chunked_login_leaves_no_temporary_file(router):
    """Twisted keeps a chunked body (or one over 100 KB) in a temporary file (unlinked at once,
    so only the worker's open files show it). The login is cut off at its 4 KiB; meanwhile no
    worker holds a file of the body."""
    headers = {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as s:
        s.sendall(head(router, "POST", "/auth/login", headers))
        try:
            for piece in chunks(8 * MIB):
                s.sendall(piece)
                if select.select([s], [], [], 0)[0]:
                    break  # answered
        except (BrokenPipeError, ConnectionResetError):
            pass
        largest = max(open_file_sizes(router))  # while the connection is (or was just) open
        answer = s.recv(4096)
    assert largest < MIB, f"a worker holds a {largest} bytes file"
    assert status_of(answer) == 413


def open_file_sizes(router) -> list[int]:
    """The sizes of the regular files the node's workers hold open (deleted ones too)."""
    sizes = [0]
    for pid in router.worker_pids():
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                info = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                sizes.append(info.st_size)
    return sizes


# -- memory ------------------------------------------------------------------------------------------


def rss(router) -> int:
    return sum(psutil.Process(pid).memory_info().rss for pid in router.worker_pids())


@pytest.mark.parametrize(
    ("path", "chunked"),
    [("/ws", False), ("/ws", True), ("/metrics", False), ("/metrics", True), ("/%70ublish", True)],
)
def test_a_streamed_body_far_over_the_bound_costs_no_memory(router, path, chunked):
    """50 MiB offered: the 413 arrives before the body was sent whole, and the workers' memory
    does not grow by it (Autobahn's WebSocketResource and Crossbar's reverseproxy read a body
    whole into memory: 1,000 MiB to /ws took a worker from 350 to 2,339 MiB)."""
    total = 50 * MIB
    before = rss(router)
    if chunked:
        request = head(router, "POST", path, {"Transfer-Encoding": "chunked"})
        body = chunks(total, 65536)
    else:
        request = head(router, "POST", path, {"Content-Length": str(total)})
        body = (b"x" * 65536 for _ in range(total // 65536))
    answer, sent, _ = exchange(router, request, body)
    growth = rss(router) - before
    assert growth < 16 * MIB, f"the workers grew by {growth / MIB:.0f} MiB"
    assert sent < total
    assert status_of(answer) == 413, answer[:300]


# -- who is refused, in the log ---------------------------------------------------------------------


def test_the_refusal_line_names_the_client_and_believes_no_header_of_it(router):
    """Directly (no trusted proxy in the demo): the peer is the client's own address and port; a
    client's X-Forwarded-For is not believed. Behind the proxies the proxy refuses it, and names
    the client too."""
    offset = router.log_size()
    request = head(router, "POST", "/%77s", {"Content-Length": "10", "X-Forwarded-For": "203.0.113.9"})
    answer, _, port = exchange(router, request, [b"0123456789"], source="127.0.0.3")
    assert status_of(answer) == 413
    line = router.wait_for_log(f"peer=127.0.0.3:{port}", after=offset)
    assert "http request refused: status=413 reason=too_large" in line and "path=/%77s" in line
    assert "203.0.113.9" not in line
