"""authenticator/patches/body_limit.py at the component level: a real twisted.web Site and HTTPChannel on a
StringTransport, a Clock for the deadline. What a router test cannot afford: the per-worker cap on
body bytes in flight (64 MiB of held bodies), and the deadline to the tick. Through the real
router: tests/router/test_request_bodies.py."""

from __future__ import annotations

import json

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web import resource, server

from authenticator.patches import body_limit
from authenticator.patches.body_limit import BODY_DEADLINE, RETRY_AFTER


class Echo(resource.Resource):
    """A leaf that answers how many body bytes it read."""

    isLeaf = True

    def render_POST(self, request):  # noqa: N802 - Twisted's name
        return json.dumps({"read": len(request.content.read())}).encode()


@pytest.fixture
def clock(monkeypatch):
    """body_limit installed on twisted.web for this test only (Twisted restored after), its
    deadlines on a Clock, nothing held."""
    for name in body_limit._WRAPPED:  # restored after the test, whatever installed them before
        monkeypatch.setattr(server.Request, name, getattr(server.Request, name))
    clock = Clock()
    monkeypatch.setitem(body_limit._state, "installed", False)
    monkeypatch.setitem(body_limit._state, "clock", clock)
    monkeypatch.setitem(body_limit._state, "buffered", 0)
    body_limit.install()
    return clock


def connect(site: server.Site) -> tuple[object, StringTransport]:
    channel = site.buildProtocol(IPv4Address("TCP", "198.51.100.7", 40000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "198.51.100.7", 40000))
    channel.makeConnection(transport)
    return channel, transport


def site() -> server.Site:
    return server.Site(Echo(), timeout=None)  # Twisted's idle timeout off: only the deadline runs


def head(length: int | None) -> bytes:
    framing = b"Transfer-Encoding: chunked" if length is None else b"Content-Length: %d" % length
    return b"POST /x HTTP/1.1\r\nHost: h\r\n" + framing + b"\r\n\r\n"


def status(transport: StringTransport) -> int | None:
    value = transport.value()
    return int(value.split(b" ", 2)[1]) if value.startswith(b"HTTP/1.1 ") else None


def answer(transport: StringTransport) -> dict:
    return json.loads(transport.value().split(b"\r\n\r\n", 1)[1])


def lose(channel) -> None:
    channel.connectionLost(Failure(ConnectionError("closed")))


def test_a_body_incomplete_at_the_deadline_is_answered_408_and_its_connection_closed(clock):
    channel, transport = connect(site())
    channel.dataReceived(head(65536) + b"x" * 65000)
    assert body_limit.buffered_bytes() == 65536
    for _ in range(int(BODY_DEADLINE) - 1):  # a byte a second: Twisted's idle timeout would start again
        clock.advance(1)
        channel.dataReceived(b"x")
    clock.advance(0.9)
    assert transport.value() == b"" and not transport.disconnecting
    clock.advance(0.2)
    assert status(transport) == 408
    assert answer(transport) == {"error": body_limit.TOO_SLOW_MESSAGE}
    assert b"Connection: close" in transport.value() and transport.disconnecting
    lose(channel)
    assert body_limit.buffered_bytes() == 0


def test_a_body_in_time_is_processed_and_its_deadline_cancelled(clock):
    channel, transport = connect(site())
    channel.dataReceived(head(10) + b"01234")
    clock.advance(BODY_DEADLINE - 1)
    channel.dataReceived(b"56789")
    assert status(transport) == 200 and answer(transport) == {"read": 10}
    assert clock.getDelayedCalls() == []
    assert body_limit.buffered_bytes() == 0  # answered: nothing held


def test_past_the_cap_a_new_body_is_refused_503_unread_with_retry_after(clock, monkeypatch):
    monkeypatch.setattr(body_limit, "MAX_BUFFERED_BYTES", 3 * 60000)
    held = [connect(site()) for _ in range(3)]
    for channel, _ in held:
        channel.dataReceived(head(60000))  # declared, withheld: each holds its length
    assert body_limit.buffered_bytes() == 3 * 60000

    channel, transport = connect(site())
    channel.dataReceived(head(1))
    assert status(transport) == 503
    assert b"Retry-After: %d\r\n" % RETRY_AFTER in transport.value() and transport.disconnecting
    assert answer(transport) == {"error": body_limit.BUSY_MESSAGE}
    lose(channel)

    chunked, transport = connect(site())  # chunked: counted as it grows, cut off at the cap
    lose(held.pop()[0])  # one held body gone: 60,000 bytes free
    chunked.dataReceived(head(None) + b"ea60\r\n" + b"x" * 60000 + b"\r\n")
    assert status(transport) is None
    chunked.dataReceived(b"1\r\nx\r\n")
    assert status(transport) == 503
    lose(chunked)

    for channel, _ in held:  # their deadline: 408, and all of it free again
        clock.advance(BODY_DEADLINE)
        lose(channel)
    assert body_limit.buffered_bytes() == 0
    channel, transport = connect(site())
    channel.dataReceived(head(3) + b"abc")
    assert status(transport) == 200


def test_the_refusals_are_one_line_naming_the_client(clock, monkeypatch):
    lines = []
    monkeypatch.setattr(body_limit.log, "warn", lambda text, **fields: lines.append(text.format(**fields)))
    channel, _ = connect(site())
    channel.dataReceived(head(100) + b"x" * 40)
    clock.advance(BODY_DEADLINE)
    [line] = lines
    assert line == (
        f"http request refused: status=408 reason=too_slow detail=body incomplete {BODY_DEADLINE:.0f} s after its "
        "headers (40 of 100 bytes) path=/x peer=198.51.100.7:40000"
    )


def test_an_http2_stream_past_the_deadline_is_reset_and_gives_back_what_it_held(clock):
    """Over HTTP/2 (TLS with clients that offer it) the stream is reset, not answered: Twisted
    forgets an answered stream, and DATA the client then still sent raised KeyError in Twisted's
    connection. Later DATA on the reset stream is refused by the h2 state machine, quietly."""
    import h2.config
    import h2.connection
    import h2.events
    from hyperframe.frame import DataFrame
    from twisted.web._http2 import H2Connection

    web = site()
    connection = H2Connection(reactor=clock)
    connection.site, connection.requestFactory = web, web.requestFactory
    transport = StringTransport(peerAddress=IPv4Address("TCP", "198.51.100.7", 40000))
    connection.makeConnection(transport)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, [(":method", "POST"), (":path", "/x"), (":authority", "h"), (":scheme", "https"),
                            ("content-length", "100")])  # fmt: skip
    client.send_data(1, b"x" * 40)
    connection.dataReceived(client.data_to_send())
    assert body_limit.buffered_bytes() == 100
    clock.advance(BODY_DEADLINE)
    events = client.receive_data(transport.value())
    assert [type(e) for e in events if isinstance(e, h2.events.StreamReset | h2.events.ResponseReceived)] == [
        h2.events.StreamReset
    ]
    assert body_limit.buffered_bytes() == 0
    late = DataFrame(1)
    late.data, late.flags = b"x" * 60, {"END_STREAM"}
    transport.clear()
    connection.dataReceived(late.serialize())  # no KeyError
    assert not transport.disconnecting
    connection.connectionLost(Failure(ConnectionError("closed")))
