"""The Python kit's recovering subscriptions (client.subscribe(..., recover=True)) against a real
router, in both deployments: a history answer held back while live events arrive still gives each
event once and in order; a connection really cut (a TCP relay stopped, the router up) recovers
exactly the events missed meanwhile; a restart of the memory store is announced recovered False."""

from __future__ import annotations

import pytest
import pytest_twisted
from autobahn.wamp.types import PublishOptions
from twisted.internet import defer, threads

from authenticator.contract import HISTORY
from authenticator.kit.recovery import NOT_HELD, RESUBSCRIBE, Recovery
from authenticator.kit.twisted import Backoff, Client
from tests.support.router import RouterProcess
from tests.support.tcp_relay import TcpRelay
from tests.support.tokens import TEST_SECRET, mint, unique
from tests.support.wamp import connect, eventually

ACK = PublishOptions(acknowledge=True)


def notifications(authid: str) -> str:
    return f"app.user.{authid}.notifications"


class HoldingClient(Client):
    """A kit Client whose history reads (those with a position) wait for the test: before the
    call is made and before its answer is handed to the kit."""

    hold = None  # async (stage) -> None, stage "call" or "answer"

    def _read_history(self, session, topic, since, limit):
        if self.hold is None or since is None:
            return super()._read_history(session, topic, since, limit)
        return defer.ensureDeferred(self._held(session, topic, since, limit))

    async def _held(self, session, topic, since, limit):
        await self.hold("call")
        answer = await super()._read_history(session, topic, since, limit)
        await self.hold("answer")
        return answer


class Subscriber:
    """A kit client as an application uses it: one recovering subscription, what it was handed
    (each event's number and whether it came from the history) and what on_recovered said."""

    def __init__(self, url: str, authid: str, topic: str, *, since=None, client_class=Client) -> None:
        self.received: list[tuple[int, bool]] = []
        self.recoveries: list[Recovery] = []
        # A 1.5 s cap (the default is 10 s): back within ~1 s of a restart or a cut's end.
        self.client = client_class(url, "realm1", lambda: mint(authid, ["user"], ttl=600), backoff=Backoff(maximum=1.5))
        self.subscription = self.client.subscribe(
            topic, self.on_event, recover=True, since=since, on_recovered=self.recoveries.append, details_arg="details"
        )

    def on_event(self, number, details) -> None:
        self.received.append((number, details.missed))

    def numbers(self) -> list[int]:
        return [number for number, _ in self.received]

    def caught_up(self, joins: int):
        return eventually(lambda: self.subscription.joins >= joins and self.subscription.ready, 15,
                          f"subscription number {joins}, caught up")  # fmt: skip

    def got(self, count: int):
        return eventually(lambda: len(self.received) >= count, 10, f"{count} events")


async def publisher(router):
    return await connect(router.url, mint("root", ["admin"], ttl=600))


@pytest_twisted.ensureDeferred
async def test_a_history_answer_held_back_while_live_events_arrive_gives_no_duplicate_and_no_gap(router):
    bob_id = unique("bob")
    topic = notifications(bob_id)
    admin, bob = await publisher(router), await connect(router.url, mint(bob_id, ["user"]))
    kit = None
    try:
        await admin.publish(topic, 0, options=ACK)
        seen = (await bob.call(HISTORY, topic))["position"]  # the application saw event 0
        for n in (1, 2, 3):  # missed: published before the kit subscribes
            await admin.publish(topic, n, options=ACK)
        kit = Subscriber(router.url, bob_id, topic, since=seen, client_class=HoldingClient)
        # live events that came: waiting in the recovery's buffer, or (were it not buffering) handed over
        arrived = lambda: len(kit.subscription.recovering._buffer) + [m for _, m in kit.received].count(False)  # noqa: E731
        stages = []

        async def hold(stage):
            # The read is made once 2 live events wait (4, 5: in its answer, and live: duplicates),
            # and answered once 2 more came (6, 7: live only, after the read).
            stages.append(stage)
            await eventually(lambda: arrived() >= (2 if stage == "call" else 4), 10, f"live events before {stage}")

        kit.client.hold = hold
        kit.client.start()
        await eventually(lambda: kit.subscription.joins >= 1, 15, "the kit to subscribe")
        for n in (4, 5):
            await admin.publish(topic, n, options=ACK)
        await eventually(lambda: stages == ["call", "answer"], 10, "the history call")
        for n in (6, 7):
            await admin.publish(topic, n, options=ACK)
        await kit.got(7)
        await admin.publish(topic, 8, options=ACK)  # live again, after the recovery
        await kit.got(8)
        assert kit.numbers() == [1, 2, 3, 4, 5, 6, 7, 8], kit.received
        assert [missed for _, missed in kit.received] == [True] * 5 + [False] * 3
        assert kit.recoveries == [Recovery(topic, True, 5, RESUBSCRIBE)]
    finally:
        admin.leave()
        bob.leave()
        if kit is not None:
            await kit.client.stop()


