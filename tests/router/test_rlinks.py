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
from tests.support.wamp import Inbox, connect

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


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    workdirs = [tmp_path_factory.mktemp(f"rlink-node{i}") for i in (0, 1)]
    for workdir in workdirs:  # node keys first: each node's config names the other's public key
        (workdir / ".crossbar").mkdir()
        _maybe_generate_node_key(str(workdir / ".crossbar"))
    keys = [_public_key(w / ".crossbar") for w in workdirs]
    ports = [free_port(), free_port()]
    nodes = [RouterProcess(w, env={"JWT_SECRET": TEST_SECRET}, edit_config=_linked_to(i, ports, keys))
             for i, w in enumerate(workdirs)]  # fmt: skip
    for node in nodes:
        node.start()
    for node in nodes:
        node.wait_for_log("rlink remote session ready", timeout=20)
    yield nodes
    for node in nodes:
        node.stop()


@pytest_twisted.ensureDeferred
async def test_events_published_on_one_node_reach_entitled_subscribers_on_the_other(two_nodes):
    first, second = two_nodes
    bob_name, alice_name = unique("bob"), unique("alice")
    bob = await connect(second.url, mint(bob_name, ["user"]))
    alice = await connect(second.url, mint(alice_name, ["user"]))
    bob_inbox, alice_inbox, feed = Inbox(), Inbox(), Inbox()
    await bob.subscribe(bob_inbox, f"app.user.{bob_name}.notifications")
    await alice.subscribe(alice_inbox, f"app.user.{alice_name}.notifications")
    await alice.subscribe(feed, "app.public.feed")
    root = await connect(first.url, mint("root", ["admin"]))
    try:
        # The link mirrors a subscription to the other node once it exists there; publish until
        # the first event crosses (bounded), then check exactly who got what.
        for attempt in range(50):
            await root.publish(f"app.user.{bob_name}.notifications", f"ping {attempt}", options=ACK)
            if bob_inbox.events:
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        assert bob_inbox.events, "no event crossed the router link within 5 s"
        await root.publish(f"app.user.{bob_name}.notifications", "for bob only", options=ACK)
        await root.publish("app.public.feed", "news for everyone", options=ACK)
        assert (await feed.next(5))[0] == ("news for everyone",)
        while (await bob_inbox.next(5))[0] != ("for bob only",):
            pass
        assert alice_inbox.events == []
    finally:
        for client in (root, bob, alice):
            client.leave()
