"""Three nodes written by `python -m authenticator cluster-config` (router links in a full mesh, one
Redis), started once for the module: events, privacy, revocation, history and a restart across
them. docs/scaling.md#several-nodes.

The checks of two nodes (once test_rlinks.py, which started a pair of its own: ~20 s of a test
process) run on nodes 1 and 2 of these three, at the end of this module."""

import pytest
import pytest_twisted
from autobahn.wamp.types import PublishOptions, SubscribeOptions
from twisted.internet import reactor, task

from authenticator.contract import EVENT_POSITION_DETAIL, PRESENCE_TOPIC_PREFIX
from authenticator.core.policy import LINKED_FILTER_REASON
from tests.router.test_http_publish import post
from tests.support.cluster import start_cluster, wait_linked
from tests.support.event_details import details_of, record_event_details
from tests.support.router import stop_all
from tests.support.tokens import mint, unique
from tests.support.wamp import Inbox, connect, eventually, wamp_error

ACK = PublishOptions(acknowledge=True)
NODES = 3


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    from tests.support.redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("cluster-redis")).start()
    yield server
    server.stop()


def _inspector(_i, config) -> None:
    """A role that may ask each node's meta API what subscriptions it holds."""
    router = config["workers"][0]
    router["realms"][0]["roles"].append({"name": "inspector", "authorizer": "authenticator.authorize"})
    policy = router["components"][0]["extra"]["policy"]
    policy["roles"].append({"name": "inspector", "rules": [
        {"uri": "wamp.subscription.", "match": "prefix", "allow": {"call": True}}]})  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, redis_server):
    record_event_details()  # the x_position of the EVENTs this process receives
    nodes = start_cluster(tmp_path_factory, "cluster", NODES, redis_server.url, edit_config=_inspector)
    yield nodes
    stop_all(nodes)


def _details(match: str = "exact") -> SubscribeOptions:
    return SubscribeOptions(match=match, details_arg="details")


def _texts(inbox: Inbox) -> list:
    """What an inbox received, but the pings that waited for the links (they may trail in)."""
    return [args[0] for args, _ in inbox.events if not args[0].startswith(("warm ", "ping "))]


async def _until(publish, inboxes: list[Inbox], what: str) -> None:
    """A link mirrors a subscription on the other nodes soon after it is made: publish until every
    inbox has received one (bounded), then forget what they received."""
    for attempt in range(100):
        await publish(attempt)
        if all(inbox.events for inbox in inboxes):
            for inbox in inboxes:
                inbox.events.clear()
            return
        await task.deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"nothing crossed the router links to {what} within 10 s")


@pytest_twisted.ensureDeferred
async def test_exact_prefix_and_wildcard_subscriptions_get_every_nodes_events_once(cluster):
    """On every node a session subscribes to a room's messages three ways (one event, three
    subscriptions, three mirrors on every other node: relayed once), and to its typing topic by
    prefix and wildcard only (nobody subscribes to it exactly: Crossbar's links mirrored every
    subscription as an exact one on its pattern, and these received nothing from other nodes).
    Each node publishes both by WAMP and by POST /publish."""
    room = unique("room")
    messages, typing = f"app.chat.{room}.messages", f"app.chat.{room}.typing"
    ways = {
        "exact": (messages, "exact"),
        "prefix": (f"app.chat.{room}.", "prefix"),
        "wildcard": (f"app..{room}.messages", "wildcard"),
        "wildcard typing": (f"app..{room}.typing", "wildcard"),
    }
    watchers, inboxes, publishers = [], [], []
    try:
        for node in cluster:
            watcher = await connect(node.url, mint(unique("watcher"), ["admin"]))  # admin: app. prefix
            watchers.append(watcher)
            mine = {}
            for name, (uri, match) in ways.items():
                mine[name] = Inbox()
                await watcher.subscribe(mine[name], uri, options=_details(match))
            inboxes.append(mine)
            publishers.append(await connect(node.url, mint(unique("writer"), ["user"])))
        everyone = [inbox for mine in inboxes for inbox in mine.values()]

        async def both(publisher, text):
            await publisher.publish(messages, text, options=ACK)
            await publisher.publish(typing, text, options=ACK)

        for j, publisher in enumerate(publishers):
            await _until(
                lambda i, p=publisher, j=j: both(p, f"warm {j} {i}"), everyone, f"every node from node {j + 1}"
            )
        backend = mint(unique("backend"), ["backend"])
        sent = []
        for j, (node, publisher) in enumerate(zip(cluster, publishers, strict=True)):
            for k in range(3):
                await both(publisher, f"wamp {j} {k}")
                sent.append(f"wamp {j} {k}")
            for topic in (messages, typing):
                status, _headers, answer = await post(node, {"topic": topic, "args": [f"http {j}"]}, backend)
                assert status == 200, answer
            sent.append(f"http {j}")
        expected = {"exact": sent, "prefix": sent * 2, "wildcard": sent, "wildcard typing": sent}
        # Every inbox has all of them once at least; then a marker from each node, published after
        # anything a node could still relay: what arrives after is counted too.
        await eventually(lambda: all(set(sent) <= set(_texts(inbox)) for inbox in everyone), 10,
                         "every event on every node through every subscription")  # fmt: skip
        markers = [f"marker {j}" for j in range(NODES)]
        for publisher, marker in zip(publishers, markers, strict=True):
            await both(publisher, marker)
        await eventually(lambda: all(set(markers) <= set(_texts(inbox)) for inbox in everyone), 10, "the markers")
        for i, mine in enumerate(inboxes):
            for name, inbox in mine.items():
                got = _texts(inbox)
                want = expected[name] + markers * (2 if name == "prefix" else 1)
                assert sorted(got) == sorted(want), (i + 1, name, got)
                for args, kwargs in inbox.events:
                    details = kwargs["details"]
                    assert details.topic in (None, messages, typing)
                    if args[0].startswith("wamp"):  # a chat publisher is disclosed, on every node
                        j = int(args[0].split()[1])
                        assert details.publisher_authid == publishers[j]._authid, (i + 1, args, details)
    finally:
        for client in watchers + publishers:
            client.leave()