@pytest_twisted.ensureDeferred
async def test_a_connection_cut_while_the_router_stays_up_recovers_exactly_the_missed_events(router):
    bob_id = unique("bob")
    topic = notifications(bob_id)
    relay = TcpRelay(router.port).start()
    kit = Subscriber(relay.url(), bob_id, topic)
    admin = await publisher(router)
    try:
        kit.client.start()
        await kit.caught_up(1)
        for n in range(3):
            await admin.publish(topic, n, options=ACK)
        await kit.got(3)
        assert relay.stop() >= 1  # the network goes away; the router stays up
        await eventually(lambda: kit.client.state == "reconnecting", 10, "the kit to notice")
        for n in range(3, 8):  # published while the kit is away
            await admin.publish(topic, n, options=ACK)
        relay.start()
        await kit.caught_up(2)
        for n in (8, 9):
            await admin.publish(topic, n, options=ACK)
        await kit.got(10)
        assert kit.numbers() == list(range(10)), kit.received
        assert [n for n, missed in kit.received if missed] == [3, 4, 5, 6, 7]
        assert kit.recoveries == [Recovery(topic, True, 5, RESUBSCRIBE)]
    finally:
        admin.leave()
        await kit.client.stop()
        relay.stop()


@pytest.fixture(scope="module")
def own_router(tmp_path_factory):
    """A node of its own: the next test restarts it (the memory store)."""
    node = RouterProcess(tmp_path_factory.mktemp("kit-recovery"), env={"JWT_SECRET": TEST_SECRET},
                         loglevel="warn").start()  # fmt: skip
    yield node
    node.stop()


@pytest_twisted.ensureDeferred
async def test_a_restart_of_the_memory_store_is_announced_recovered_false(own_router):
    bob_id = unique("bob")
    topic = notifications(bob_id)
    kit = Subscriber(own_router.url, bob_id, topic)
    try:
        kit.client.start()
        await kit.caught_up(1)
        admin = await publisher(own_router)
        for n in (0, 1):
            await admin.publish(topic, n, options=ACK)
        await kit.got(2)
        admin.leave()
        await threads.deferToThread(own_router.restart)  # every stream starts again, another epoch
        await kit.caught_up(2)
        assert kit.recoveries == [Recovery(topic, False, 0, RESUBSCRIBE, NOT_HELD)]
        admin = await publisher(own_router)
        for n in (2, 3):  # the new epoch's first events, live
            await admin.publish(topic, n, options=ACK)
        admin.leave()
        await kit.got(4)
        assert kit.received == [(0, False), (1, False), (2, False), (3, False)]
    finally:
        await kit.client.stop()


@pytest_twisted.ensureDeferred
async def test_without_event_positions_every_event_still_arrives_once_and_in_order(router, monkeypatch):
    """An Autobahn the kit was not verified on: no x_position reaches it. Each live event is read
    from the history instead, through a cut too: the same events, once, in order."""
    from authenticator.kit import event_positions

    monkeypatch.setattr(event_positions, "_verdict", False)  # as positions_readable() decides on such a version
    bob_id = unique("bob")
    topic = notifications(bob_id)
    relay = TcpRelay(router.port).start()
    kit = Subscriber(relay.url(), bob_id, topic)
    reads = []
    history = kit.client._read_history
    kit.client._read_history = lambda *args: reads.append(args[2]) or history(*args)
    admin = await publisher(router)
    try:
        kit.client.start()
        await kit.caught_up(1)
        assert kit.client._position_notes is None
        for n in range(3):
            await admin.publish(topic, n, options=ACK)
        await kit.got(3)
        relay.stop()
        await eventually(lambda: kit.client.state == "reconnecting", 10, "the kit to notice")
        for n in range(3, 6):
            await admin.publish(topic, n, options=ACK)
        relay.start()
        await kit.caught_up(2)
        for n in (6, 7):
            await admin.publish(topic, n, options=ACK)
        await kit.got(8)
        assert kit.numbers() == list(range(8)), kit.received
        assert all(missed for _, missed in kit.received)  # every one of them from the history
        assert kit.recoveries == [Recovery(topic, True, 3, RESUBSCRIBE)]
        assert len(reads) >= 6  # a read per live event (or burst), besides the (re)subscriptions'
    finally:
        admin.leave()
        await kit.client.stop()
        relay.stop()
