"""What a recovering subscription decides, with no framework and no Autobahn: which events reach
the application, in which order, when to read `authenticator.history` and what to announce.
authenticator/kit/loop.py feeds it (subscribed, live events, history answers) and carries out
the steps it returns; tests/unit/test_kit_recovery.py holds it to a model.

The rule: the application gets every event of the topic once, in the order of its positions, or
is told `recovered: False` at the place where some are missing; never a gap in silence.

- Every (re)subscription reads the history after the last position the application saw. Live
  events are buffered while a read is under way; the read's events come first, then the buffer,
  merged by position: what the read gave is dropped from the buffer.
- A read answers at most `limit` events: the next page starts at the last event it gave, until
  the stream's top.
- A live event one past the last position is delivered; one at or below it is a duplicate and
  dropped; one further on, or of another epoch, is a gap: buffer and read from the last position.
- A live event without a position (an Autobahn the kit cannot read it from, or a router that does
  not send it) cannot be placed: it is dropped and the history read instead, so its delivery comes
  from there (one read per burst of such events).
- A read that says `recovered: False` (the events after the position are no longer held: too old,
  too many, the stream lost with a restart), or that fails after its retries, is announced; the
  buffered events of the stream's current epoch are then delivered from the first one on.

The first subscription without a position only learns the stream's top (a read of one event),
so that a reconnect soon after recovers what it missed; there is nothing to announce then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from authenticator.contract import HISTORY_UNAVAILABLE

HISTORY_LIMIT = 100  # events per read (the router answers at most 1000)
RETRIES = 3  # reads after a failure the router calls passing (history_unavailable), then announced
RETRY_SECONDS = 1.0  # the pause before each retry
RESUBSCRIBE = "resubscribe"  # a Recovery's cause: the subscription was made again (a reconnect)
GAP = "gap"  # a Recovery's cause: a live event further on than the next, or of another epoch


@dataclass(frozen=True, order=True)
class Position:
    offset: int
    epoch: str

    @classmethod
    def from_wire(cls, value: object) -> Position | None:
        """{"offset": n, "epoch": "..."} as the router sends it; None for anything else."""
        if not isinstance(value, Mapping):
            return None
        offset, epoch = value.get("offset"), value.get("epoch")
        if type(offset) is not int or offset < 0 or not isinstance(epoch, str) or not epoch:
            return None
        return cls(offset, epoch)

    def as_wire(self) -> dict:
        return {"offset": self.offset, "epoch": self.epoch}

    def follows(self, other: Position) -> bool:
        return self.epoch == other.epoch and self.offset == other.offset + 1

    def at_or_before(self, other: Position) -> bool:
        return self.epoch == other.epoch and self.offset <= other.offset


@dataclass(frozen=True)
class Event:
    """One event as the application gets it: the publication's args and kwargs, its position,
    and whether it came from the history (missed while not subscribed) or live."""

    position: Position | None
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    publisher_authid: str | None = None
    missed: bool = False


@dataclass(frozen=True)
class Recovery:
    """What on_recovered is told after a recovery: whether every event since the last position
    was delivered (`recovered`), how many of them came from the history (`missed`), why the kit
    read it (`cause`: resubscribe or gap) and, when not recovered, why (`reason`: the router's
    answer `not_held`, or the error URI of the failed read)."""

    topic: str
    recovered: bool
    missed: int
    cause: str
    reason: str | None = None


# -- the steps the recovery asks its runner to carry out, in order ------------------------------


@dataclass(frozen=True)
class Deliver:
    event: Event


@dataclass(frozen=True)
class Announce:
    recovery: Recovery


@dataclass(frozen=True)
class Fetch:
    """Call authenticator.history(topic, since=since, limit=limit), after `delay` seconds, and hand
    the answer (or the error) back with this `read` number."""

    read: int
    since: Position | None
    limit: int
    delay: float = 0.0


NOT_HELD = "not_held"  # a Recovery's reason: the router no longer holds the events after the position
BASELINE = "baseline"  # a read's cause: the stream's top, before the first subscription
SUBSCRIBE = "subscribe"  # a Recovery's cause: the first subscription, from its baseline
SYNC = "sync"  # a read's cause: a live event without a position


@dataclass(frozen=True)
class Page:
    """authenticator.history's answer, read strictly: events, position, recovered."""

    events: tuple[Event, ...]
    top: Position
    recovered: bool

    @classmethod
    def from_wire(cls, answer: object) -> Page:
        if not isinstance(answer, Mapping):
            raise ValueError("the history answer is not an object")
        top = Position.from_wire(answer.get("position"))
        if top is None or not isinstance(answer.get("recovered"), bool) or not isinstance(answer.get("events"), list):
            raise ValueError("the history answer lacks its position, recovered or events")
        events = []
        for item in answer["events"]:
            position = Position.from_wire(item.get("position")) if isinstance(item, Mapping) else None
            if position is None:
                raise ValueError("a history event without its position")
            args, kwargs = item.get("args") or [], item.get("kwargs") or {}
            if not isinstance(args, list) or not isinstance(kwargs, Mapping):
                raise ValueError("a history event's args or kwargs are not a list and an object")
            authid = item.get("publisher_authid")
            events.append(Event(position, tuple(args), dict(kwargs), authid if isinstance(authid, str) else None,
                                missed=True))  # fmt: skip
        return cls(tuple(events), top, answer["recovered"])


