"""Issue 20, finding 7: no host detail reaches a client over HTTP (authenticator/patches/server_identity.py).

Every answer that was not a WebSocket upgrade said ``Server: Crossbar/26.10.1`` (Crossbar sets
Twisted's global), the 101 said ``Server: Crossbar``, and a static path's 404 page showed the
client's address, the worker's pid, Crossbar's version and the directory served. Every answer a
client can get, in every deployment and in the production profile with a static directory: no
name or version of Crossbar, Autobahn or Twisted, no pid, no node directory; ``Server`` is
``crossbar-jwt``.
"""

from __future__ import annotations

import importlib.metadata
import re
import socket

import pytest

from authenticator.patches.server_identity import SERVER
from tests.support.raw_websocket import RawWebSocket
from tests.support.router import REPO, RouterProcess
from tests.support.tokens import TEST_SECRET

ORIGIN = "https://app.example.com"
VERSIONS = {dist: importlib.metadata.version(dist) for dist in ("crossbar", "autobahn", "twisted")}

# What a client can ask the public port for: (request line, what it answers)
PUBLIC = [
    ("GET / HTTP/1.0", 200),  # the static directory's index
    ("GET /nope HTTP/1.0", 404),
    ("GET /nope.js HTTP/1.0", 404),  # not found under the static directory: Crossbar's own 404 page
    ("HEAD /nope.js HTTP/1.0", 404),
    ("GET /deeper/nope.html HTTP/1.0", 404),
    ("GET /publish HTTP/1.0", 405),
    ("TRACE / HTTP/1.0", None),
]
DEMO = [
    *PUBLIC,
    ("GET /metrics HTTP/1.0", 200),  # the demo serves it on the public port (behind proxies: forwarded)
    ("GET /auth/nope HTTP/1.0", 404),
]


def http(port: int, request_line: str, headers: tuple[str, ...] = ()) -> tuple[int, list[str], bytes]:
    """One raw request: (status, header lines, body), read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join((request_line, "Host: 127.0.0.1", *headers)) + "\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    return int(status_line.split(" ")[1]), header_lines, body


def host_details(node: RouterProcess) -> list[str | re.Pattern]:
    """What no answer may contain (the Server header itself must be exactly crossbar-jwt; our own
    text may name Crossbar, as /metrics' help lines do, but no product token or page of its)."""
    pids = [node.process.pid, *node.worker_pids()]
    return [
        "Crossbar/", "crossbar/", "Crossbar.io", "AutobahnPython", "Autobahn/", "autobahn/", "TwistedWeb",
        "Twisted/", "twisted/", "Served for", "PID",
        *VERSIONS.values(),
        *(re.compile(rf"(?<![\d.]){pid}(?!\.?\d)") for pid in pids),
        str(node.workdir), str(node.cbdir), str(REPO), socket.gethostname(),
    ]  # fmt: skip


def leaks(text: str, details: list[str | re.Pattern]) -> list[str]:
    found = []
    for detail in details:
        if isinstance(detail, re.Pattern):
            found += detail.findall(text)
        elif detail and detail in text:
            found.append(detail)
    return found


def assert_no_host_detail(node: RouterProcess, port: int, requests: list[tuple[str, int | None]]) -> None:
    details = host_details(node)
    answers = {}
    for request_line, expected in requests:
        status, header_lines, body = http(port, request_line)
        servers = [line.partition(":")[2].strip() for line in header_lines if line.lower().startswith("server:")]
        answers[request_line] = {
            "status": (status, expected),
            "servers": servers,
            "leaks": leaks("\r\n".join(header_lines) + "\r\n\r\n" + body.decode("utf-8", "replace"), details),
            "head": "\r\n".join(header_lines)[:400],
            "body": body[:400],
        }
    wrong = {
        request: answer for request, answer in answers.items()
        if answer["leaks"] or set(answer["servers"]) != {SERVER}
        or (answer["status"][1] is not None and answer["status"][0] != answer["status"][1])
    }  # fmt: skip
    assert not wrong, wrong


def assert_no_host_detail_in_the_upgrade(node: RouterProcess, origin: str | None = None) -> None:
    ws = RawWebSocket(node.port, origin=origin)
    try:
        assert ws.status == 101, ws.headers
        assert ws.headers.get("server") == SERVER, ws.headers
        assert not leaks("\r\n".join(f"{k}: {v}" for k, v in ws.headers.items()), host_details(node)), ws.headers
    finally:
        ws.close()


def test_no_http_answer_names_crossbar_its_version_the_pid_or_the_node_directory(router):
    """The shipped config (static ../web at /, /auth, /metrics, /publish on the public port), in
    one worker and behind two proxies: 404, 405, the static 404 page, TRACE, /metrics, /auth."""
    assert_no_host_detail(router, router.port, DEMO)


def test_the_websocket_upgrade_names_no_server_version(router):
    """The 101 said ``Server: Crossbar`` (Autobahn's default: ``AutobahnPython/<version>``)."""
    assert_no_host_detail_in_the_upgrade(router)


@pytest.fixture(scope="module")
def production_with_static(tmp_path_factory):
    node = RouterProcess(
        tmp_path_factory.mktemp("production-static"), env={"JWT_SECRET": TEST_SECRET},
        production={"origins": (ORIGIN,), "static_directory": "../web"}, loglevel="warn",
    ).start()  # fmt: skip
    yield node
    assert node.stop() == 0, node.log()[-3000:]


def test_the_production_profile_with_a_static_directory_shows_no_host_detail(production_with_static):
    node = production_with_static
    assert_no_host_detail(node, node.port, PUBLIC)
    assert_no_host_detail(node, node.metrics_port, [("GET /metrics HTTP/1.0", 200), ("GET /nope HTTP/1.0", 404)])
    assert_no_host_detail_in_the_upgrade(node, origin=ORIGIN)
