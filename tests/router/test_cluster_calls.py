"""Two nodes linked as cluster-config would not write them: links that forward calls, a policy with
a callee, and the link role named "peer" (a hand-written mesh).

Why cluster-config refuses a policy that grants `register`: a call relayed by a router link
(Crossbar 26.10's `forward_local_invocations`) reaches the callee on the other node with the
caller's role where its authid should be (crossbar/worker/rlink.py: ``"authid":
details.caller_authrole``). A callee that trusts the caller's authid would act for "user" (or for
"admin"). docs/scaling.md#several-nodes."""

import pytest
import pytest_twisted
from autobahn.wamp.types import RegisterOptions

from tests.support.cluster import start_cluster
from tests.support.router import stop_all
from tests.support.tokens import mint, unique
from tests.support.wamp import Inbox, connect


def _with_calls(_i: int, config: dict) -> None:
    """What cluster-config refuses to write: links that forward calls, and a policy with a callee;
    and what it does not write: another name for the links' role."""
    router = config["workers"][0]
    for link in router["realms"][0]["rlinks"]:
        link["forward_local_invocations"] = True
    for role in router["realms"][0]["roles"]:
        if role["name"] == "rlink":
            role["name"] = "peer"
            role["permissions"][0]["allow"].update(call=True, register=True)
    for transport in router["transports"]:
        principals = transport.get("auth", {}).get("cryptosign", {}).get("principals", {})
        if "rlink" in principals:
            principals["peer"] = {**principals.pop("rlink"), "role": "peer"}
    for role in router["components"][0]["extra"]["policy"]["roles"]:
        if role["name"] == "backend":
            role["rules"].append({"uri": "app.rpc.", "match": "prefix", "allow": {"register": True}})
        elif role["name"] == "user":
            role["rules"].append({"uri": "app.rpc.", "match": "prefix", "allow": {"call": True},
                                  "disclose": {"caller": True}})  # fmt: skip


@pytest.fixture(scope="module")
def linked_for_calls(tmp_path_factory):
    from tests.support.redis_server import RedisServer

    redis_server = RedisServer(tmp_path_factory.mktemp("calls-redis")).start()
    nodes = start_cluster(tmp_path_factory, "calls-node", 2, redis_server.url, edit_config=_with_calls)
    yield nodes
    stop_all(nodes)
    redis_server.stop()


@pytest_twisted.ensureDeferred
async def test_a_call_relayed_by_a_router_link_names_the_callers_role_as_its_authid(linked_for_calls):
    first, second = linked_for_calls
    callee = await connect(first.url, mint(unique("service"), ["backend"]))
    carol_name = unique("carol")
    carol = await connect(second.url, mint(carol_name, ["user"]))
    callers = []

    def echo(text, details=None):
        callers.append((details.caller_authid, details.caller_authrole))
        return text

    try:
        await callee.register(echo, "app.rpc.echo", options=RegisterOptions(details_arg="details"))

        async def answered():  # the link mirrors the registration on node 2 soon after
            try:
                return await carol.call("app.rpc.echo", "hi") == "hi"
            except Exception:  # noqa: BLE001 - wamp.error.no_such_procedure until it is mirrored
                return False

        await eventually_async(answered, 10, "the registration to be mirrored on node 2")
        assert callers[-1] == ("user", "user")  # carol's role, twice: her authid is lost
        assert callers[-1][0] != carol_name
    finally:
        carol.leave()
        callee.leave()


async def eventually_async(condition, timeout: float, what: str) -> None:
    import time

    from twisted.internet import reactor, task

    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await task.deferLater(reactor, 0.1, lambda: None)


@pytest_twisted.ensureDeferred
async def test_an_undisclosed_event_crosses_a_hand_written_mesh_once(linked_for_calls):
    """An undisclosed relay carries no forward_for: only the links' exclusion of each other keeps
    it from bouncing between the nodes for ever. With the link role named otherwise than
    cluster-config names it, the relay excludes the role its link was given on the other node."""
    from autobahn.wamp.types import PublishOptions, SubscribeOptions

    first, second = linked_for_calls
    bob_name = unique("bob")
    topic = f"app.user.{bob_name}.notifications"
    bobs = [await connect(node.url, mint(bob_name, ["user"])) for node in (first, second)]
    root = await connect(first.url, mint(unique("root"), ["admin"]))
    inboxes = [Inbox(), Inbox()]
    ack = PublishOptions(acknowledge=True)
    try:
        for bob, inbox in zip(bobs, inboxes, strict=True):
            await bob.subscribe(inbox, topic, options=SubscribeOptions(details_arg="details"))

        async def crossed():
            await root.publish(topic, "ping", options=ack)
            return bool(inboxes[1].events)

        await eventually_async(crossed, 10, "bob's subscription to be mirrored on node 1")
        await root.publish(topic, "once", options=ack)
        await root.publish(topic, "marker", options=ack)

        def texts(inbox):
            return [args[0] for args, _ in inbox.events if args[0] != "ping"]

        await eventually_async(_async(lambda: all("marker" in texts(i) for i in inboxes)), 5, "the marker")
        for inbox in inboxes:
            assert texts(inbox) == ["once", "marker"]
    finally:
        for client in (root, *bobs):
            client.leave()


def _async(condition):
    async def check():
        return condition()

    return check