class Recovering:
    """One recovering subscription of one topic, across its sessions. Every method returns the
    steps to carry out, in order; a Fetch's answer comes back through answered() or failed().

    Per session: subscribing() (a baseline read, only while there is no position: it must be
    answered before the subscription is made), then subscribed() once the router confirmed the
    subscription, live() for each of its events, lost() when the session ends."""

    def __init__(self, topic: str, since: Position | None = None, *, limit: int = HISTORY_LIMIT,
                 retries: int = RETRIES, retry_seconds: float = RETRY_SECONDS) -> None:  # fmt: skip
        self.topic = topic
        self.position = since  # the last position the application saw (or was told to start after)
        self.limit, self.retries, self.retry_seconds = limit, retries, retry_seconds
        self.plain = False  # the topic cannot be recovered: live events go through as they come
        self._read = 0  # number of the latest read; answers to older ones are stale
        self._reading = False  # a read is under way: live events wait in the buffer
        self._buffer: list[Event] = []
        self._cause = BASELINE
        self._missed = 0
        self._failures = 0
        self._again = False  # a live event without a position came while reading: read once more
        self._told_loss = False
        self._subscribed_before = since is not None  # a position given: the first subscription recovers too

    @property
    def reading(self) -> bool:
        return self._reading

    # -- what happens to the subscription -------------------------------------------------------

    def subscribing(self) -> list:
        """Before the subscription is made: from now on live events wait in the buffer. With no
        position yet, read the stream's top first: read after subscribing, the top could be past
        events still on their way live, which would then look delivered already."""
        self.plain, self._buffer, self._again = False, [], False
        self._read += 1  # nothing of an earlier session counts any more
        self._reading = True
        if self.position is not None:
            return []
        return [self._start(BASELINE)]

    def subscribed(self) -> list:
        """The router confirmed the subscription: read what was missed since the position."""
        if self.plain or self.position is None:
            return self._finish([])  # nothing to recover from (the baseline could not be read: announced)
        cause = RESUBSCRIBE if self._subscribed_before else SUBSCRIBE
        self._subscribed_before = True
        return [self._start(cause)]

    def lost(self) -> None:
        """The session ended: its read will not be answered, its buffer is read again next time."""
        self._read += 1
        self._reading, self._buffer, self._again = False, [], False

    def live(self, event: Event) -> list:
        if self.plain:
            if event.position is not None and self.position is not None and event.position.at_or_before(self.position):
                return []
            if event.position is not None:
                self.position = event.position
            return [Deliver(event)]
        if self._reading:
            if event.position is None:
                self._again = True  # the read under way may have been answered before it
            else:
                self._buffer.append(event)
            return []
        if event.position is None:
            return [self._start(SYNC)]
        if self.position is None:  # no baseline could be read: start from the first event seen
            self.position = event.position
            return [Deliver(event)]
        if event.position.at_or_before(self.position):
            return []  # a duplicate: delivered already
        if event.position.follows(self.position):
            self.position = event.position
            return [Deliver(event)]
        self._buffer.append(event)
        return [self._start(GAP)]

    def answered(self, read: int, page: Page) -> list:
        if read != self._read or not self._reading:
            return []  # stale: a read of an earlier session or recovery
        self._failures = 0
        if self._cause == BASELINE:
            self.position = page.top  # live events still wait: subscribed() comes next
            return []
        if page.top.epoch != self.position.epoch and page.top.offset > 0 and not self._told_loss:
            # The stream was lost (a restart, an eviction) after the last position: what it lost is
            # announced, and its new epoch, all of it after the loss, is read from its start
            # (offsets start at 1 in both stores).
            steps = self._announce(False, NOT_HELD)
            self._told_loss = True
            self.position = Position(0, page.top.epoch)
            self._buffer = [e for e in self._buffer if e.position.epoch == page.top.epoch]
            return [*steps, self._next_read(0.0)]
        if not page.recovered or page.top.epoch != self.position.epoch:
            return self._finish(self._rebase(page.top, None if self._told_loss else NOT_HELD))
        steps: list = []
        for event in page.events:
            if event.position.at_or_before(self.position):
                continue  # the router answers after `since`; never deliver one twice
            if not event.position.follows(self.position):
                return self._finish(steps + self._rebase(page.top, NOT_HELD))  # never a hole in silence
            self.position = event.position
            self._missed += 1
            steps.append(Deliver(event))
        if self.position.offset < page.top.offset:
            if not page.events:
                return self._finish(steps + self._rebase(page.top, NOT_HELD))  # no progress: do not loop
            return [*steps, self._next_read(0.0)]  # more than a page: read on from the last one
        # Read up to the top: a buffered event of another epoch is of a stream lost before it
        # (one after it would be past the top, and shows at the next event as a gap).
        self._buffer = [e for e in self._buffer if e.position.epoch == page.top.epoch]
        return self._finish(steps + ([] if self._told_loss else self._announce(True, None)))

    def failed(self, read: int, error: str) -> list:
        """The read failed with this error URI (the kit's own word if there was none)."""
        if read != self._read or not self._reading:
            return []
        if error == HISTORY_UNAVAILABLE and self._failures < self.retries:
            self._failures += 1
            return [self._next_read(self.retry_seconds)]
        self._failures = 0
        steps = self._announce(False, error)
        if error != HISTORY_UNAVAILABLE:
            self.plain = True  # no history kept, no right to read it: live events as they come
        if self._cause == BASELINE:
            return steps  # subscribed() comes next, and delivers from the first live event
        return self._finish(steps + ([] if self.plain else self._rebase(None, None)))

    # -- inside ---------------------------------------------------------------------------------

    def _start(self, cause: str) -> Fetch:
        self._cause, self._missed, self._failures, self._reading = cause, 0, 0, True
        self._told_loss = False  # a loss announced in this recovery (not again for the same one)
        return self._next_read(0.0)

    def _next_read(self, delay: float) -> Fetch:
        self._read += 1
        if self._cause == BASELINE:
            return Fetch(self._read, None, 1, delay)  # the top is what a baseline needs
        return Fetch(self._read, self.position, self.limit, delay)

    def _announce(self, recovered: bool, reason: str | None) -> list:
        if recovered and self._cause not in (RESUBSCRIBE, GAP):
            return []  # the first subscription, a read for events without a position: nothing to tell
        cause = SUBSCRIBE if self._cause == BASELINE else self._cause
        return [Announce(Recovery(self.topic, recovered, self._missed, cause, reason))]

    def _rebase(self, top: Position | None, reason: str | None) -> list:
        """After a loss (announced here, unless `reason` is None: announced already), start again
        from the buffered events of the stream's current epoch (the top's, else the newest
        event's): the first of them is delivered, what came before it is the loss announced."""
        steps = self._announce(False, reason) if reason is not None else []
        old = self.position
        fresh = [e for e in self._buffer if old is None or not e.position.at_or_before(old)]
        epoch = top.epoch if top is not None else (fresh[-1].position.epoch if fresh else None)
        fresh = [e for e in fresh if e.position.epoch == epoch]
        if fresh:
            first = min(e.position.offset for e in fresh)
            self.position = Position(first - 1, epoch)
            self._buffer = fresh
        elif top is not None:
            self.position, self._buffer = top, []
        return steps

    def _finish(self, steps: list) -> list:
        """The read is over: the buffered live events go through the live rules, in the order they
        came (one of them may start the next read); then a read for events without a position."""
        self._reading = False
        buffered, self._buffer = self._buffer, []
        for event in buffered:
            steps += self.live(event)
        if self._again and not self._reading:
            self._again = False
            steps.append(self._start(SYNC))
        return steps
