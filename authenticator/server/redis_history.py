"""Event history in Redis (issue 22, not wired yet): the same streams and the same read rule as
authenticator/core/history.py, shared by every router of a deployment, so every node hands out
the same positions in the same order.

Per topic, two keys that one Redis Cluster slot holds (one hash tag: a digest of the topic):
- `crossbar-jwt:history:{<digest>}:meta`, a hash of `epoch` and `top` (the last offset);
- `crossbar-jwt:history:{<digest>}:events`, a stream whose entry ids are `0-<offset>`, each with
  the time it was kept (`at`, ms) and the event (`event`, JSON).

One Lua script per append: a stream whose meta is gone (never written, expired, evicted) starts
again with a new epoch and its old events dropped, so a position from before is stale, never
answered wrongly. The stream is capped at `size` entries (exact MAXLEN) and expires `ttl` after
its last append; the meta lives META_TTL_FACTOR times longer, so that a quiet topic keeps its
epoch while its events expire (Centrifugo's history_meta_ttl, ../shared/REALTIME-NOTES.md).

Blocking, as redis-py is: the component calls it on its I/O threads, never on the reactor.
"""

from __future__ import annotations

import hashlib
import json
import secrets

from authenticator.core.history import EPOCH_CHARS, MAX_LIMIT, Answer, KeptEvent, Position, answer
from authenticator.core.redis_url import in_namespace

KEY_PREFIX = "crossbar-jwt:history:"
META_TTL_FACTOR = 10

_APPEND = """
local meta, events = KEYS[1], KEYS[2]
local size, ttl_ms, new_epoch, now_ms, event = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = new_epoch
  redis.call('DEL', events)
  redis.call('HSET', meta, 'epoch', epoch, 'top', 0)
end
local top = redis.call('HINCRBY', meta, 'top', 1)
redis.call('XADD', events, 'MAXLEN', size, '0-' .. top, 'at', now_ms, 'event', event)
redis.call('PEXPIRE', events, ttl_ms)
redis.call('PEXPIRE', meta, ttl_ms * tonumber(ARGV[6]))
return {epoch, top}
"""

# The read in one script too: the meta and the entries it names are read at one instant.
_READ = """
local meta, events = KEYS[1], KEYS[2]
local first_wanted, limit, new_epoch = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = new_epoch
  redis.call('DEL', events)
  redis.call('HSET', meta, 'epoch', epoch, 'top', 0)
  redis.call('PEXPIRE', meta, tonumber(ARGV[4]))
end
local top = tonumber(redis.call('HGET', meta, 'top'))
local entries
if first_wanted < 0 then
  entries = redis.call('XREVRANGE', events, '+', '-', 'COUNT', limit)
else
  entries = redis.call('XRANGE', events, '0-' .. first_wanted, '+', 'COUNT', limit)
end
return {epoch, top, entries}
"""


def _keys(topic: str, prefix: str = KEY_PREFIX) -> list[str]:
    tag = hashlib.sha256(topic.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return [f"{prefix}{{{tag}}}:meta", f"{prefix}{{{tag}}}:events"]


def _new_epoch() -> str:
    return secrets.token_hex(EPOCH_CHARS // 2)


class RedisHistory:
    def __init__(self, client, clock, new_epoch=_new_epoch, namespace: str = "") -> None:
        """namespace: the realm's part of every key on a node with several realms (core/redis_url.realm_namespace)."""
        self._redis, self._clock, self._new_epoch = client, clock, new_epoch
        self._prefix = in_namespace(KEY_PREFIX, namespace)
        self._append = client.register_script(_APPEND)
        self._read = client.register_script(_READ)

    def append(self, topic: str, args, kwargs, publisher_authid: str | None, *, size: int,
               ttl_seconds: float) -> Position:  # fmt: skip
        event = json.dumps({"args": list(args or ()), "kwargs": dict(kwargs or {}), "publisher": publisher_authid},
                           separators=(",", ":"))  # fmt: skip
        epoch, top = self._append(
            keys=_keys(topic, self._prefix),
            args=[size, _ms(ttl_seconds), self._new_epoch(), round(self._clock() * 1000), event, META_TTL_FACTOR],
        )
        return Position(int(top), _text(epoch))

    def read(self, topic: str, since: Position | None, limit: int, *, size: int, ttl_seconds: float) -> Answer:
        """As MemoryHistory.read: every event after `since` (at most `limit`), or recovered False
        and nothing."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be from 1 to {MAX_LIMIT}")
        first_wanted = -1 if since is None else since.offset + 1
        epoch, top, entries = self._read(
            keys=_keys(topic, self._prefix),
            args=[first_wanted, limit, self._new_epoch(), _ms(ttl_seconds) * META_TTL_FACTOR],
        )
        epoch, top = _text(epoch), int(top)
        now_ms = round(self._clock() * 1000)
        events = [_kept(entry) for entry in entries]
        events = [e for e in events if now_ms - round(e.at * 1000) <= _ms(ttl_seconds) and e.offset > top - size]
        if since is None:
            events.reverse()  # XREVRANGE: newest first
        return answer(since, Position(top, epoch), events)


def _kept(entry) -> KeptEvent:
    entry_id, fields = entry
    pairs = fields.items() if isinstance(fields, dict) else zip(fields[::2], fields[1::2], strict=True)
    fields = {_text(k): v for k, v in pairs}
    event = json.loads(fields["event"])
    offset = int(_text(entry_id).partition("-")[2])
    return KeptEvent(offset, int(fields["at"]) / 1000, tuple(event["args"]), event["kwargs"], event["publisher"])


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
