"""Event history for recovery (issue 22), pure: a bounded stream per topic, positions of
(offset, epoch), and the one rule of reading it: a reader who gives a position gets every event
after it, in order, or `recovered: False` and nothing — never a partial answer that looks whole.

- The offset grows by one per event of a topic; the epoch is a random string fixed when the
  stream is created. A stream that was lost (a restarted process, an evicted stream) comes back
  with another epoch, so a position from before is detected as stale, never answered wrongly
  (Centrifugo's scheme, ../shared/REALTIME-NOTES.md).
- A stream keeps at most `size` events, each for at most `ttl_seconds`.
- The store keeps at most `max_streams` topics and about `max_bytes` of events (payloads
  estimated by their JSON length, plus EVENT_OVERHEAD_BYTES each); past either bound the least
  recently used stream goes first (its topic then starts again with a new epoch), and a stream
  alone over the budget loses its oldest events. A client that publishes to many topics or big
  events cannot grow the router past them.

Positions are opaque to clients: `{"offset": 41, "epoch": "9f2c..."}`, given back as `since`
unchanged. `read_position` checks one strictly: a client sends it.

The component keeps events through authenticator/server/history.py.
"""

from __future__ import annotations

import json
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_LIMIT = 1000  # events one read may return
EPOCH_CHARS = 16  # hex characters of an epoch (64 random bits)
MAX_EPOCH_CHARS = 64  # what a client may send as one
MAX_OFFSET = 2**53 - 1  # JavaScript's safe integers: the JS kit keeps positions as numbers
# What one kept event costs beside its payload (bench/history_cost.py measured ~390 bytes).
EVENT_OVERHEAD_BYTES = 400
DEFAULT_MAX_BYTES = 256 * 2**20


class PositionProblem(ValueError):
    """A `since` that is not a position this router hands out; the message says what one is."""


@dataclass(frozen=True)
class Position:
    offset: int
    epoch: str

    def as_wire(self) -> dict:
        return {"offset": self.offset, "epoch": self.epoch}


def read_position(value: object) -> Position | None:
    """A client's `since`: None, or exactly {"offset": <whole number >= 0>, "epoch": <string>}."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {"offset", "epoch"}:
        raise PositionProblem('since must be a position as history returned it: {"offset": n, "epoch": "..."}')
    offset, epoch = value["offset"], value["epoch"]
    if type(offset) is not int or not 0 <= offset <= MAX_OFFSET:
        raise PositionProblem(f"since.offset must be a whole number from 0 to {MAX_OFFSET}")
    if not isinstance(epoch, str) or not 0 < len(epoch) <= MAX_EPOCH_CHARS:
        raise PositionProblem(f"since.epoch must be the string history returned (at most {MAX_EPOCH_CHARS} characters)")
    return Position(offset, epoch)


@dataclass(frozen=True)
class KeptEvent:
    offset: int
    at: float  # when it was kept (the store's clock)
    args: tuple
    kwargs: Mapping[str, Any]
    publisher_authid: str | None  # only where the rule discloses the publisher
    cost: int = EVENT_OVERHEAD_BYTES  # bytes it is counted for against the store's budget


@dataclass(frozen=True)
class Answer:
    """What a read gives: the events after `since` (at most `limit`, oldest first), the stream's
    top position, and whether the events are all that happened after `since`. When there are more
    than `limit`, the last event's position is below `position`: read again from it."""

    events: tuple[tuple[Position, KeptEvent], ...]
    position: Position
    recovered: bool


def answer(since: Position | None, top: Position, held_after: list[KeptEvent]) -> Answer:
    """The read rule of both stores (here and authenticator/server/redis_history.py).
    `held_after`: the events still held after `since` (without one: the newest), oldest first, at
    most the limit. A reader with a position gets them only if they start right after it."""
    events = tuple((Position(e.offset, top.epoch), e) for e in held_after)
    if since is None:
        return Answer(events, top, recovered=False)  # there was no position to recover from
    if since.epoch != top.epoch or since.offset > top.offset:
        return Answer((), top, recovered=False)  # another epoch, or a position never handed out
    if since.offset < top.offset and (not held_after or held_after[0].offset != since.offset + 1):
        return Answer((), top, recovered=False)  # cut by size or ttl: never a partial answer
    return Answer(events, top, recovered=True)


