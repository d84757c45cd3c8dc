"""Presence shared through Redis by several routers (a real redis-server): one answer and one stream
of join/leave events for the whole deployment, and a crashed router's members gone within the TTL."""

import json
import os
import signal
import time
from collections import Counter

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor, task

from authenticator.core.presence import PresenceTable
from authenticator.server.redis_presence import EVENTS_CHANNEL, RedisPresence
from tests.support.redis_server import RedisServer
from tests.support.router import RouterProcess, start_all, stop_all
from tests.support.tokens import TEST_SECRET, mint, unique
from tests.support.wamp import Inbox, connect

PRESENCE = "authenticator.presence"
EVENTS = "authenticator.presence."
TTL = 3  # seconds: presence.ttl_seconds of these routers (each refreshes its entries every second)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


def _node(workdir, redis_url):
    def configure(config):
        extra = config["workers"][0]["components"][0]["extra"]
        extra["store"] = {"redis_url": redis_url}
        extra["presence"] = {"ttl_seconds": TTL}

    return RouterProcess(workdir, env={"JWT_SECRET": TEST_SECRET}, edit_config=configure)


@pytest.fixture(scope="module")
def routers(tmp_path_factory, redis_server):
    """Three routers sharing Redis, started at once: the two the tests share, and one a test kills."""
    workdirs = [tmp_path_factory.mktemp(name) for name in ("presence-router1", "presence-router2", "presence-doomed")]
    nodes = start_all([_node(workdir, redis_server.url) for workdir in workdirs])
    yield nodes
    stop_all(nodes)


@pytest.fixture(scope="module")
def two_routers(routers):
    return routers[:2]


@pytest.fixture(scope="module")
def doomed(routers):
    """A router of its own for the test that kills it (no other test uses it)."""
    return routers[2]


async def user(router, name):
    return await connect(router.url, mint(name, ["user"]))


async def feed(client, topic) -> Inbox:
    inbox = Inbox()
    await client.subscribe(lambda event, authid: inbox((event, authid)), EVENTS + topic)
    return inbox


async def next_event(inbox: Inbox, timeout: float = 10):
    (event,), _ = await inbox.next(timeout)
    return event


async def pause(seconds: float) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_two_routers_share_one_answer_and_one_stream_of_events(two_routers):
    first, second = two_routers
    topic = f"app.chat.{unique('room')}"
    bob_id = unique("bob")
    watcher = await user(first, unique("alice"))
    bob_here, bob_there = await user(first, bob_id), await user(second, bob_id)
    clients = [watcher, bob_here, bob_there]
    try:
        events = await feed(watcher, topic)
        await bob_there.subscribe(Inbox(), topic)  # on the other router: relayed through Redis
        assert await next_event(events) == ("join", bob_id)
        await bob_here.subscribe(Inbox(), topic)  # his second session, on this router: no event
        carol = await user(second, unique("carol"))
        clients.append(carol)
        await carol.subscribe(Inbox(), topic)
        assert await next_event(events) == ("join", carol.details.authid)  # after anything bob's second caused
        expected = {"authids": sorted([bob_id, carol.details.authid]), "users": 2, "sessions": 3, "truncated": False}
        assert await watcher.call(PRESENCE, topic) == expected
        assert await carol.call(PRESENCE, topic) == expected  # the same answer on the other router
        bob_there.leave()
        await bob_there.left
        bob_here.leave()
        await bob_here.left
        assert await next_event(events) == ("leave", bob_id)  # his last session, whichever router
        assert events.events == []
    finally:
        for client in clients:
            if client.is_attached():
                client.leave()


@pytest_twisted.ensureDeferred
async def test_a_killed_routers_members_leave_within_the_ttl(two_routers, doomed):
    first, _ = two_routers
    topic = f"app.chat.{unique('room')}"
    watcher = await user(first, unique("alice"))
    try:
        events = await feed(watcher, topic)
        since_watcher = time.monotonic()
        await watcher.subscribe(Inbox(), topic)
        assert await next_event(events) == ("join", watcher.details.authid)
        dave = await user(doomed, unique("dave"))
        await dave.subscribe(Inbox(), topic)
        assert await next_event(events) == ("join", dave.details.authid)
        answer = await watcher.call(PRESENCE, topic)
        assert answer["authids"] == sorted([watcher.details.authid, dave.details.authid])
        pids = doomed.node_pids()
        for pid in pids:  # a crash: no GOODBYE, no leave, no last words to Redis
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        # Its entries expire at most TTL after its last refresh, which came before the kill: a read
        # sent later than that never shows them (0.25 s for the signals to land).
        while True:
            asked = time.monotonic()
            if dave.details.authid not in (await watcher.call(PRESENCE, topic))["authids"]:
                break
            assert asked - killed < TTL + 0.25, "the killed router's member outlived the TTL"
            await pause(0.1)
        gone_after = time.monotonic() - killed
        # The read that left it out dropped it, and announced its leave to every router.
        assert await next_event(events) == ("leave", dave.details.authid)
        # This router's own member outlived the TTL: its router refreshes it.
        assert time.monotonic() - since_watcher > TTL
        answer = await watcher.call(PRESENCE, topic)
        assert answer == {"authids": [watcher.details.authid], "users": 1, "sessions": 1, "truncated": False}
        print(f"the killed router's member was gone {gone_after:.1f} s after the kill (TTL {TTL} s)")
    finally:
        watcher.leave()
        doomed.process.wait(timeout=10)


