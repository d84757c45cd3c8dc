"""What the WebSocket transport accepts, against the shipped config in both deployments: JSON
only (no binary serializer's parser is reachable), messages up to max_message_size (64 KiB)."""

import json

import pytest_twisted
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from tests.support.raw_websocket import TEXT, RawWebSocket, frame
from tests.support.router import REPO
from tests.support.tokens import mint, unique
from tests.support.wamp import Inbox, connect

MESSAGE_TOO_BIG = 1009
MAX_MESSAGE_SIZE = 64 * 1024


def test_the_shipped_config_bounds_what_a_client_can_send_and_how_long_it_can_wait():
    web = json.loads((REPO / ".crossbar" / "config.json").read_text())["workers"][0]["transports"][0]
    ws = web["paths"]["ws"]
    assert ws["serializers"] == ["json"]
    assert ws["options"]["max_message_size"] == MAX_MESSAGE_SIZE
    assert {"open_handshake_timeout", "close_handshake_timeout", "auto_ping_interval", "auto_ping_timeout"} <= set(
        ws["options"]
    )
    assert web["options"]["client_timeout"] > 0


def test_only_wamp_json_is_accepted_at_the_upgrade(router):
    offered = ["wamp.2.ubjson", "wamp.2.msgpack", "wamp.2.cbor", "wamp.2.flatbuffers", "wamp.2.ubjson.batched",
               "wamp.2.msgpack.batched", "wamp.2.cbor.batched", "wamp.2.json", "wamp.2.json.batched"]  # fmt: skip
    answers = {}
    for subprotocol in offered:
        ws = RawWebSocket(router.port, (subprotocol,))
        answers[subprotocol] = (ws.status, ws.headers.get("sec-websocket-protocol"))
        ws.close()
    assert answers == {p: (101, p) if p.startswith("wamp.2.json") else (400, None) for p in offered}


@pytest_twisted.ensureDeferred
async def test_a_client_offering_every_serializer_is_served_in_json(router):
    client = await connect(router.url, mint(unique("alice"), ["user"]))  # Autobahn offers cbor, msgpack, ubjson, json
    try:
        assert client._transport.websocket_protocol_in_use in ("wamp.2.json", "wamp.2.json.batched")
    finally:
        client.leave()


@pytest_twisted.ensureDeferred
async def test_a_200_kb_message_closes_that_connection_with_1009_and_the_router_serves_on(router):
    ws = RawWebSocket(router.port)
    try:
        ws.send(b"[" * 200_000)  # nested JSON, before any HELLO
        ended = ws.wait_for_end(10)
    finally:
        ws.close()
    assert ended.close_code == MESSAGE_TOO_BIG
    client = await connect(router.url, mint(unique("alice"), ["user"]))
    client.leave()


def test_a_frame_declaring_200_kb_is_refused_from_its_header(router):
    ws = RawWebSocket(router.port)
    try:
        ws.sock.sendall(frame(b"[" * 100, TEXT, length=200_000))  # the other 199,900 bytes never come
        ended = ws.wait_for_end(10)
    finally:
        ws.close()
    assert ended.close_code == MESSAGE_TOO_BIG


@pytest_twisted.ensureDeferred
async def test_a_60_kb_event_is_still_delivered(router):
    client = await connect(router.url, mint(unique("alice"), ["user"]))
    try:
        inbox = Inbox()
        await client.subscribe(inbox, "app.chat.big", options=SubscribeOptions())
        payload = "x" * 60_000
        await client.publish("app.chat.big", payload, options=PublishOptions(acknowledge=True, exclude_me=False))
        (args, _kwargs) = await inbox.next()
        assert args == (payload,)
    finally:
        client.leave()
