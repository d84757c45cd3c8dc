"""The Redis history store (authenticator/server/redis_history.py) against a real redis-server:
the same model property as the memory store (tests/unit/test_history.py), where losing state is
the meta key evicted; the same positions for two routers' clients; keys a Redis Cluster can hold."""

from collections import Counter

import pytest
import redis
from hypothesis import given, settings

from authenticator.core.history import Position
from authenticator.server.redis_history import KEY_PREFIX, RedisHistory
from tests.support.redis_server import RedisServer
from tests.unit.test_history import OPERATIONS, SIZE, TTL, Clock, run_model

SEEN: Counter = Counter()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = RedisServer(tmp_path_factory.mktemp("redis-history")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server):
    return redis.Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=2)


def test_every_answer_of_the_redis_store_is_the_whole_rest_of_the_stream_or_says_it_is_not(client):
    def make_store(clock):
        client.flushdb()
        return RedisHistory(client, clock)

    def evict_meta(store, clock):  # what an eviction or a lost Redis does: the epoch is gone
        for key in client.scan_iter(f"{KEY_PREFIX}*:meta"):
            client.delete(key)
        return store

    @settings(max_examples=250, derandomize=True, database=None, deadline=None)
    @given(OPERATIONS)
    def check(operations):
        run_model(operations, make_store, evict_meta, SEEN)

    SEEN.clear()
    check()
    assert SEEN["recovered with events"] >= 15 and SEEN["not recovered"] >= 15, SEEN
    assert SEEN["recovered, nothing missed"] >= 5, SEEN


def test_two_routers_share_one_stream_and_its_positions(client):
    client.flushdb()
    clock = Clock()
    one, two = RedisHistory(client, clock), RedisHistory(client, clock)
    first = one.append("app.chat.lobby", ["a"], {}, "alice", size=SIZE, ttl_seconds=TTL)
    second = two.append("app.chat.lobby", ["b"], {"k": 1}, None, size=SIZE, ttl_seconds=TTL)
    assert (second.offset, second.epoch) == (first.offset + 1, first.epoch)
    answer = one.read("app.chat.lobby", first, 10, size=SIZE, ttl_seconds=TTL)
    assert answer.recovered and [(p, e.args, dict(e.kwargs)) for p, e in answer.events] == [(second, ("b",), {"k": 1})]


def test_both_keys_of_a_topic_are_in_one_cluster_slot_whatever_its_uri(client):
    client.flushdb()
    history = RedisHistory(client, Clock())
    for topic in ("app.user.bob.notifications", "app.{x}.y", "app." + "z" * 500):
        history.append(topic, [], {}, None, size=SIZE, ttl_seconds=TTL)
    keys = sorted(k.decode() for k in client.scan_iter(f"{KEY_PREFIX}*"))
    assert len(keys) == 6 and all(len(k) < 80 for k in keys), keys
    slots = Counter(key.split("{")[1].split("}")[0] for key in keys)  # the hash tag decides the slot
    assert sorted(slots.values()) == [2, 2, 2], slots  # each topic's meta and events share one hash tag


def test_a_stale_position_after_the_meta_is_lost_is_never_answered_from_the_new_stream(client):
    client.flushdb()
    history = RedisHistory(client, Clock())
    old = [history.append("t", [i], {}, None, size=SIZE, ttl_seconds=TTL) for i in range(3)]
    for key in client.scan_iter(f"{KEY_PREFIX}*:meta"):
        client.delete(key)
    new = [history.append("t", [i], {}, None, size=SIZE, ttl_seconds=TTL) for i in range(3)]
    assert new[0].offset == 1 and new[0].epoch != old[0].epoch
    answer = history.read("t", old[0], 10, size=SIZE, ttl_seconds=TTL)
    assert (answer.recovered, answer.events, answer.position) == (False, (), Position(3, new[0].epoch))


def test_a_position_whose_next_events_were_cut_by_size_or_ttl_is_not_recovered(client):
    client.flushdb()
    clock = Clock()
    history = RedisHistory(client, clock)
    kept = [history.append("t", [i], {}, None, size=SIZE, ttl_seconds=TTL) for i in range(SIZE + 2)]  # 1..7
    cut = history.read("t", kept[0], 10, size=SIZE, ttl_seconds=TTL)  # offset 2 is gone (size 5 keeps 3..7)
    assert (cut.recovered, cut.events) == (False, ())
    whole = history.read("t", kept[1], 10, size=SIZE, ttl_seconds=TTL)  # after 2: 3..7, all held
    assert whole.recovered and [p.offset for p, _ in whole.events] == [3, 4, 5, 6, 7]
    clock.advance(TTL + 0.001)
    late = history.read("t", kept[1], 10, size=SIZE, ttl_seconds=TTL)
    assert (late.recovered, late.events) == (False, ())
