"""Issue 22, publishing without loss: POST /publish with an idempotency key, through real routers
(both deployments) and a real redis-server. A retry with the key gets the first answer and
publishes nothing; every "nothing else arrived" is proved by a later marker event that the
subscriber receives next. Two routers sharing Redis: their tests run on test_history.py's two."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
import pytest_twisted
import redis
from autobahn.wamp.types import SubscribeOptions
from twisted.internet import defer

from authenticator.core.idempotency import KeysUnavailable, State, fingerprint, scope
from authenticator.server.redis_idempotency import RedisIdempotency, _key
from tests.router.test_http_publish import backend_token, post
from tests.support.redis_server import RedisServer
from tests.support.router import free_port, wait_for
from tests.support.tokens import mint, unique
from tests.support.wamp import Inbox, connect

DETAILS = SubscribeOptions(details_arg="details")


def key() -> str:
    return str(uuid.uuid4())


async def subscribed(router, topic_of=lambda authid: f"app.user.{authid}.notifications"):
    """(bob's session, his inbox, his topic)."""
    bob_id = unique("bob")
    bob = await connect(router.url, mint(bob_id))
    inbox = Inbox()
    await bob.subscribe(inbox, topic_of(bob_id), options=DETAILS)
    return bob, inbox, topic_of(bob_id)


async def only_these_then_the_marker(router, inbox: Inbox, topic: str, expected: list) -> None:
    """The inbox receives exactly `expected` (args of each event, in order), then the marker."""
    for args in expected:
        assert (await inbox.next())[0] == args
    status, _, answer = await post(router, {"topic": topic, "args": ["marker"]}, backend_token())
    assert status == 200, answer
    assert (await inbox.next())[0] == ("marker",)
    assert inbox.events == []


@pytest_twisted.ensureDeferred
async def test_a_retry_with_the_same_key_gets_the_first_answer_and_bob_receives_one_event(router):
    bob, inbox, topic = await subscribed(router)
    try:
        backend, once = unique("backend"), {"Idempotency-Key": key()}
        body = {"topic": topic, "args": ["report ready"], "kwargs": {"n": 1}}
        first = await post(router, body, backend_token(backend), headers=once)
        # a retry: a fresh token of the same publisher, the body spelled differently
        respelled = json.dumps({"kwargs": {"n": 1}, "args": ["report ready"], "topic": topic}, indent=2).encode()
        again = await post(router, respelled, backend_token(backend), headers=once)
        assert first[0] == again[0] == 200, (first, again)
        assert first[2] == again[2] and isinstance(first[2]["id"], int)
        assert first[1].getRawHeaders("idempotent-replayed") is None
        assert again[1].getRawHeaders("idempotent-replayed") == ["true"]
        await only_these_then_the_marker(router, inbox, topic, [("report ready",)])
    finally:
        bob.leave()


@pytest_twisted.ensureDeferred
async def test_another_publishers_same_key_is_its_own(router):
    """Scoped by authid: another backend's key neither answers with this one's id nor blocks it."""
    bob, inbox, topic = await subscribed(router)
    try:
        shared = {"Idempotency-Key": key()}
        body = {"topic": topic, "args": ["hello"]}
        first = await post(router, body, backend_token(unique("billing")), headers=shared)
        other = await post(router, body, backend_token(unique("shop")), headers=shared)
        assert first[0] == other[0] == 200, (first, other)
        assert first[2]["id"] != other[2]["id"]
        assert other[1].getRawHeaders("idempotent-replayed") is None
        await only_these_then_the_marker(router, inbox, topic, [("hello",), ("hello",)])
    finally:
        bob.leave()


@pytest_twisted.ensureDeferred
async def test_the_same_key_with_another_publication_is_refused_422_and_nothing_is_published(router):
    bob, inbox, topic = await subscribed(router)
    try:
        backend, once = unique("backend"), {"Idempotency-Key": key()}
        status, _, answer = await post(
            router, {"topic": topic, "args": ["first"]}, backend_token(backend), headers=once
        )
        assert status == 200, answer
        offset = router.log_size()
        status, _, answer = await post(router, {"topic": topic, "args": ["other"]}, backend_token(backend),
                                       headers=once)  # fmt: skip
        assert status == 422, answer
        assert answer["error"] == "authenticator.error.idempotency_key_reused"
        assert "came with another publication" in answer["message"] and "24 h" in answer["message"]
        router.wait_for_log("http publish refused: status=422 reason=authenticator.error.idempotency_key_reused",
                            after=offset)  # fmt: skip
        await only_these_then_the_marker(router, inbox, topic, [("first",)])
    finally:
        bob.leave()


@pytest_twisted.ensureDeferred
async def test_a_refused_publication_does_not_burn_its_key_for_the_corrected_retry(router):
    """Only a publication is remembered: a 403 or a 400 releases the key."""
    bob, inbox, topic = await subscribed(router)
    try:
        backend, once = unique("backend"), {"Idempotency-Key": key()}
        status, _, answer = await post(router, {"topic": "app.secret.plans"}, backend_token(backend), headers=once)
        assert status == 403, answer
        status, _, answer = await post(router, {"topic": topic, "args": ["corrected"]}, backend_token(backend),
                                       headers=once)  # fmt: skip
        assert status == 200, answer
        await only_these_then_the_marker(router, inbox, topic, [("corrected",)])
    finally:
        bob.leave()


@pytest_twisted.ensureDeferred
async def test_a_batch_carries_a_key_per_publication_and_its_retry_publishes_nothing_again(router):
    bob, inbox, topic = await subscribed(router)
    try:
        backend = unique("backend")
        batch = [
            {"topic": topic, "args": ["one"], "idempotency_key": key()},
            {"topic": topic, "args": ["two"]},  # no key: published again by the retry
            {"topic": "app.secret.plans", "idempotency_key": key()},
            {"topic": topic, "args": ["three"], "idempotency_key": key()},
        ]
        status, _, first = await post(router, batch, backend_token(backend))
        assert status == 200, first
        assert [sorted(item) for item in first] == [["id"], ["id"], ["error", "message"], ["id"]]
        status, _, again = await post(router, batch, backend_token(backend))
        assert status == 200, again
        assert (again[0], again[3]) == (first[0], first[3])
        assert again[1]["id"] != first[1]["id"] and again[2]["error"] == "wamp.error.not_authorized"
        await only_these_then_the_marker(router, inbox, topic, [("one",), ("two",), ("three",), ("two",)])
        # a key twice in one batch: the later publication is refused, the first published
        repeated = key()
        twice = [{"topic": topic, "args": ["a"], "idempotency_key": repeated},
                 {"topic": topic, "args": ["b"], "idempotency_key": repeated}]  # fmt: skip
        status, _, answer = await post(router, twice, backend_token(backend))
        assert status == 200 and "id" in answer[0], answer
        assert "repeats the key of publication 1" in answer[1]["message"]
        # the header names one publication: with a batch it is refused whole
        status, _, answer = await post(router, batch, backend_token(backend), headers={"Idempotency-Key": key()})
        assert status == 400 and "in a batch, give each publication its own" in answer["message"], answer
        await only_these_then_the_marker(router, inbox, topic, [("a",)])
    finally:
        bob.leave()


async def raw_post(router, key_header: bytes, body: bytes) -> bytes:
    """A request whose Idempotency-Key header carries any bytes (treq would refuse some)."""
    from twisted.internet import protocol, reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    class Collect(protocol.Protocol):
        def __init__(self):
            self.data, self.done = b"", defer.Deferred()

        def dataReceived(self, data):  # noqa: N802 - Twisted's name
            self.data += data

        def connectionLost(self, reason):  # noqa: N802 - Twisted's name
            self.done.callback(self.data)

    collect = Collect()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", router.port), collect)
    collect.transport.write(
        b"POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + backend_token().encode() + b"\r\nIdempotency-Key: " + key_header + b"\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    return await collect.done.addTimeout(10, reactor)


@pytest_twisted.ensureDeferred
async def test_a_key_too_long_or_not_visible_ascii_is_400_with_the_reason_and_never_logged(router):
    body = json.dumps({"topic": "app.public.news"}).encode()
    cases = {
        b"k" * 129: "it has 129 characters",
        b"two words": "character 4 is not visible ASCII",
        b"cl\xc3\xa9-\x1b[2J-fake": "character 3 is not visible ASCII",
        b"x\x7fy": "character 2 is not visible ASCII",
    }
    offset = router.log_size()
    for sent, reason in cases.items():
        answer = await raw_post(router, sent, body)
        head, _, text = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), answer[:300]
        message = json.loads(text)["message"]
        assert message.startswith("The Idempotency-Key header must be 1 to 128 visible ASCII characters"), message
        assert reason in message, message

    def refusal_lines():
        return [line for line in router.log()[offset:].splitlines() if "http publish refused" in line]

    # one line per refusal, each written when its worker's log reaches the node's (not in step)
    wait_for(lambda: len(refusal_lines()) >= len(cases), 10, "a log line per refused key")
    log = router.log()[offset:]
    ours = refusal_lines()
    assert len(ours) == len(cases), ours
    for sent in cases:  # described, never quoted (behind the proxies, Crossbar's proxy logs headers as repr)
        assert not any(sent.decode("latin-1") in line for line in ours), ours
    assert "\x1b[2J" not in log  # no raw control character from the key anywhere in the log


@pytest_twisted.ensureDeferred
async def test_a_key_in_the_body_and_the_header_at_once_is_refused(router):
    body = {"topic": "app.public.news", "idempotency_key": key()}
    status, _, answer = await post(router, body, backend_token(), headers={"Idempotency-Key": key()})
    assert status == 400 and "given twice" in answer["message"], answer
    status, _, answer = await post(router, body, backend_token())  # the body's own key alone is fine
    assert status == 200, answer


# -- the Redis store itself, against a redis-server ----------------------------------------------
# (a retry reaching another router and concurrent duplicates on two routers run on test_history.py's
# two routers sharing Redis: the same configuration, started once for both files)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis-idempotency")).start()
    yield server
    server.stop()


def redis_keys(server, **options) -> RedisIdempotency:
    return RedisIdempotency(redis.Redis.from_url(server.url, socket_timeout=2), url_shown=server.url, **options)


def test_of_many_routers_reserving_one_key_in_redis_at_once_exactly_one_gets_it(redis_server):
    stores = [redis_keys(redis_server, window_seconds=60) for _ in range(16)]
    name, bound_to = scope("billing", key()), fingerprint("app.a", [1], {}, {})
    start = threading.Barrier(len(stores))
    claims = []

    def reserve(store):
        start.wait()
        claims.append(store.reserve([(name, bound_to)])[0])

    threads = [threading.Thread(target=reserve, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(claim.state.value for claim in claims) == ["in_progress"] * 15 + ["reserved"]
    for store in stores:
        store.close()


def test_redis_keys_answer_the_first_id_only_their_owner_settles_and_a_stale_reservation_frees_itself(redis_server):
    keys = redis_keys(redis_server, window_seconds=60, pending_seconds=0.3)
    name, news, other = scope("billing", key()), fingerprint("app.a", [1], {}, {}), fingerprint("app.a", [2], {}, {})
    (mine,) = keys.reserve([(name, news)])
    assert mine.state is State.RESERVED
    keys.settle([(name, "not-the-owner", 1)])
    keys.release([(name, "not-the-owner")])
    assert keys.reserve([(name, news)])[0].state is State.IN_PROGRESS
    assert keys.reserve([(name, other)])[0].state is State.OTHER_PUBLICATION
    keys.settle([(name, mine.owner, 4711)])
    done = keys.reserve([(name, news)])[0]
    assert (done.state, done.publication_id) == (State.DONE, 4711)
    assert keys.reserve([(name, other)])[0].state is State.OTHER_PUBLICATION
    client = redis.Redis.from_url(redis_server.url)
    ttl = client.pttl(_key(name))
    assert 59_000 < ttl <= 60_000  # kept for the window
    assert client.get(_key(name)).decode() == f"d:4711:{news.hex()}"
    # a reservation whose router died before answering is free again after the pending time
    stale = scope("billing", key())
    keys.reserve([(stale, news)])
    wait_for(lambda: keys.reserve([(stale, news)])[0].state is State.RESERVED, 5, "the reservation to expire")
    keys.close()


def test_an_unreachable_redis_is_keys_unavailable_naming_the_store_not_the_key(redis_server):
    keys = RedisIdempotency(redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1),
                            url_shown="127.0.0.1:1/0", window_seconds=60)  # fmt: skip
    secret_key = key()
    with pytest.raises(KeysUnavailable) as refused:
        keys.reserve([(scope("billing", secret_key), b"f")])
    assert str(refused.value) == "Redis idempotency store at 127.0.0.1:1/0: ConnectionError"


def test_past_the_periods_budget_a_redis_key_is_kept_a_minute_not_the_window(redis_server):
    """A flood of fresh keys cannot fill Redis (which holds revocations and used jtis too): past
    max_keys reservations in a window-long period, a published key is kept 60 s, not the window."""
    period = uuid.uuid4().int % 10**6 + 10**6  # a period of its own: other tests' counters are elsewhere
    keys = redis_keys(redis_server, window_seconds=3600, max_keys=2, clock=lambda: period * 3600 + 5)
    client = redis.Redis.from_url(redis_server.url)
    news = fingerprint("app.a", [1], {}, {})
    names = [scope("flood", key()) for _ in range(4)]
    for name in names[:3]:
        (claim,) = keys.reserve([(name, news)])
        assert claim.state is State.RESERVED
        keys.settle([(name, claim.owner, 1)])
    kept = [client.pttl(_key(name)) for name in names[:3]]
    assert 3_590_000 < kept[0] <= 3_600_000 and 3_590_000 < kept[1] <= 3_600_000, kept
    assert 50_000 < kept[2] <= 60_000, kept
    assert keys.reserve([(names[2], news)])[0].publication_id == 1  # still answered meanwhile
    (over,) = keys.reserve([(names[3], news)])
    keys.release([(names[3], over.owner)])  # a refusal releases a reservation past the budget too
    assert client.get(_key(names[3])) is None
    assert 7_100_000 < client.pttl(f"crossbar-jwt:idempotency-budget:{period}") <= 7_200_000
    keys.close()
