"""Presence through a real crossbar node (both deployments): authenticator.presence and the join/leave
events under the policy, and the answer against the truth when sessions come and go at once."""

import random
import time

import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions
from twisted.internet import defer, reactor

from tests.support.tokens import mint, unique
from tests.support.wamp import Inbox, connect, wamp_error

PRESENCE = "authenticator.presence"
EVENTS = "authenticator.presence."
NOT_AUTHORIZED = "wamp.error.not_authorized"


async def user(router, name, roles=("user",)):
    return await connect(router.url, mint(name, list(roles)))


def chat_topic() -> str:
    return f"app.chat.{unique('room')}"


async def feed(client, topic) -> Inbox:
    """The join/leave events of topic, as (event, authid)."""
    inbox = Inbox()
    await client.subscribe(lambda event, authid: inbox((event, authid)), EVENTS + topic)
    return inbox


async def next_event(inbox: Inbox, timeout: float = 10):
    (event,), _ = await inbox.next(timeout)
    return event


@pytest_twisted.ensureDeferred
async def test_presence_is_refused_with_the_policys_reason_where_it_is_not_granted(router):
    alice = await user(router, unique("alice"))
    bob_topic = f"app.user.{unique('bob')}.notifications"
    try:
        try:
            await alice.call(PRESENCE, bob_topic)
        except ApplicationError as error:
            assert error.error == NOT_AUTHORIZED
            assert error.args[0] == f"no rule of role 'user' allows presence on exact '{bob_topic}'"
        else:
            raise AssertionError("presence of a per-user topic was answered")
        # her own notifications: subscribe, yes; presence, no rule grants it
        own = f"app.user.{alice.details.authid}.notifications"
        assert await wamp_error(alice.call(PRESENCE, own)) == NOT_AUTHORIZED
        offset = router.log_size()
        assert await wamp_error(alice.subscribe(Inbox(), EVENTS + own)) == NOT_AUTHORIZED
        router.wait_for_log(f"reason=no rule of role 'user' allows presence on exact '{own}'", after=offset)
        assert await wamp_error(alice.call(PRESENCE, "x" * 600)) == "wamp.error.invalid_argument"
    finally:
        alice.leave()


@pytest_twisted.ensureDeferred
async def test_presence_events_are_refused_to_a_pattern_subscription_and_to_publishers(router):
    alice = await user(router, unique("alice"))
    topic = chat_topic()
    try:
        patterns = ((EVENTS, "prefix"), (EVENTS + "app.chat.", "prefix"), ("authenticator..app.chat", "wildcard"),
                    ("authenticator.presence..lobby", "wildcard"))  # fmt: skip
        for uri, match in patterns:
            offset = router.log_size()
            options = SubscribeOptions(match=match)
            assert await wamp_error(alice.subscribe(Inbox(), uri, options=options)) == NOT_AUTHORIZED
            router.wait_for_log("reason=presence events are subscribed to one topic at a time", after=offset)
        offset = router.log_size()
        ack = PublishOptions(acknowledge=True)
        refused = alice.publish(EVENTS + topic, event="join", authid="mallory", options=ack)
        assert await wamp_error(refused) == NOT_AUTHORIZED
        router.wait_for_log("reason=only the router publishes on authenticator.presence.*", after=offset)
        await feed(alice, topic)  # the exact subscription of a topic she may ask about is allowed
    finally:
        alice.leave()


@pytest_twisted.ensureDeferred
async def test_an_authids_first_session_joins_its_last_leaves_and_a_killed_session_leaves(router):
    topic = chat_topic()
    watcher, root = await user(router, unique("alice")), await user(router, "root", ["admin"])
    bob_id, carol_id = unique("bob"), unique("carol")
    bob1, bob2 = await user(router, bob_id), await user(router, bob_id)
    clients = [watcher, root, bob1, bob2]
    try:
        events = await feed(watcher, topic)
        await bob1.subscribe(Inbox(), topic)
        assert await next_event(events) == ("join", bob_id)
        await bob1.subscribe(Inbox(), topic)  # a second subscription of the same session: no event
        await bob2.subscribe(Inbox(), topic)  # a second session of the same authid: no event
        bob1.leave()
        await bob1.left
        carol = await user(router, carol_id)
        clients.append(carol)
        await carol.subscribe(Inbox(), topic)
        # Events of one topic arrive in order: carol's join comes after anything bob's sessions caused.
        assert await next_event(events) == ("join", carol_id)
        answer = await watcher.call(PRESENCE, topic)
        assert answer == {"authids": sorted([bob_id, carol_id]), "users": 2, "sessions": 2, "truncated": False}
        await root.call("authenticator.revoke", authid=bob_id)  # the router kills bob2, his last session
        assert await next_event(events) == ("leave", bob_id)
        answer = await watcher.call(PRESENCE, topic)
        assert answer == {"authids": [carol_id], "users": 1, "sessions": 1, "truncated": False}
        assert events.events == []
    finally:
        for client in clients:
            if client.is_attached():
                client.leave()