@pytest_twisted.ensureDeferred
async def test_bob_on_node_3_gets_the_admins_notification_from_node_1_undisclosed_and_alice_nothing(cluster):
    """The policy does not disclose an admin's notification publisher: Crossbar's links asserted
    on it (nothing crossed), and disclosing it for the links showed the admin to the user. Bob is
    on nodes 2 and 3: an undisclosed relay carries no forward_for, so only the links' own exclusion
    keeps node 3 from pulling node 2's relay in again."""
    first, second, third = cluster
    bob_name, alice_name = unique("bob"), unique("alice")
    bobs = [await connect(node.url, mint(bob_name, ["user"])) for node in (second, third)]
    alices = [await connect(node.url, mint(alice_name, ["user"])) for node in (second, third)]
    root = await connect(first.url, mint(unique("root"), ["admin"]))
    bob_inboxes, alice_inboxes = [Inbox(), Inbox()], [Inbox(), Inbox()]
    bob_topic, alice_topic = f"app.user.{bob_name}.notifications", f"app.user.{alice_name}.notifications"
    try:
        for bob, alice, bob_inbox, alice_inbox in zip(bobs, alices, bob_inboxes, alice_inboxes, strict=True):
            await bob.subscribe(bob_inbox, bob_topic, options=_details())
            await alice.subscribe(alice_inbox, alice_topic, options=_details())
        await _until(lambda i: root.publish(bob_topic, f"ping bob {i}", options=ACK), bob_inboxes, "bob")
        await _until(lambda i: root.publish(alice_topic, f"ping alice {i}", options=ACK), alice_inboxes, "alice")
        await root.publish(bob_topic, "for bob only", options=ACK)
        await root.publish(alice_topic, "alice marker", options=ACK)  # crosses each link after bob's event
        for inbox in alice_inboxes:
            await eventually(lambda inbox=inbox: "alice marker" in _texts(inbox), 5, "alice's marker")
            assert _texts(inbox) == ["alice marker"]
        await eventually(lambda: all("for bob only" in _texts(i) for i in bob_inboxes), 5, "bob's notification")
        await root.publish(bob_topic, "bob marker", options=ACK)
        await eventually(lambda: all("bob marker" in _texts(i) for i in bob_inboxes), 5, "bob's marker")
        for inbox in bob_inboxes:
            assert _texts(inbox) == ["for bob only", "bob marker"]
            details = next(kwargs["details"] for args, kwargs in inbox.events if args == ("for bob only",))
            assert (details.publisher, details.publisher_authid, details.publisher_authrole, details.forward_for) == (
                None, None, None, None)  # fmt: skip
    finally:
        for client in (root, *bobs, *alices):
            client.leave()