def test_redis_decides_join_and_leave_across_routers_and_drops_stale_entries(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    one, two = RedisPresence(client, node="n1", ttl_seconds=1), RedisPresence(client, node="n2", ttl_seconds=60)
    topic = f"app.chat.{unique('room')}"
    heard = []
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("crossbar-jwt:presence-events")
    try:
        one.apply([("add", topic, 1, "bob"), ("add", topic, 2, "bob")])
        two.apply([("add", topic, 1, "bob"), ("add", topic, 3, "carol"), ("remove", topic, 1)])
        assert sorted(two.read(topic)) == ["bob", "bob", "carol"]
        one.apply([("remove", topic, 1)])
        deadline = time.monotonic() + 5
        while sorted(two.read(topic)) != ["carol"]:  # n1's entries (ttl 1 s) expire without a refresh
            assert time.monotonic() < deadline
            time.sleep(0.05)
        deadline = time.monotonic() + 5
        while len(heard) < 3 and time.monotonic() < deadline:  # (the subscription's confirmation reads as None)
            message = pubsub.get_message(timeout=0.5)
            if message is not None:
                heard.append(message["data"])
        assert [(e["event"], e["authid"]) for e in map(json.loads, heard)] == [
            ("join", "bob"), ("join", "carol"), ("leave", "bob"),
        ]  # fmt: skip
    finally:
        pubsub.close()
        client.close()


MODEL_SEEN: Counter = Counter()


def test_redis_presence_follows_the_model_across_two_routers(redis_server):
    """core/presence's model property against the Redis scripts: the sessions of two routers (odd
    and even sessions) change one topic's members in random order; every read is the truth and the
    announced events are exactly the memory table's, in order (derandomized, as the unit property)."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    nodes = [RedisPresence(client, node=f"model{i}", ttl_seconds=60) for i in (0, 1)]
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(EVENTS_CHANNEL)
    MODEL_SEEN.clear()
    try:
        _redis_model(nodes, pubsub, client)
    finally:
        pubsub.close()
        client.close()
    assert MODEL_SEEN["join"] >= 50 and MODEL_SEEN["leave"] >= 50 and MODEL_SEEN["second session"] >= 20, MODEL_SEEN


def _redis_model(nodes, pubsub, client):
    @settings(max_examples=120, derandomize=True, database=None, deadline=None)
    @given(MODEL_OPERATIONS)
    def check(operations):
        topic = f"app.chat.{unique('model')}"
        table, expected = PresenceTable(), []
        for kind, session in operations:
            node, authid = nodes[session % 2], f"user{session % 3}"
            if kind == "subscribe":
                if table.holds(session, topic):
                    continue
                change = table.subscribed(topic, session, authid)
                MODEL_SEEN["second session" if change is None else "join"] += 1
                node.apply([("add", topic, session, authid)])
            else:
                change = table.unsubscribed(topic, session)
                node.apply([("remove", topic, session)])
                MODEL_SEEN["leave"] += change is not None
            if change is not None:
                expected.append((change.event, change.authid))
            assert sorted(node.read(topic)) == sorted(a for _, a in table.members(topic))
        marker = f"marker-{topic}"
        client.publish(EVENTS_CHANNEL, marker)
        heard, deadline = [], time.monotonic() + 10
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message is None:
                continue
            if message["data"] == marker.encode():
                break
            event = json.loads(message["data"])
            if event["topic"] == topic:
                heard.append((event["event"], event["authid"]))
        else:
            raise AssertionError("the marker was not heard")
        assert heard == expected

    check()


MODEL_OPERATIONS = st.lists(
    st.tuples(st.sampled_from(("subscribe", "unsubscribe")), st.integers(min_value=0, max_value=5)), max_size=40
)


@pytest_twisted.ensureDeferred
async def test_presence_refuses_while_redis_is_down_and_the_refresh_restores_what_redis_lost(two_routers, redis_server):
    first, _ = two_routers
    topic = f"app.chat.{unique('room')}"
    alice = await user(first, unique("alice"))
    try:
        await alice.subscribe(Inbox(), topic)
        expected = {"authids": [alice.details.authid], "users": 1, "sessions": 1, "truncated": False}
        while await alice.call(PRESENCE, topic) != expected:  # her add is on its way to Redis
            await pause(0.1)
        offset = first.log_size()
        redis_server.stop()  # no persistence: it comes back empty
        try:
            try:
                await alice.call(PRESENCE, topic)
            except ApplicationError as error:
                assert error.error == "authenticator.error.presence_unavailable"
            else:
                raise AssertionError("presence answered without its store")
            first.wait_for_log(f"presence: could not read {topic} from Redis", after=offset)
        finally:
            redis_server.start()
        # Redis lost every entry; her router's next refresh (every third of the TTL) adds hers again.
        deadline = time.monotonic() + TTL + 5
        while True:
            try:
                if await alice.call(PRESENCE, topic) == expected:
                    break
            except ApplicationError as error:
                assert error.error == "authenticator.error.presence_unavailable"  # the client reconnecting
            assert time.monotonic() < deadline, "the refresh did not restore the member"
            await pause(0.1)
    finally:
        alice.leave()
