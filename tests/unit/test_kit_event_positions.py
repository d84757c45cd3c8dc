"""The kits' one change to Autobahn (authenticator/kit/event_positions.py): the x_position of a
live EVENT reaches the kit through its own factory's serializers, every serializer a connection may
choose, and nothing else changes; on an Autobahn the hook was not verified on, the kit says so and
goes without it (its recovery then reads live events from the history)."""

import copy

import pytest
import txaio

txaio.use_twisted()  # as the Twisted kit does; Autobahn's serializers need a framework chosen

from autobahn.wamp import message  # noqa: E402
from autobahn.wamp.serializer import Serializer  # noqa: E402
from autobahn.wamp.websocket import WampWebSocketClientFactory  # noqa: E402

from authenticator.contract import EVENT_POSITION_DETAIL  # noqa: E402
from authenticator.kit import event_positions  # noqa: E402
from authenticator.patches.guard import ACCEPT_VARIABLE  # noqa: E402
from authenticator.patches.inventory import by_name  # noqa: E402

POSITION = {"offset": 41, "epoch": "9f2c4e1a7b3d5c60"}


def event_bytes(serializer, details: dict) -> bytes:
    raw = [message.Event.MESSAGE_TYPE, 7, 123, details, ["hello"], {"n": 1}]
    return serializer._serializer.serialize(raw)


@pytest.fixture
def verified():
    event_positions.positions_readable(version_of=lambda dist: event_positions.VERIFIED_AUTOBAHN[0], environ={})
    yield
    event_positions._verdict = None


def test_every_serializer_of_a_kit_factory_hands_over_the_position(verified):
    factory = WampWebSocketClientFactory(lambda: None)
    notes = event_positions.keep_positions(factory)
    assert notes is not None
    names = sorted(factory._serializers)
    assert {"json", "cbor", "msgpack"} <= set(names), names
    for name, serializer in factory._serializers.items():
        connection = copy.copy(serializer)  # what a connection does with the factory's serializer
        payload = event_bytes(connection, {EVENT_POSITION_DETAIL: POSITION, "publisher": 5})
        [event] = connection.unserialize(payload, connection._serializer.BINARY)
        assert type(event) is message.Event, name  # Autobahn's own message, unchanged
        assert (event.args, event.kwargs, event.publisher) == (["hello"], {"n": 1}, 5), name
        assert notes.position_of(7, 123) == POSITION, name
        [plain] = connection.unserialize(event_bytes(connection, {}), connection._serializer.BINARY)
        assert notes.position_of(plain.subscription, 999) is None
    # the classes are untouched: another factory (the application's own sessions) parses as before
    assert Serializer.MESSAGE_TYPE_MAP[message.Event.MESSAGE_TYPE] is message.Event
    other = WampWebSocketClientFactory(lambda: None)
    assert all(s.MESSAGE_TYPE_MAP[36] is message.Event for s in other._serializers.values())


def test_noted_positions_are_bounded(verified):
    notes = event_positions.keep_positions(WampWebSocketClientFactory(lambda: None))
    for publication in range(1, event_positions.NOTED_AT_MOST + 50):
        notes.parse([message.Event.MESSAGE_TYPE, 7, publication, {EVENT_POSITION_DETAIL: POSITION}])
    assert len(notes._noted) == event_positions.NOTED_AT_MOST and notes.position_of(7, 1) is None


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warn(self, format, **values):  # noqa: A002 - the logger's own name
        self.lines.append(format.format(**values))


def test_on_an_unverified_autobahn_the_kit_warns_and_goes_without_the_hook():
    log = Lines()
    try:
        assert event_positions.positions_readable(version_of=lambda dist: "99.0.0", environ={}, log=log) is False
        assert event_positions.keep_positions(WampWebSocketClientFactory(lambda: None)) is None
        [line] = log.lines
        assert "cannot read event positions on autobahn 99.0.0" in line and "Recovering subscriptions still" in line
        assert f"{ACCEPT_VARIABLE}=autobahn==99.0.0" in line
        accepted = {ACCEPT_VARIABLE: "crossbar==1.0, autobahn==99.0.0"}
        assert event_positions.positions_readable(version_of=lambda dist: "99.0.0", environ=accepted, log=log)
        assert "not verified (accepted by" in log.lines[1]
    finally:
        event_positions._verdict = None


def test_the_kit_checks_the_versions_the_inventory_names():
    entry = by_name("kit-event-positions")
    assert dict(entry.verified)["autobahn"] == event_positions.VERIFIED_AUTOBAHN
    assert event_positions.ACCEPT_VARIABLE == ACCEPT_VARIABLE
