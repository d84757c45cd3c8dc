"""Recovery through the real router (docs/recovery.md): events of history topics are kept once as
they are published, live events carry their position, and `authenticator.history` hands them back
to the topic's subscribers only, never a partial answer that looks whole."""

import time

import pytest
import pytest_twisted
from autobahn.wamp.types import PublishOptions, SubscribeOptions
from twisted.internet import defer, reactor, task

from tests.router.test_http_publish import backend_token, post
from tests.router.test_idempotent_publish import DETAILS, key, only_these_then_the_marker
from tests.support.event_details import details_of, record_event_details
from tests.support.router import RouterProcess, start_all, stop_all
from tests.support.tokens import TEST_SECRET, mint, unique
from tests.support.wamp import Inbox, connect, wamp_error

ACK = PublishOptions(acknowledge=True)
HISTORY = "authenticator.history"

record_event_details()


async def user(router, name, roles=("user",)):
    return await connect(router.url, mint(name, list(roles)))


def notifications(authid: str) -> str:
    return f"app.user.{authid}.notifications"


class Positions:
    """Events of one subscription, with the position each came with (None: none)."""

    def __init__(self) -> None:
        self.inbox = Inbox()

    def __call__(self, *args, details=None, **kwargs):
        self.inbox(args, details_of(details.publication).get("x_position"))

    async def next(self):
        (args, position), _ = await self.inbox.next()
        return args, position


async def subscribe(client, topic) -> Positions:
    events = Positions()
    await client.subscribe(events, topic, options=SubscribeOptions(details_arg="details"))
    return events


@pytest_twisted.ensureDeferred
async def test_every_live_event_of_a_history_topic_carries_its_position(router):
    bob_id = unique("bob")
    bob, admin = await user(router, bob_id), await user(router, "root", ["admin"])
    try:
        events = await subscribe(bob, notifications(bob_id))
        public = await subscribe(bob, "app.public.news")
        for text in ("one", "two", "three"):
            await admin.publish(notifications(bob_id), text, options=ACK)
        received = [await events.next() for _ in range(3)]
        assert [args for args, _ in received] == [("one",), ("two",), ("three",)]
        offsets = [position["offset"] for _, position in received]
        assert offsets == [offsets[0], offsets[0] + 1, offsets[0] + 2]
        assert len({position["epoch"] for _, position in received}) == 1
        # a topic that keeps no history: no position
        await admin.publish("app.public.news", "hello", options=ACK)
        assert await public.next() == (("hello",), None)
        answer = await bob.call(HISTORY, notifications(bob_id))
        assert answer["position"] == received[-1][1]
    finally:
        bob.leave()
        admin.leave()


@pytest_twisted.ensureDeferred
async def test_an_event_published_while_nobody_listens_is_kept_once(router):
    bob_id = unique("bob")
    admin = await user(router, "root", ["admin"])
    try:
        # Not acknowledged: Crossbar skips a publication nobody would receive or acknowledge,
        # unless someone keeps it. The acknowledged one after it is a marker: the router handles a
        # session's publications in order.
        admin.publish(notifications(bob_id), "while you were away")
        await admin.publish(notifications(bob_id), "marker", options=ACK)
        status, _, answer = await post(router, {"topic": notifications(bob_id), "args": ["from the backend"]},
                                       backend_token("billing"))  # fmt: skip
        assert status == 200, answer
        bob = await user(router, bob_id)
        try:
            kept = await bob.call(HISTORY, notifications(bob_id))
        finally:
            bob.leave()
        assert kept["recovered"] is False  # no position was given: nothing to recover from
        assert [(e["args"], e.get("publisher_authid")) for e in kept["events"]] == [
            (["while you were away"], None),  # the admin's rule does not disclose its publisher
            (["marker"], None),
            (["from the backend"], "billing"),  # the backend's does
        ]
        assert [e["position"]["offset"] for e in kept["events"]] == [1, 2, 3]
        assert kept["position"] == kept["events"][-1]["position"]
    finally:
        admin.leave()