@pytest_twisted.ensureDeferred
async def test_a_revocation_on_node_1_ends_the_users_sessions_on_nodes_2_and_3(cluster):
    first, second, third = cluster
    name = unique("carol")
    carols = [await connect(node.url, mint(name, ["user"])) for node in (second, third)]
    offsets = [node.log_size() for node in (second, third)]
    root = await connect(first.url, mint(unique("root"), ["admin"]))
    try:
        await root.call("authenticator.revoke", authid=name)
        for carol in carols:
            goodbye = await carol.left.addTimeout(10, reactor)
            assert goodbye.reason == "authenticator.error.revoked"
    finally:
        root.leave()
    for node, offset in zip((second, third), offsets, strict=True):
        node.wait_for_log(f"revoked on another router: authid={name}", after=offset)


@pytest_twisted.ensureDeferred
async def test_an_event_published_on_node_1_is_in_node_3s_history_once_at_the_same_position(cluster):
    first, _second, third = cluster
    bob_name = unique("bob")
    topic = f"app.user.{bob_name}.notifications"
    bob_here, bob_there = await connect(first.url, mint(bob_name)), await connect(third.url, mint(bob_name))
    root = await connect(first.url, mint(unique("root"), ["admin"]))
    inbox = Inbox()
    try:
        await bob_there.subscribe(inbox, topic, options=_details())
        await _until(lambda i: root.publish(topic, f"ping {i}", options=ACK), [inbox], "bob on node 3")
        await root.publish(topic, "kept once", options=ACK)
        await eventually(lambda: "kept once" in _texts(inbox), 5, "the live event on node 3")
        there = await bob_there.call("authenticator.history", topic, limit=1000)
        here = await bob_here.call("authenticator.history", topic, limit=1000)
        assert there == here
        kept = [(event["args"][0], event["position"]) for event in there["events"]]
        assert [text for text, _ in kept].count("kept once") == 1, kept
        assert [position["offset"] for _, position in kept] == list(range(1, len(kept) + 1))  # no relay kept
        # the live event relayed to node 3 carries the position node 1 kept it at (a kit places it
        # without reading the history)
        live = next(kwargs["details"] for args, kwargs in inbox.events if args == ("kept once",))
        assert details_of(live.publication)[EVENT_POSITION_DETAIL] == dict(kept)["kept once"]
    finally:
        for client in (bob_here, bob_there, root):
            client.leave()


@pytest_twisted.ensureDeferred
async def test_a_restarted_node_rejoins_the_mesh_and_events_flow_both_ways(cluster):
    first, second, third = cluster
    offsets = [node.log_size() for node in (first, third)]
    second.restart()
    wait_linked(second, NODES - 1)  # its own links to the others
    for node, offset in zip((first, third), offsets, strict=True):  # theirs to it
        wait_linked(node, 1, after=offset)
    room = unique("room")
    topic = f"app.chat.{room}"
    here = await connect(first.url, mint(unique("ann"), ["user"]))
    there = await connect(second.url, mint(unique("ben"), ["user"]))
    try:
        for subscriber, publisher, what in ((there, here, "node 2 from node 1"), (here, there, "node 1 from node 2")):
            inbox = Inbox()
            await subscriber.subscribe(inbox, f"app.chat.{room}.", options=_details("prefix"))
            await _until(lambda i, p=publisher: p.publish(topic + ".x", f"ping {i}", options=ACK), [inbox], what)
    finally:
        here.leave()
        there.leave()


@pytest_twisted.ensureDeferred
async def test_a_subscription_ends_on_every_node_when_its_last_subscriber_leaves(cluster):
    """Node 2's link mirrors bob's subscription on nodes 1 and 3; their links must not mirror those
    mirrors back (each node's mirror on the other kept the other alive: subscriptions grew for ever).
    Carol on node 1 joins the mirrored subscription there: her events from node 2 still arrive."""
    first, second, _third = cluster
    topic = f"app.public.{unique('gone')}"
    eyes = [await connect(node.url, mint(unique("eye"), ["inspector"])) for node in cluster]
    bob = await connect(second.url, mint(unique("bob"), ["user"]))
    carol = await connect(first.url, mint(unique("carol"), ["user"]))
    writer = await connect(second.url, mint(unique("writer"), ["backend"]))
    found: list = [None] * NODES

    async def look() -> list:
        for i, eye in enumerate(eyes):
            found[i] = await eye.call("wamp.subscription.lookup", topic)
        return found

    try:
        bob_sub = await bob.subscribe(Inbox(), topic)
        for _ in range(100):  # mirrored on nodes 1 and 3 (bounded: 10 s)
            if all(await look()):
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        assert all(found), found
        carols = Inbox()
        await carol.subscribe(carols, topic)  # the subscription exists on node 1: a subscribe, no create
        await bob_sub.unsubscribe()
        await _until(lambda i: writer.publish(topic, f"ping {i}", options=ACK), [carols], "carol on node 1")
        carol.leave()
        bob.leave()
        for _ in range(100):
            if not any(await look()):
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        assert found == [None] * NODES, found
    finally:
        for client in (*eyes, bob, carol, writer):
            client.leave()