@pytest_twisted.ensureDeferred
async def test_the_answer_is_the_truth_after_many_concurrent_subscribes_unsubscribes_and_kills(router):
    """200 sessions of 50 users subscribe, unsubscribe and drop their connections at once while 5 of
    the users are revoked (the router kills their sessions): about 450 changes. The answer then
    equals the truth, and the events of each user alternate join/leave and end in its state; a
    marker user's join, made last, ends the events looked at."""
    topic, rng = chat_topic(), random.Random(22)
    watcher, root = await user(router, unique("alice")), await user(router, "root", ["admin"])
    events = Inbox()
    await watcher.subscribe(lambda event, authid: events((event, authid)), EVENTS + topic)
    names = [unique("u") for _ in range(50)]
    revoked = set(names[:5])
    sessions = []
    for chunk in range(0, 200, 20):  # 20 logins in flight at a time
        sessions += await _all([user(router, names[i % 50]) for i in range(chunk, chunk + 20)])
    subscribed: dict = {}
    gone = set()  # dropped by the client or killed by the router

    async def churn(client):
        plan = rng.choice(("stay", "leave_again", "twice", "drop", "drop_subscribed"))
        try:
            subscription = await client.subscribe(Inbox(), topic)
            subscribed[client] = True
            if plan == "leave_again":
                await subscription.unsubscribe()
                subscribed[client] = False
            elif plan == "twice":
                await subscription.unsubscribe()
                await client.subscribe(Inbox(), topic)
            elif plan.startswith("drop"):
                gone.add(client)
                client._transport.transport.abortConnection()  # the connection is lost: no GOODBYE
        except Exception:
            assert client.details.authid in revoked  # only a killed session's requests may fail
            gone.add(client)

    async def revoke(name):
        await root.call("authenticator.revoke", authid=name)

    try:
        # A request in flight when the router ends its session may never be answered nor failed on
        # the client (seen: a few subscribes and unsubscribes of revoked users waited): bounded.
        bounded = [defer.ensureDeferred(churn(client)).addTimeout(10, reactor) for client in sessions]
        await _all([*bounded, *(revoke(name) for name in revoked)])
        live = [c for c in sessions if subscribed.get(c) and c not in gone and c.details.authid not in revoked]
        truth = sorted({c.details.authid for c in live})
        expected = {"authids": truth, "users": len(truth), "sessions": len(live), "truncated": False}
        await answered(watcher, topic, expected, timeout=30)
        marker = await user(router, unique("marker"))
        await marker.subscribe(Inbox(), topic)
        seen = []
        while True:
            event = await next_event(events)
            if event == ("join", marker.details.authid):
                break
            seen.append(event)
        marker.leave()
        for name in names:
            mine = [kind for kind, authid in seen if authid == name]
            assert mine == ["join", "leave"] * (len(mine) // 2) + ["join"] * (len(mine) % 2), (name, mine)
            assert (len(mine) % 2 == 1) == (name in truth), (name, mine)
    finally:
        watcher.leave()
        root.leave()
        for client in sessions:
            if client not in gone and client.is_attached():
                client.leave()


async def answered(client, topic, expected: dict, timeout: float) -> None:
    """Ask until the answer is `expected` (the router handles the meta events of a dropped connection
    when it notices the loss); fails with the last answer past the deadline."""
    last = {}

    async def ask():
        last["answer"] = await client.call(PRESENCE, topic)
        return last["answer"] == expected

    deadline = time.monotonic() + timeout
    while not await ask():
        assert time.monotonic() < deadline, (last["answer"], expected)
        await _pause(0.2)


async def _all(deferreds):
    results = await defer.gatherResults([defer.ensureDeferred(d) for d in deferreds], consumeErrors=True)
    return list(results)


async def _pause(seconds: float) -> None:
    from twisted.internet import task

    await task.deferLater(reactor, seconds, lambda: None)