@pytest_twisted.ensureDeferred
async def test_a_position_recovers_exactly_the_events_after_it_page_by_page(router):
    bob_id = unique("bob")
    bob, admin = await user(router, bob_id), await user(router, "root", ["admin"])
    topic = notifications(bob_id)
    try:
        await admin.publish(topic, 0, options=ACK)
        seen = (await bob.call(HISTORY, topic))["position"]
        for n in range(1, 6):
            await admin.publish(topic, n, options=ACK)
        first = await bob.call(HISTORY, topic, since=seen, limit=2)
        assert first["recovered"] is True
        assert [e["args"] for e in first["events"]] == [[1], [2]]
        assert first["position"]["offset"] == seen["offset"] + 5  # more to read: the top is further
        rest = await bob.call(HISTORY, topic, since=first["events"][-1]["position"], limit=100)
        assert [e["args"] for e in rest["events"]] == [[3], [4], [5]] and rest["recovered"] is True
        up_to_date = await bob.call(HISTORY, topic, since=rest["position"])
        assert up_to_date == {"events": [], "position": rest["position"], "recovered": True}
    finally:
        bob.leave()
        admin.leave()


@pytest_twisted.ensureDeferred
async def test_only_a_topics_subscribers_read_its_history_whatever_position_they_give(router):
    alice_id, bob_id = unique("alice"), unique("bob")
    alice, bob, admin = await user(router, alice_id), await user(router, bob_id), await user(router, "root", ["admin"])
    topic = notifications(bob_id)
    try:
        await admin.publish(topic, "for bob only", options=ACK)
        bobs = (await bob.call(HISTORY, topic))["events"][0]["position"]
        for since in (None, {"offset": 0, "epoch": bobs["epoch"]}, {"offset": 0, "epoch": "0" * 16}):
            try:
                await alice.call(HISTORY, topic, since=since)
            except Exception as error:  # noqa: BLE001 - the error is the assertion
                assert error.error == "wamp.error.not_authorized"
                assert error.args[0] == (
                    f"history of '{topic}' is read by its subscribers only: "
                    f"no rule of role 'user' allows subscribe on exact '{topic}'"
                )
            else:
                raise AssertionError(f"alice read bob's history with since={since}")
        # the admin role may subscribe to it (prefix 'app.'), so it may read it
        assert (await admin.call(HISTORY, topic))["events"][0]["args"] == ["for bob only"]
    finally:
        for client in (alice, bob, admin):
            client.leave()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"since": {"offset": -1, "epoch": "x"}}, "since.offset must be a whole number from 0 to 9007199254740991"),
        ({"since": {"offset": 1}}, 'since must be a position as history returned it: {"offset": n, "epoch": "..."}'),
        ({"since": "41"}, 'since must be a position as history returned it: {"offset": n, "epoch": "..."}'),
        ({"since": {"offset": 1, "epoch": "e" * 65}}, "since.epoch must be the string history returned"),
        ({"limit": 0}, "limit must be a whole number from 1 to 1000"),
        ({"limit": 1001}, "limit must be a whole number from 1 to 1000"),
        ({"limit": 1.5}, "limit must be a whole number from 1 to 1000"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_bad_since_or_limit_is_refused_saying_what_to_send(router, kwargs, message):
    bob_id = unique("bob")
    bob = await user(router, bob_id)
    try:
        try:
            await bob.call(HISTORY, notifications(bob_id), **kwargs)
        except Exception as error:  # noqa: BLE001 - the error is the assertion
            assert error.error == "wamp.error.invalid_argument"
            assert error.args[0].startswith(message)
        else:
            raise AssertionError("accepted")
    finally:
        bob.leave()


@pytest_twisted.ensureDeferred
async def test_a_topic_without_history_says_so(router):
    bob = await user(router, unique("bob"))
    try:
        assert await wamp_error(bob.call(HISTORY, "app.public.news")) == "authenticator.error.no_history"
    finally:
        bob.leave()


# -- a router of its own: small histories, and restarts -------------------------------------------

SIZE, TTL_SECONDS = 3, 2


def small_history(config):
    for role in config["workers"][0]["components"][0]["extra"]["policy"]["roles"]:
        for rule in role["rules"]:
            if "history" in rule:
                rule["history"] = {"size": SIZE, "ttl_seconds": TTL_SECONDS}


@pytest.fixture(scope="module")
def small_router(own_routers):
    return own_routers[0]


@pytest_twisted.ensureDeferred
async def test_a_position_older_than_the_size_kept_is_not_recovered(small_router):
    bob_id = unique("bob")
    bob, admin = await user(small_router, bob_id), await user(small_router, "root", ["admin"])
    topic = notifications(bob_id)
    try:
        await admin.publish(topic, 0, options=ACK)
        seen = (await bob.call(HISTORY, topic))["position"]
        for n in range(1, SIZE + 1):  # the size, exactly: the event after `seen` is still held
            await admin.publish(topic, n, options=ACK)
        held = await bob.call(HISTORY, topic, since=seen)
        assert held["recovered"] is True and [e["args"] for e in held["events"]] == [[1], [2], [3]]
        await admin.publish(topic, SIZE + 1, options=ACK)  # one more: the event after `seen` is gone
        lost = await bob.call(HISTORY, topic, since=seen)
        assert lost == {"events": [], "position": {**seen, "offset": seen["offset"] + SIZE + 1}, "recovered": False}
    finally:
        bob.leave()
        admin.leave()


@pytest_twisted.ensureDeferred
async def test_a_position_older_than_the_ttl_is_not_recovered(small_router):
    bob_id = unique("bob")
    bob, admin = await user(small_router, bob_id), await user(small_router, "root", ["admin"])
    topic = notifications(bob_id)
    try:
        await admin.publish(topic, 0, options=ACK)
        seen = (await bob.call(HISTORY, topic))["position"]
        published = time.monotonic()
        await admin.publish(topic, 1, options=ACK)
        assert (await bob.call(HISTORY, topic, since=seen))["recovered"] is True
        while (answer := await bob.call(HISTORY, topic, since=seen))["recovered"]:
            assert time.monotonic() - published < TTL_SECONDS + 5, "the event outlived its ttl"
            await task.deferLater(reactor, 0.1, lambda: None)
        assert time.monotonic() - published >= TTL_SECONDS - 0.1, "the event went before its ttl"
        assert answer["events"] == []
    finally:
        bob.leave()
        admin.leave()


@pytest_twisted.ensureDeferred
async def test_after_a_restart_of_the_memory_store_a_position_is_not_recovered(small_router):
    bob_id = unique("bob")
    bob, admin = await user(small_router, bob_id), await user(small_router, "root", ["admin"])
    topic = notifications(bob_id)
    await admin.publish(topic, "before", options=ACK)
    seen = (await bob.call(HISTORY, topic))["position"]
    bob.leave()
    admin.leave()
    small_router.restart()
    bob, admin = await user(small_router, bob_id), await user(small_router, "root", ["admin"])
    try:
        await admin.publish(topic, "after", options=ACK)
        answer = await bob.call(HISTORY, topic, since=seen)
        assert answer["recovered"] is False and answer["events"] == []
        assert answer["position"]["epoch"] != seen["epoch"] and answer["position"]["offset"] == 1
    finally:
        bob.leave()
        admin.leave()


# -- Redis: one history for every router of a deployment ------------------------------------------


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    from tests.support.redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_routers(tmp_path_factory, redis_server):
    """This file's routers, started (and stopped) at once: the router with small histories, and two
    routers whose store is one Redis."""

    def shared(config):
        config["workers"][0]["components"][0]["extra"]["store"] = {"redis_url": redis_server.url}

    nodes = start_all([
        RouterProcess(tmp_path_factory.mktemp("history"), env={"JWT_SECRET": TEST_SECRET},
                      edit_config=small_history, loglevel="warn"),
        *(RouterProcess(tmp_path_factory.mktemp(f"history-redis{i}"), env={"JWT_SECRET": TEST_SECRET},
                        edit_config=shared, loglevel="warn") for i in (1, 2)),
    ])  # fmt: skip
    yield nodes
    statuses = stop_all(nodes)
    for node, status in zip(nodes[1:], statuses[1:], strict=True):  # the two sharing Redis
        assert status == 0, node.log()[-3000:]


@pytest.fixture(scope="module")
def two_routers(own_routers):
    return own_routers[1:]


@pytest_twisted.ensureDeferred
async def test_two_routers_with_redis_keep_one_stream_per_topic(two_routers):
    one, two = two_routers
    bob_id = unique("bob")
    topic = notifications(bob_id)
    admin_one, admin_two = await user(one, "root", ["admin"]), await user(two, "root", ["admin"])
    bob_two = await user(two, bob_id)
    try:
        events = await subscribe(bob_two, topic)
        await admin_one.publish(topic, "via one", options=ACK)  # bob is on the other router: kept for him
        await admin_two.publish(topic, "via two", options=ACK)
        (args, position) = await events.next()
        assert args == ("via two",) and position["offset"] == 2  # the offsets of one stream
        kept = await bob_two.call(HISTORY, topic)
        assert [(e["args"], e["position"]) for e in kept["events"]] == [
            (["via one"], {"offset": 1, "epoch": position["epoch"]}),
            (["via two"], position),
        ]
        bob_one = await user(one, bob_id)
        try:
            assert await bob_one.call(HISTORY, topic, since=kept["events"][0]["position"]) == {
                "events": [kept["events"][1]], "position": position, "recovered": True,
            }  # fmt: skip
        finally:
            bob_one.leave()
    finally:
        for client in (admin_one, admin_two, bob_two):
            client.leave()


# The idempotency keys of POST /publish across routers (test_idempotent_publish.py): those routers
# only share Redis too, so their tests run on these two (before the Redis outage below).


async def bob_listening_on_each(routers) -> tuple[str, list, list[Inbox]]:
    """Bob's notification topic, and a session of his subscribed to it on each router with its inbox."""
    bob_id = unique("bob")
    topic = f"app.user.{bob_id}.notifications"
    sessions = [await connect(node.url, mint(bob_id)) for node in routers]
    inboxes = [Inbox() for _ in routers]
    try:
        for session, inbox in zip(sessions, inboxes, strict=True):
            await session.subscribe(inbox, topic, options=DETAILS)
    except BaseException:
        for session in sessions:
            session.leave()
        raise
    return topic, sessions, inboxes


@pytest_twisted.ensureDeferred
async def test_a_retry_that_reaches_another_router_gets_the_first_answer_and_publishes_nothing(two_routers):
    first, second = two_routers
    topic, sessions, inboxes = await bob_listening_on_each(two_routers)
    try:
        backend, once = unique("backend"), {"Idempotency-Key": key()}
        body = {"topic": topic, "args": ["once"]}
        status, _, answer = await post(first, body, backend_token(backend), headers=once)
        assert status == 200, answer
        status, headers, again = await post(second, body, backend_token(backend), headers=once)
        assert (status, again) == (200, answer)
        assert headers.getRawHeaders("idempotent-replayed") == ["true"]
        await only_these_then_the_marker(first, inboxes[0], topic, [("once",)])
        await only_these_then_the_marker(second, inboxes[1], topic, [])
    finally:
        for session in sessions:
            session.leave()


@pytest_twisted.ensureDeferred
async def test_concurrent_duplicates_on_two_routers_publish_once(two_routers):
    """20 requests with one key, 10 to each router at once: one publication. Each answer is its id
    (the first, or a replay) or 409 in progress with Retry-After; a retry of a 409 gets the id."""
    topic, sessions, inboxes = await bob_listening_on_each(two_routers)
    try:
        backend, once = unique("backend"), {"Idempotency-Key": key()}
        body = {"topic": topic, "args": ["once"]}
        answers = await defer.gatherResults(
            [
                defer.ensureDeferred(post(node, body, backend_token(backend), headers=once))
                for _ in range(10)
                for node in two_routers
            ]  # fmt: skip
        )
        ids = {answer["id"] for status, _, answer in answers if status == 200}
        busy = [(headers, answer) for status, headers, answer in answers if status == 409]
        assert len(ids) == 1, answers
        assert all(status in (200, 409) for status, _, _ in answers), answers
        for headers, answer in busy:
            assert answer["error"] == "authenticator.error.idempotency_key_in_use"
            assert headers.getRawHeaders("retry-after") == ["1"]
        status, _, answer = await post(two_routers[1], body, backend_token(backend), headers=once)
        assert status == 200 and answer["id"] in ids, answer
        received = []
        for node, inbox in zip(two_routers, inboxes, strict=True):
            status, _, marker = await post(node, {"topic": topic, "args": ["marker"]}, backend_token())
            assert status == 200, marker
            while (event := await inbox.next())[0] != ("marker",):
                received.append(event)
            assert inbox.events == []
        assert [(args, kwargs["details"].publication) for args, kwargs in received] == [(("once",), ids.pop())]
    finally:
        for session in sessions:
            session.leave()


@pytest_twisted.ensureDeferred
async def test_without_redis_an_event_of_a_history_topic_is_refused_with_the_reason_never_sent_unkept(
    two_routers, redis_server
):
    one, _ = two_routers
    bob_id = unique("bob")
    topic = notifications(bob_id)
    admin, bob = await user(one, "root", ["admin"]), await user(one, bob_id)
    try:
        events = await subscribe(bob, topic)
        redis_server.stop()
        try:
            try:
                await admin.publish(topic, "not kept", options=ACK)
            except Exception as error:  # noqa: BLE001 - the error is the assertion
                assert error.error == "wamp.error.authorization_failed"
                assert (
                    "authenticator.error.history_unavailable: the history store did not confirm keeping the event, "
                    "so it was not sent to subscribers" in error.args[0]
                )
            else:
                raise AssertionError("published an event that could not be kept")
            await admin.publish("app.public.news", "topics without history go on", options=ACK)
            assert await wamp_error(bob.call(HISTORY, topic)) == "authenticator.error.history_unavailable"
        finally:
            redis_server.start()
        # Redis is back: after the router's 1 s of refusing at once, one publication is tried.
        deadline = time.monotonic() + 5
        while True:
            try:
                await admin.publish(topic, "kept again", options=ACK)
                break
            except Exception as error:  # noqa: BLE001 - only history_unavailable may be answered meanwhile
                assert "authenticator.error.history_unavailable" in error.args[0], error
                assert time.monotonic() < deadline, "no publication kept within 5 s of Redis returning"
                await task.deferLater(reactor, 0.2, lambda: None)
        assert (await events.next())[0] == ("kept again",)  # the first event bob receives: nothing unkept came
    finally:
        admin.leave()
        bob.leave()


@pytest_twisted.ensureDeferred
async def test_a_filtered_publication_on_a_history_topic_is_refused_with_its_reason(router):
    alice_id = unique("alice")
    alice = await user(router, alice_id)
    try:
        # An honest publish first: the session's reused decision must not answer a filtered one.
        await alice.publish("app.chat.lobby", "for everyone", options=PublishOptions(acknowledge=True))
        offset = router.log_size()
        options = PublishOptions(acknowledge=True, exclude_authid=["bob"])
        assert await wamp_error(alice.publish("app.chat.lobby", "not for bob", options=options)) == (
            "wamp.error.not_authorized"
        )
        router.wait_for_log(
            f"authorization denied: publish app.chat.lobby authid={alice_id} role=user via=wamp reason=eligible and "
            "exclude options cannot be used on a topic that keeps history", after=offset,
        )  # fmt: skip
        status, _, answer = await post(router, {"topic": "app.chat.lobby", "args": ["x"],
                                                "options": {"eligible_authid": ["bob"]}}, backend_token())  # fmt: skip
        assert status == 403 and answer["error"] == "wamp.error.not_authorized", answer
        assert "eligible and exclude options cannot be used on a topic that keeps history" in answer["message"]
        # a topic without history: the same options are fine
        status, _, answer = await post(router, {"topic": "app.public.news", "args": ["x"],
                                                "options": {"eligible_authid": ["bob"]}}, backend_token())  # fmt: skip
        assert status == 200, answer
    finally:
        alice.leave()
