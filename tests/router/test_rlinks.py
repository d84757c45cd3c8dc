"""Several nodes: two single-worker nodes joined by Crossbar router links (realms[].rlinks), the
way docs/scaling.md describes. Events published on one node reach entitled subscribers on the
other, and only them."""

import pytest
import pytest_twisted
from autobahn.wamp.types import PublishOptions
from crossbar.common.key import _maybe_generate_node_key
from twisted.internet import reactor, task

from tests.support.router import RouterProcess, free_port
from tests.support.tokens import TEST_SECRET, mint, unique
from tests.support.wamp import Inbox, connect, wamp_error

ACK = PublishOptions(acknowledge=True)


def _public_key(cbdir) -> str:
    for line in (cbdir / "key.pub").read_text().splitlines():
        if line.startswith("public-key-ed25519:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no public key in {cbdir / 'key.pub'}")


def _linked_to(me: int, link_ports: list[int], public_keys: list[str]):
    other = 1 - me

    def configure(config):
        router = config["workers"][0]
        realm = router["realms"][0]
        # The other node's link session authenticates with its node key (WAMP-cryptosign).
        realm["roles"].append({"name": "rlink", "permissions": [{
            "uri": "", "match": "prefix", "allow": {"call": True, "register": True, "publish": True, "subscribe": True},
            "disclose": {"caller": True, "publisher": True}, "cache": True}]})  # fmt: skip
        router["transports"].append({
            "type": "rawsocket", "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": link_ports[me]},
            "serializers": ["cbor"],
            "auth": {"cryptosign": {"type": "static", "principals": {"rlink": {
                "realm": "realm1", "role": "rlink", "authorized_keys": [public_keys[other]]}}}},
        })  # fmt: skip
        realm["rlinks"] = [{
            "id": f"to_node{other}", "realm": "realm1",
            "forward_local_events": True, "forward_remote_events": False,
            "forward_local_invocations": False, "forward_remote_invocations": False,
            "transport": {"type": "rawsocket", "serializer": "cbor", "url": f"rs://127.0.0.1:{link_ports[other]}",
                          "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": link_ports[other]}},
        }]  # fmt: skip
        # Crossbar forwards only events whose publisher is disclosed (it asserts so): topics that
        # cross nodes need "disclose": {"publisher": true} on the rules that allow publishing them.
        policy = router["components"][0]["extra"]["policy"]
        for role in policy["roles"]:
            for rule in role["rules"]:
                if rule["allow"].get("publish"):
                    rule["disclose"] = {"publisher": True}

    return configure


def start_linked_nodes(tmp_path_factory, name: str, store: dict | None = None) -> list[RouterProcess]:
    """Two nodes joined by router links, started and linked; `store`: the component's store for both."""
    workdirs = [tmp_path_factory.mktemp(f"{name}{i}") for i in (0, 1)]
    for workdir in workdirs:  # node keys first: each node's config names the other's public key
        (workdir / ".crossbar").mkdir()
        _maybe_generate_node_key(str(workdir / ".crossbar"))
    keys = [_public_key(w / ".crossbar") for w in workdirs]
    ports = [free_port(), free_port()]

    def configure(i):
        link = _linked_to(i, ports, keys)

        def edit(config):
            link(config)
            if store is not None:
                config["workers"][0]["components"][0]["extra"]["store"] = store

        return edit

    nodes = [RouterProcess(w, env={"JWT_SECRET": TEST_SECRET}, edit_config=configure(i))
             for i, w in enumerate(workdirs)]  # fmt: skip
    for node in nodes:
        node.start()
    for node in nodes:
        node.wait_for_log("rlink remote session ready", timeout=20)
    return nodes


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    nodes = start_linked_nodes(tmp_path_factory, "rlink-node")
    yield nodes
    for node in nodes:
        node.stop()


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


@pytest.fixture(scope="module")
def two_nodes_sharing_redis(tmp_path_factory):
    from tests.support.redis_server import RedisServer

    redis_server = RedisServer(tmp_path_factory.mktemp("rlink-redis")).start()
    nodes = start_linked_nodes(tmp_path_factory, "rlink-redis-node", store={"redis_url": redis_server.url})
    yield nodes
    for node in nodes:
        node.stop()
    redis_server.stop()


@pytest_twisted.ensureDeferred
async def test_an_event_relayed_by_a_link_is_kept_once_in_the_shared_history(two_nodes_sharing_redis):
    first, second = two_nodes_sharing_redis
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
