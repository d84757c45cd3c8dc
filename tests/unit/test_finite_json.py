"""authenticator/patches/finite_json.py on Autobahn's own serializers: NaN and Infinity refused on the way
in, in any field of any message; never written on the way out, where a message that cannot be
written as JSON is not sent to that peer (one warn line), and binary peers get it as sent.
Through the real router: tests/router/test_non_finite_numbers.py."""

from __future__ import annotations

import math

import pytest
from autobahn.twisted.websocket import WampWebSocketServerProtocol  # first: selects Twisted for txaio
from autobahn.wamp import message, serializer
from autobahn.wamp.exception import ProtocolError
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer
from autobahn.wamp.websocket import WampWebSocketProtocol

from authenticator.patches import finite_json
from authenticator.patches.finite_json import DropLog, LoneSurrogate, NonFiniteNumber, install

CLOSE_REASON_BYTES = 123  # what a WebSocket close frame holds


@pytest.fixture(autouse=True)
def installed():
    install()


HOSTILE = [
    (b'[1, "realm1", {"roles": {"subscriber": {}}, "authextra": {"x": NaN}}]', "NaN"),  # HELLO: before any login
    (b'[16, 1, {}, "app.chat.x", [NaN]]', "NaN"),
    (b'[16, 1, {}, "app.chat.x", [], {"a": [{"b": Infinity}]}]', "Infinity"),
    (b'[48, 1, {}, "authenticator.refresh", [-Infinity]]', "-Infinity"),
    (b"[70, 1, {}, [1e999]]", "1e999"),  # YIELD; valid JSON that Python reads as infinity
    (b'[16, 1, {}, "app.chat.x", [-1' + b"0" * 400 + b".5]]", "-10000000..."),  # shown clipped
]


@pytest.mark.parametrize(("raw", "named"), HOSTILE)
def test_a_message_carrying_a_non_finite_number_is_a_protocol_error_that_says_what_to_send(raw, named):
    with pytest.raises(ProtocolError) as refused:
        JsonSerializer().unserialize(raw, isBinary=False)
    reason = f"WAMP Protocol Error ({refused.value})"  # what Autobahn closes the sender's WebSocket with
    assert f"NonFiniteNumber {named} is" in reason and "send " in reason, reason
    assert len(reason.encode()) <= CLOSE_REASON_BYTES, reason  # not cut off


def test_finite_numbers_and_autobahns_own_encodings_still_pass():
    [publish] = JsonSerializer().unserialize(
        b'[16, 1, {}, "app.chat.x", [1.5, -0.0, 1e308, 5e-324, 7, "\\u0000AQI="], {"NaN": "Infinity"}]', False
    )
    assert publish.args == [1.5, -0.0, 1e308, 5e-324, 7, b"\x01\x02"] and publish.kwargs == {"NaN": "Infinity"}


class Peer(WampWebSocketServerProtocol):
    """A router-side WAMP-over-WebSocket transport that records what it would put on the wire."""

    def __init__(self, wire_serializer, session_id: int) -> None:
        self._serializer = wire_serializer
        self._session = type("Session", (), {"_session_id": session_id, "_authid": None})()
        self.sent: list[bytes] = []

    def sendMessage(self, payload, isBinary=False):  # noqa: N802, N803 - Autobahn's names
        self.sent.append(payload)


def event(*args) -> message.Event:
    return message.Event(subscription=1, publication=2, args=list(args))


def test_an_event_json_cannot_carry_is_sent_to_no_json_peer_with_one_warn_line_and_binary_peers_get_it(
    monkeypatch,
):
    lines = []
    monkeypatch.setattr(finite_json, "_drops", DropLog(lambda text, **fields: lines.append(text.format(**fields))))
    shared = JsonSerializer()
    json_peers = [Peer(shared, 1), Peer(shared, 2), Peer(JsonSerializer(), 3)]
    cbor_peer = Peer(CBORSerializer(), 4)
    hostile = event("x", float("nan"))  # a float NaN from a session that does not speak JSON
    for peer in (*json_peers, cbor_peer):
        peer.send(hostile)
    assert [peer.sent for peer in json_peers] == [[], [], []]
    [line] = lines
    assert "EVENT not sent to JSON peers: it carries NaN or Infinity" in line and "session=1" in line, line
    [cbor] = cbor_peer.sent
    assert math.isnan(CBORSerializer().unserialize(cbor, True)[0].args[1])

    for peer in json_peers:
        peer.send(event("after", 1.5))
    assert [peer.sent for peer in json_peers] == [[b'[36,1,2,{},["after",1.5]]']] * 3
    assert len(lines) == 1


LONE_SURROGATES = [
    (b'[1, "realm1\\ud800", {"roles": {"subscriber": {}}}]', "\\ud800"),  # HELLO's realm
    (b'[16, 1, {}, "app.chat.x", ["\\ud800"]]', "\\ud800"),
    (b'[16, 1, {}, "app.chat.x", [], {"a": [{"\\uDFFF": 1}]}]', "\\udfff"),  # a key, deep
    (b'[32, 1, {}, "nope.x\\udbff"]', "\\udbff"),  # a URI
    (b'[48, 1, {}, "x.y", ["\\ud83d\\ude00\\udc00"]]', "\\udc00"),  # a low half after a valid pair
    (b'[16, 1, {"x": "\\ud800"}, "app.chat.x"]', "\\ud800"),  # options
]