@dataclass
class Stream:
    """One topic's events: offsets 1, 2, ... in this epoch; the oldest held first."""

    epoch: str
    top: int = 0
    events: deque = field(default_factory=deque)

    def expire(self, now: float, size: int, ttl_seconds: float) -> int:
        """Drop what is past the size or the ttl; the bytes freed."""
        # In whole milliseconds, as the Redis store keeps times: both agree at the ttl's boundary.
        ttl_ms = round(ttl_seconds * 1000)
        freed = 0
        while self.events and (len(self.events) > size or round((now - self.events[0].at) * 1000) > ttl_ms):
            freed += self.events.popleft().cost
        return freed

    @property
    def bytes(self) -> int:
        return sum(event.cost for event in self.events)


class MemoryHistory:
    """The history of every topic that keeps one, in this process (a restart loses it: the new
    streams have other epochs). Not thread-safe: the component uses it on the reactor only."""

    def __init__(self, *, max_streams: int = 100_000, max_bytes: int = DEFAULT_MAX_BYTES, clock: Callable[[], float],
                 new_epoch: Callable[[], str] = lambda: secrets.token_hex(EPOCH_CHARS // 2)) -> None:  # fmt: skip
        self._streams: OrderedDict[str, Stream] = OrderedDict()
        self._max_streams, self._clock, self._new_epoch = max_streams, clock, new_epoch
        self._max_bytes = max_bytes
        self.bytes = 0  # the cost of every event held
        self._unpublished: OrderedDict[str, None] = OrderedDict()  # streams read, never appended to

    def __len__(self) -> int:
        return len(self._streams)

    def append(self, topic: str, args, kwargs, publisher_authid: str | None, *, size: int,
               ttl_seconds: float) -> Position:  # fmt: skip
        """Keep one event of `topic`; its position."""
        now = self._clock()
        stream = self._stream(topic)
        self._unpublished.pop(topic, None)
        stream.top += 1
        args, kwargs = tuple(args or ()), dict(kwargs or {})
        cost = EVENT_OVERHEAD_BYTES + payload_bytes(args, kwargs)
        stream.events.append(KeptEvent(stream.top, now, args, kwargs, publisher_authid, cost))
        self.bytes += cost - stream.expire(now, size, ttl_seconds)
        self._within_budget(stream)
        return Position(stream.top, stream.epoch)

    def _within_budget(self, current: Stream) -> None:
        while self.bytes > self._max_bytes and len(self._streams) > 1:
            topic, oldest = next(iter(self._streams.items()))
            if oldest is current:  # the one in use is the most recent: never first, unless alone
                break
            del self._streams[topic]  # its topic starts again, with a new epoch
            self._unpublished.pop(topic, None)
            self.bytes -= oldest.bytes
        while self.bytes > self._max_bytes and len(current.events) > 1:
            self.bytes -= current.events.popleft().cost  # read as cut by size: recovered false

    def read(self, topic: str, since: Position | None, limit: int, *, size: int, ttl_seconds: float) -> Answer:
        """The events after `since`, see Answer. Without `since`: the newest `limit` events held,
        and `recovered` False (there was no position to recover from)."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be from 1 to {MAX_LIMIT}")
        stream = self._stream(topic)  # a topic read before any event: its epoch starts now
        self.bytes -= stream.expire(self._clock(), size, ttl_seconds)
        top = Position(stream.top, stream.epoch)
        held = stream.events
        if since is None:
            return answer(None, top, list(held)[-limit:])
        start = max(since.offset + 1 - (held[0].offset if held else 0), 0)  # offsets are contiguous
        return answer(since, top, [held[i] for i in range(start, min(len(held), start + limit))])

    def _stream(self, topic: str) -> Stream:
        stream = self._streams.get(topic)
        if stream is None:
            stream = self._streams[topic] = Stream(self._new_epoch())
            self._unpublished[topic] = None
            while len(self._streams) > self._max_streams:
                # Streams only read go first: a reader walking fresh topics cannot push out the
                # streams that hold events. The evicted topic starts again with a new epoch.
                if len(self._unpublished) > 1 or (self._unpublished and topic not in self._unpublished):
                    evicted_topic = next(t for t in self._unpublished if t != topic)
                    del self._unpublished[evicted_topic]
                    evicted = self._streams.pop(evicted_topic)
                else:
                    evicted_topic, evicted = self._streams.popitem(last=False)
                    self._unpublished.pop(evicted_topic, None)
                self.bytes -= evicted.bytes
        else:
            self._streams.move_to_end(topic)
        return stream


def payload_bytes(args: tuple, kwargs: dict) -> int:
    """What an event's payload weighs, about: its JSON length (what the WAMP message carried,
    which Crossbar bounds by max_message_size)."""
    try:
        return len(json.dumps([args, kwargs], separators=(",", ":"), default=str))
    except (TypeError, ValueError):  # a payload JSON cannot say (bytes from CBOR): count its repr
        return len(repr((args, kwargs)))
