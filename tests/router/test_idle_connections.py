"""Idle connections are closed, joined sessions are not: a partial HTTP request, a silent TCP
connection, a WebSocket that never joins a session, a peer that stops answering pings or never
answers the server's close. A node with short timeouts (2-3 s) in both deployments; the shipped
values are in .crossbar/config.json and docs/reliability.md."""

from __future__ import annotations

import json
import socket

import pytest
import pytest_twisted
from autobahn.wamp.types import PublishOptions
from twisted.internet import reactor, task

from tests.conftest import DEPLOYMENTS
from tests.support.raw_websocket import CHALLENGE, HELLO, RawWebSocket, time_to_eof
from tests.support.router import RouterProcess
from tests.support.tokens import TEST_SECRET, mint, unique
from tests.support.wamp import connect

CLIENT_TIMEOUT = 2  # s, the web transport's client_timeout
HELLO_TIMEOUT = 2  # s, from the upgrade to WELCOME
PING_INTERVAL, PING_TIMEOUT = 1, 2  # s
CLOSE_HANDSHAKE_TIMEOUT = 2  # s
# Autobahn's timers round down to the whole second (txaio's batched timer): a WebSocket timeout
# fires up to 1 s early. Twisted's (client_timeout) and ours are exact.
EARLY = 1.0
SLACK = 3.0  # how much later than its timeout an event may come on a loaded machine

POLICY_VIOLATION = 1008


def impatient(config: dict) -> None:
    """The shipped config with its timeouts shortened: a timeout the shipped config lacks stays absent."""
    web = config["workers"][0]["transports"][0]
    shorten(web.get("options", {}), client_timeout=CLIENT_TIMEOUT)
    shorten(web["paths"]["ws"].get("options", {}), open_handshake_timeout=CLIENT_TIMEOUT * 1000,
            close_handshake_timeout=CLOSE_HANDSHAKE_TIMEOUT * 1000, auto_ping_interval=PING_INTERVAL * 1000,
            auto_ping_timeout=PING_TIMEOUT * 1000)  # fmt: skip
    extra = config["workers"][0]["components"][0]["extra"]
    extra["limits"] = {**extra.get("limits", {}), "hello_timeout_seconds": HELLO_TIMEOUT}


def shorten(options: dict, **values) -> None:
    for name, value in values.items():
        if name in options:
            options[name] = value


@pytest.fixture(scope="module", params=list(DEPLOYMENTS))
def node(request, tmp_path_factory):
    """A node with short timeouts, in each deployment."""
    node = RouterProcess(
        tmp_path_factory.mktemp(f"impatient-{request.param}"), env={"JWT_SECRET": TEST_SECRET},
        edit_config=impatient, proxies=DEPLOYMENTS[request.param],
    ).start()  # fmt: skip
    yield node
    assert node.stop() == 0, node.log()[-3000:]


# -- before the upgrade: the web transport's client_timeout -------------------------------------


def test_a_partial_http_request_is_closed_after_the_client_timeout(node):
    with socket.create_connection(("127.0.0.1", node.port)) as sock:
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # no blank line: the request never ends
        after, received = time_to_eof(sock, CLIENT_TIMEOUT + SLACK)
    assert received == b"" and after >= CLIENT_TIMEOUT - 0.5


def test_a_silent_tcp_connection_is_closed_after_the_client_timeout(node):
    with socket.create_connection(("127.0.0.1", node.port)) as sock:
        after, received = time_to_eof(sock, CLIENT_TIMEOUT + SLACK)
    assert received == b"" and after >= CLIENT_TIMEOUT - 0.5


def test_an_idle_keep_alive_connection_is_closed_after_the_client_timeout(node):
    with socket.create_connection(("127.0.0.1", node.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        after, received = time_to_eof(sock, CLIENT_TIMEOUT + SLACK)
    assert received.startswith(b"HTTP/1.1 200") and after >= CLIENT_TIMEOUT - 0.5


# -- after the upgrade: the HELLO timeout, pings, the close handshake ---------------------------


def test_a_websocket_that_answers_pings_but_never_sends_hello_is_closed(node):
    ws = RawWebSocket(node.port)
    try:
        assert ws.status == 101
        ended = ws.wait_for_end(HELLO_TIMEOUT + SLACK)
    finally:
        ws.close()
    assert ended.close_code == POLICY_VIOLATION
    assert ended.pings >= 1  # alive by every WebSocket measure: only the HELLO timeout closes it
    assert ended.after >= HELLO_TIMEOUT - 0.5


def test_a_websocket_that_sends_hello_but_never_authenticates_is_closed(node):
    ws = RawWebSocket(node.port)
    try:
        ws.send_wamp([HELLO, "realm1", {"roles": {"subscriber": {}}, "authmethods": ["ticket"], "authid": "x"}])
        ended = ws.wait_for_end(HELLO_TIMEOUT + SLACK)
    finally:
        ws.close()
    assert ended.close_code == POLICY_VIOLATION
    assert json.loads(ended.data)[0] == CHALLENGE  # it was asked for its ticket, and never answered


def test_a_peer_that_never_answers_the_servers_close_is_dropped(node):
    ws = RawWebSocket(node.port)
    try:
        ws.send(b"[" * 200_000)  # over max_message_size: the server closes with 1009
        ended = ws.wait_for_end(CLOSE_HANDSHAKE_TIMEOUT + SLACK, answer_close=False)
    finally:
        ws.close()
    assert ended.close_code == 1009 and ended.after >= CLOSE_HANDSHAKE_TIMEOUT - EARLY - 0.5


def test_a_joined_peer_that_stops_answering_pings_is_dropped(node):
    ws = RawWebSocket(node.port)
    try:
        ws.join(mint(unique("mute"), ["user"]))
        ended = ws.wait_for_end(PING_INTERVAL + PING_TIMEOUT + SLACK, answer_pings=False)
    finally:
        ws.close()
    assert ended.pings >= 1 and ended.close_code is None  # dropped, no close handshake


@pytest_twisted.ensureDeferred
async def test_a_joined_idle_client_stays_connected_past_every_timeout(node):
    client = await connect(node.url, mint(unique("idle"), ["user"]))
    try:
        idle = 2 * max(CLIENT_TIMEOUT, HELLO_TIMEOUT, PING_INTERVAL + PING_TIMEOUT, CLOSE_HANDSHAKE_TIMEOUT)
        await task.deferLater(reactor, idle, lambda: None)  # the behaviour under test is a timeout
        assert not client.left.called
        ack = await client.publish("app.chat.idle", "still here", options=PublishOptions(acknowledge=True))
        assert ack.id  # a round trip on the same session after 2 x the longest timeout
    finally:
        client.leave()
