"""Presence in Redis (docs/recovery.md#presence): the members of a topic shared by every router of a
deployment, Centrifugo-style, with join/leave decided across routers.

Per topic, three keys that one Redis Cluster slot holds (one hash tag: a digest of the topic):
- `crossbar-jwt:presence:{<digest>}:members`, a hash of member (`<node>:<session>`) -> authid;
- `crossbar-jwt:presence:{<digest>}:expiry`, a sorted set of member -> expiry time (ms, Redis's clock);
- `crossbar-jwt:presence:{<digest>}:counts`, a hash of authid -> its members on the topic.

`node` is random per router process: a router that restarts never refreshes its former entries.
Each router refreshes its own entries every third of the TTL (the same script as an add, so an
entry dropped meanwhile comes back); an entry not refreshed for the TTL is stale: it is left out of
every read at once, and dropped (with the leave it means) by the next script that touches its topic.

One Lua script per change, so a join (the authid's first member on the topic, on any router) or a
leave (its last) is decided atomically and announced by the script itself with PUBLISH on
EVENTS_CHANNEL; every router (the one that changed too) relays what it hears to its own
subscribers of `authenticator.presence.<topic>`. Announcements are at most once: a router that is
not connected to Redis when one is made misses it (the answer is always the current state).

Blocking, as redis-py is: the component calls it on its I/O threads, never on the reactor.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Iterable

from authenticator.core.redis_url import in_namespace

KEY_PREFIX = "crossbar-jwt:presence:"
EVENTS_CHANNEL = "crossbar-jwt:presence-events"


def events_channel(realm: str | None) -> str:
    """A realm's channel: Redis pub/sub ignores the database number, so two realms that keep their
    state in two databases of one server would otherwise hear each other's joins and leaves."""
    return f"{EVENTS_CHANNEL}:{realm}" if realm else EVENTS_CHANNEL


# Stale entries one script drops (a read leaves the others out anyway, the next script drops them).
CLEAN_LIMIT = 1000
KEY_TTL_FACTOR = 2  # the keys of a topic outlive its last change by twice the TTL
RECONNECT_SECONDS = 1.0

_CLEAN = """
local members, expiry, counts = KEYS[1], KEYS[2], KEYS[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function announce(event, authid)
  redis.call('PUBLISH', ARGV[1], cjson.encode({topic = ARGV[2], event = event, authid = authid}))
end
local function drop(member)
  local authid = redis.call('HGET', members, member)
  redis.call('ZREM', expiry, member)
  if authid then
    redis.call('HDEL', members, member)
    if redis.call('HINCRBY', counts, authid, -1) <= 0 then
      redis.call('HDEL', counts, authid)
      announce('leave', authid)
    end
  end
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))) do
  drop(member)
end
"""

# KEYS: members, expiry, counts; ARGV: channel, topic, clean limit, member, authid, ttl (ms).
_ADD = (
    _CLEAN
    + """
local member, authid, ttl = ARGV[4], ARGV[5], tonumber(ARGV[6])
local new = redis.call('HSET', members, member, authid)
redis.call('ZADD', expiry, now + ttl, member)
if new == 1 and redis.call('HINCRBY', counts, authid, 1) == 1 then
  announce('join', authid)
end
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ttl * tonumber(ARGV[7])) end
return new
"""
)

# KEYS: members, expiry, counts; ARGV: channel, topic, clean limit, member.
_REMOVE = (
    _CLEAN
    + """
local had = redis.call('HEXISTS', members, ARGV[4])
drop(ARGV[4])
return had
"""
)

# KEYS: members, expiry, counts; ARGV: channel, topic, clean limit. The authid of every live member.
_READ = (
    _CLEAN
    + """
local live = redis.call('ZRANGEBYSCORE', expiry, '(' .. now, '+inf')
local authids = {}
for i = 1, #live, 1000 do
  local chunk = redis.call('HMGET', members, unpack(live, i, math.min(i + 999, #live)))
  for _, authid in ipairs(chunk) do
    if authid then authids[#authids + 1] = authid end
  end
end
return authids
"""
)


def keys(topic: str, prefix: str = KEY_PREFIX) -> list[str]:
    tag = hashlib.sha256(topic.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return [f"{prefix}{{{tag}}}:{name}" for name in ("members", "expiry", "counts")]


class RedisPresence:
    def __init__(self, client, *, node: str, ttl_seconds: float, channel: str = EVENTS_CHANNEL,
                 namespace: str = "") -> None:  # fmt: skip
        self._redis, self.node, self._ttl_ms = client, node, int(ttl_seconds * 1000)
        self._prefix = in_namespace(KEY_PREFIX, namespace)  # the realm's keys
        self._channel = channel
        self._add = client.register_script(_ADD)
        self._remove = client.register_script(_REMOVE)
        self._read = client.register_script(_READ)

    def member(self, session) -> str:
        return f"{self.node}:{session}"

    def apply(self, operations: Iterable[tuple]) -> None:
        """Changes in order, pipelined (each its own atomic script): ("add", topic, session, authid)
        adds or refreshes a member, ("remove", topic, session) removes it."""
        pipe = self._redis.pipeline(transaction=False)
        for operation in operations:
            topic = operation[1]
            common = [self._channel, topic, CLEAN_LIMIT, self.member(operation[2])]
            if operation[0] == "add":
                self._add(
                    keys=keys(topic, self._prefix),
                    args=[*common, operation[3], self._ttl_ms, KEY_TTL_FACTOR],
                    client=pipe,
                )
            else:
                self._remove(keys=keys(topic, self._prefix), args=common, client=pipe)
        pipe.execute()

    def read(self, topic: str) -> list[str]:
        """The authid of each live member of topic (one per session, on any router)."""
        found = self._read(keys=keys(topic, self._prefix), args=[self._channel, topic, CLEAN_LIMIT])
        return [a.decode() if isinstance(a, bytes) else a for a in found]


def listen_for_events(
    client_factory: Callable[[], object], on_event: Callable[[str, str, str], None],
    on_problem: Callable[[str], None], where: str, channel: str = EVENTS_CHANNEL,
) -> threading.Event:  # fmt: skip
    """Call on_event(topic, event, authid) for every announcement any router's script makes, from a
    daemon thread (the caller hands it to its reactor); reconnects after an error. Set the returned
    event to stop."""
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            pubsub = None
            try:
                pubsub = client_factory().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(channel)
                while not stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        parsed = _event(message.get("data"))
                        if parsed is not None:
                            on_event(*parsed)
            except Exception as error:  # noqa: BLE001 - whatever fails, the listener must live on
                with contextlib.suppress(Exception):
                    on_problem(f"Redis presence events at {where}: {type(error).__name__}; retrying")
                stop.wait(RECONNECT_SECONDS)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()

    threading.Thread(target=listen, name="authenticator-presence-events", daemon=True).start()
    return stop


def _event(data) -> tuple[str, str, str] | None:
    try:
        event = json.loads(data)
        topic, kind, authid = event["topic"], event["event"], event["authid"]
    except (TypeError, ValueError, KeyError):
        return None
    if not all(isinstance(v, str) for v in (topic, kind, authid)) or kind not in ("join", "leave"):
        return None
    return topic, kind, authid
