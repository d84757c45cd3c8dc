"""Several nodes: two single-worker nodes joined by Crossbar router links (realms[].rlinks), written
by cluster-config (docs/scaling.md; three nodes: test_cluster.py). Events published on one node
reach entitled subscribers on the other, and only them."""

import pytest
import pytest_twisted
from autobahn.wamp.types import PublishOptions
from twisted.internet import reactor, task

from tests.support.cluster import start_cluster
from tests.support.tokens import mint, unique
from tests.support.wamp import Inbox, connect, wamp_error

ACK = PublishOptions(acknowledge=True)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """Two nodes as `python -m authenticator cluster-config --nodes 2` writes them (one Redis)."""
    from tests.support.redis_server import RedisServer

    redis_server = RedisServer(tmp_path_factory.mktemp("rlink-redis")).start()
    nodes = start_cluster(tmp_path_factory, "rlink-node", 2, redis_server.url)
    yield nodes
    for node in nodes:
        node.stop()
    redis_server.stop()


async def until_one_arrives(publish, inbox: Inbox, what: str) -> None:
    """The link mirrors a subscription to the other node once it exists there: publish until the
    first event crosses (bounded)."""
    for attempt in range(50):
        await publish(attempt)
        if inbox.events:
            return
        await task.deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"no event crossed the router link to {what} within 5 s")


async def args_until(inbox: Inbox, marker: str) -> list:
    """Every event's args up to and including the marker (which must arrive)."""
    seen = []
    while not seen or seen[-1] != (marker,):
        seen.append((await inbox.next(5))[0])
    return seen


@pytest_twisted.ensureDeferred
async def test_events_published_on_one_node_reach_entitled_subscribers_on_the_other(two_nodes):
    first, second = two_nodes
    bob_name, alice_name = unique("bob"), unique("alice")
    bob = await connect(second.url, mint(bob_name, ["user"]))
    alice = await connect(second.url, mint(alice_name, ["user"]))
    bob_inbox, alice_inbox, feed = Inbox(), Inbox(), Inbox()
    bob_topic, alice_topic = f"app.user.{bob_name}.notifications", f"app.user.{alice_name}.notifications"
    await bob.subscribe(bob_inbox, bob_topic)
    await alice.subscribe(alice_inbox, alice_topic)
    await alice.subscribe(feed, "app.public.feed")
    root = await connect(first.url, mint("root", ["admin"]))
    try:
        # Both users' subscriptions reach across the link before anything is checked.
        await until_one_arrives(lambda i: root.publish(bob_topic, f"bob ping {i}", options=ACK), bob_inbox, "bob")
        await until_one_arrives(lambda i: root.publish(alice_topic, f"alice ping {i}", options=ACK), alice_inbox,
                                "alice")  # fmt: skip
        await root.publish(bob_topic, "for bob only", options=ACK)
        await root.publish("app.public.feed", "news for everyone", options=ACK)
        await root.publish(alice_topic, "alice marker", options=ACK)  # crosses the link after bob's event
        assert (await feed.next(5))[0] == ("news for everyone",)
        bob_got = await args_until(bob_inbox, "for bob only")
        alice_got = await args_until(alice_inbox, "alice marker")  # all that could reach alice by now has
        assert all(args[0].startswith("bob ") for args in bob_got[:-1]), bob_got
        assert all(args[0].startswith("alice ") for args in alice_got), alice_got
    finally:
        for client in (root, bob, alice):
            client.leave()


@pytest_twisted.ensureDeferred
async def test_alice_cannot_subscribe_to_bobs_notifications_on_either_node(two_nodes):
    """Bob's events reach his node over the link; on both nodes alice's subscription is refused."""
    bob_topic = f"app.user.{unique('bob')}.notifications"
    for node in two_nodes:
        alice = await connect(node.url, mint(unique("alice"), ["user"]))
        try:
            assert await wamp_error(alice.subscribe(Inbox(), bob_topic)) == "wamp.error.not_authorized"
        finally:
            alice.leave()


# -- history over router links with one Redis ------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_an_event_relayed_by_a_link_is_kept_once_in_the_shared_history(two_nodes):
    first, second = two_nodes
    bob_name = unique("bob")
    topic = f"app.user.{bob_name}.notifications"
    bob = await connect(second.url, mint(bob_name, ["user"]))
    root = await connect(first.url, mint("root", ["admin"]))
    inbox = Inbox()
    try:
        await bob.subscribe(inbox, topic)
        await until_one_arrives(lambda i: root.publish(topic, f"ping {i}", options=ACK), inbox, "bob")
        await root.publish(topic, "kept once", options=ACK)
        received = await args_until(inbox, "kept once")
        kept = await bob.call("authenticator.history", topic, limit=1000)
        published = [event["args"][0] for event in kept["events"]]
        # every event bob received is in the one stream once, in the order published, offsets 1, 2, ...
        assert published[-1] == "kept once" and len(published) == len(set(published)), published
        assert [(args[0],) for args in received][-1] == ("kept once",)
        assert [event["position"]["offset"] for event in kept["events"]] == list(range(1, len(published) + 1))
    finally:
        bob.leave()
        root.leave()