@pytest.mark.parametrize(("raw", "escape"), LONE_SURROGATES)
def test_a_lone_surrogate_anywhere_is_a_protocol_error_that_says_what_to_send(raw, escape):
    with pytest.raises(ProtocolError) as refused:
        JsonSerializer().unserialize(raw, isBinary=False)
    reason = f"WAMP Protocol Error ({refused.value})"
    assert reason == (
        f"WAMP Protocol Error (invalid serialization of WAMP message: LoneSurrogate {escape} is not valid Unicode: "
        "send valid UTF-8)"
    )
    assert len(reason.encode()) <= CLOSE_REASON_BYTES, reason  # whole: not cut off


def test_valid_pairs_and_an_escaped_backslash_before_u_still_pass():
    [publish] = JsonSerializer().unserialize(b'[16, 1, {}, "app.chat.x", ["\\ud83d\\ude00", "\\\\ud800"]]', False)
    assert publish.args == ["\U0001f600", "\\ud800"]


@pytest.mark.parametrize(
    ("unsendable", "why"),
    [
        ("\ud800", "it carries a lone surrogate, which is not valid Unicode"),
        ({"\udfff": 1}, "it carries a lone surrogate, which is not valid Unicode"),  # in a key
        (object(), "it cannot be written as JSON (TypeError)"),  # a type no serializer writes
    ],
    ids=["surrogate", "surrogate-key", "object"],
)
def test_a_message_no_serializer_can_write_is_dropped_for_every_peer_without_raising(monkeypatch, unsendable, why):
    """What a component in the router could make: the broker's fan-out loop called send for each
    receiver, and the first that raised stopped it (later receivers missed the event, a traceback
    was logged); behind the proxies the CBOR link raised. Every peer, JSON or CBOR, WebSocket or
    RawSocket (the proxies' link to the router, both ways), drops it with the one line."""
    from autobahn.twisted.rawsocket import WampRawSocketServerProtocol

    class RawPeer(WampRawSocketServerProtocol):
        def __init__(self, wire_serializer, session_id: int) -> None:
            self._serializer = wire_serializer
            self._session = type("Session", (), {"_session_id": session_id, "_authid": None})()
            self._max_len_send = 0
            self.sent: list[bytes] = []

        def sendString(self, payload):  # noqa: N802 - Twisted's name
            self.sent.append(payload)

    lines = []
    monkeypatch.setattr(finite_json, "_drops", DropLog(lambda text, **fields: lines.append(text.format(**fields))))
    peers = [
        Peer(JsonSerializer(), 1),
        Peer(CBORSerializer(), 2),
        RawPeer(CBORSerializer(), 3),
        Peer(JsonSerializer(), 4),
    ]
    hostile = event("x", unsendable)
    for peer in peers:
        assert peer.send(hostile) is None  # no exception into the sender
    assert [peer.sent for peer in peers] == [[], [], [], []]
    [line] = lines  # rate-limited: one for the message, whatever the peers
    assert line.startswith(f"authenticator: EVENT not sent to JSON peers: {why} (the first: session=1)."), line
    assert "\ud800" not in line and "\udfff" not in line  # the line carries no surrogate itself

    for peer in peers:
        peer.send(event("after"))
    assert [len(peer.sent) for peer in peers] == [1, 1, 1, 1]


def test_drops_are_logged_at_most_once_per_interval_counting_the_rest():
    now = [100.0]
    lines = []
    drops = DropLog(lambda text, **fields: lines.append(text.format(**fields)), interval=10, clock=lambda: now[0])
    for _ in range(5):
        drops.dropped(event(float("inf")), 7)
    now[0] += 10
    drops.dropped(event(float("inf")), 8)
    assert len(lines) == 2 and "(4 more since the last such line)" in lines[1], lines


def test_autobahns_json_writer_refuses_nan_as_the_last_line():
    with pytest.raises(NonFiniteNumber):
        serializer.JsonObjectSerializer().serialize([1, {"a": float("-inf")}])


def test_install_is_idempotent_and_refuses_to_run_without_its_targets(monkeypatch):
    decoder, send = serializer._WAMPJsonDecoder, WampWebSocketProtocol.send
    install()
    assert (serializer._WAMPJsonDecoder, WampWebSocketProtocol.send) == (decoder, send)  # not wrapped twice
    monkeypatch.delattr(serializer, "_WAMPJsonEncoder")
    with pytest.raises(RuntimeError, match="autobahn.wamp.serializer:_WAMPJsonEncoder is missing"):
        install()
    monkeypatch.undo()
    monkeypatch.setattr(serializer, "_USE_UJSON", True, raising=False)
    with pytest.raises(RuntimeError, match="ujson"):
        install()


def test_install_proves_the_patch_holds(monkeypatch):
    """A target that keeps its name but is no longer used (an Autobahn upgrade) fails the install."""
    monkeypatch.setattr(serializer, "_loads", lambda s, **kwargs: __import__("json").loads(s))
    with pytest.raises(RuntimeError, match="still reads"):
        install()


def test_install_proves_lone_surrogates_are_refused(monkeypatch):
    monkeypatch.setattr(finite_json, "refuse_lone_surrogates", lambda document: None)
    with pytest.raises(RuntimeError, match="still reads"):
        install()
    monkeypatch.undo()
    with pytest.raises(LoneSurrogate):
        serializer.JsonObjectSerializer().unserialize(b'["\\ud800"]')