@pytest_twisted.ensureDeferred
async def test_a_filtered_publication_is_refused_on_linked_nodes_with_its_reason(cluster):
    """A link relays an event without its eligible/exclude options: exclude_authid=[bob] on node 1
    reached bob on node 2. Refused by WAMP and by POST /publish, with what to do instead."""
    first = cluster[0]
    root_name = unique("root")
    root = await connect(first.url, mint(root_name, ["admin"]))
    topic = f"app.public.{unique('news')}"
    try:
        await root.publish(topic, "for everyone", options=ACK)  # the session's reused decision must not answer
        for options in ({"exclude_authid": ["bob"]}, {"eligible_authid": ["alice"]}):
            offset = first.log_size()
            refused = root.publish(topic, "filtered", options=PublishOptions(acknowledge=True, **options))
            assert await wamp_error(refused) == "wamp.error.not_authorized"
            first.wait_for_log(f"authorization denied: publish {topic} authid={root_name} role=admin via=wamp "
                               f"reason={LINKED_FILTER_REASON}", after=offset)  # fmt: skip
            body = {"topic": topic, "args": ["x"], "options": options}
            status, _, answer = await post(first, body, mint(unique("backend"), ["backend"]))
            assert status == 403 and answer["error"] == "wamp.error.not_authorized", answer
            assert LINKED_FILTER_REASON in answer["message"], answer
    finally:
        root.leave()
    assert LINKED_FILTER_REASON == (
        "eligible and exclude options are not carried across router links; publish to a per-user topic instead"
    )


@pytest_twisted.ensureDeferred
async def test_a_watcher_on_node_2_sees_a_join_on_node_1_once(cluster):
    """Every node relays Redis's presence announcements to its own subscribers: a link must not
    mirror presence subscriptions too (each join arrived once per node)."""
    first, second, _third = cluster
    room = f"app.chat.{unique('room')}"
    watcher = await connect(second.url, mint(unique("watcher"), ["user"]))
    writer = await connect(first.url, mint(unique("writer"), ["backend"]))
    seen: list = []
    names = [unique("alice"), unique("marker")]
    joined = [await connect(first.url, mint(name, ["user"])) for name in names]
    try:
        await watcher.subscribe(lambda event, authid: seen.append((event, authid)), PRESENCE_TOPIC_PREFIX + room)
        # a later subscription of the watcher crossed: the presence one would have been mirrored before it
        probe, probe_topic = Inbox(), f"app.public.{unique('probe')}"
        await watcher.subscribe(probe, probe_topic)
        await _until(lambda i: writer.publish(probe_topic, f"ping {i}", options=ACK), [probe], "the watcher")
        for client, name in zip(joined, names, strict=True):
            await client.subscribe(lambda *a, **k: None, room)
            await eventually(lambda name=name: ("join", name) in seen, 10, f"{name}'s join on node 2")
        assert seen == [("join", names[0]), ("join", names[1])], seen
    finally:
        for client in (watcher, writer, *joined):
            client.leave()


# -- two nodes: events published on one node reach entitled subscribers on the other, and only them
# (docs/scaling.md). test_rlinks.py checked these on a pair of its own; nodes 1 and 2 of the mesh
# are such a pair (an event crosses one link, once), so these share the module's nodes.


@pytest.fixture(scope="module")
def two_nodes(cluster):
    """Nodes 1 and 2 of the module's cluster, as `cluster-config` writes them (one Redis)."""
    return cluster[:2]


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
    root = await connect(first.url, mint(unique("root"), ["admin"]))
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
    root = await connect(first.url, mint(unique("root"), ["admin"]))
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
