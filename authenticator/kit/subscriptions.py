"""The kit's subscriptions, made again on every join: `client.subscribe(topic, handler, recover=True,
on_recovered=...)`. A recovering one runs authenticator/kit/recovery.py (the decisions, pure)
with the session: the history reads, the live events and their positions
(authenticator/kit/event_positions.py), the application's handler and on_recovered. On txaio:
the same for the Twisted and the asyncio kit (authenticator/kit/loop.py calls it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import txaio
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import SubscribeOptions

from authenticator.contract import HISTORY_UNAVAILABLE
from authenticator.kit.recovery import (
    HISTORY_LIMIT,
    Announce,
    Deliver,
    Event,
    Fetch,
    Page,
    Position,
    Recovering,
)

DETAILS = "x_crossbar_jwt_details"  # the keyword Autobahn hands the kit's handler its EventDetails under
INVALID_ANSWER = "crossbar-jwt.invalid_history_answer"  # a history answer the kit could not read


class Subscription:
    """One subscription the kit makes on every join, until unsubscribe(). `position` is the last
    position the application saw (keep it to start a later run from it: subscribe(since=...))."""

    def __init__(self, client, topic: str, handler: Callable, *, recover: bool, on_recovered, since,
                 limit: int, details_arg: str | None) -> None:  # fmt: skip
        self.client, self.topic, self.handler = client, topic, handler
        self.recover, self.on_recovered, self.details_arg = recover, on_recovered, details_arg
        self.recovering = Recovering(topic, Position.from_wire(since) if isinstance(since, dict) else since,
                                     limit=limit)  # fmt: skip
        self.session = None  # the session it is in place in
        self.ready = False  # in place, and caught up (the recovery's reads done) in this session
        self.joins = 0  # sessions it was made in
        self._autobahn = None  # Autobahn's Subscription in the current session
        self._stopped = False

    @property
    def position(self) -> dict | None:
        position = self.recovering.position
        return None if position is None else position.as_wire()

    def unsubscribe(self):
        """Stop: not made again; the current one is unsubscribed."""
        self._stopped = True
        if self in self.client._subscriptions:
            self.client._subscriptions.remove(self)
        autobahn, self._autobahn, self.session = self._autobahn, None, None
        if autobahn is not None and autobahn.active:
            return autobahn.unsubscribe()
        return txaio.create_future_success(None)

    # -- a session -------------------------------------------------------------------------------

    async def establish(self, session) -> None:
        """Make it in this (just joined) session: the baseline read first if needed, subscribe,
        then read what was missed."""
        self.session, self.ready = session, False
        if self.recover:
            await _done(self._run(session, self.recovering.subscribing()))
        if self._current(session) is False:
            return
        self._autobahn = await session.subscribe(self._live(session), self.topic,
                                                 options=SubscribeOptions(details_arg=DETAILS))  # fmt: skip
        if self._current(session) is False:
            return
        self.joins += 1
        if self.recover:
            await _done(self._run(session, self.recovering.subscribed()))
        self.ready = self.ready or not self.recovering.reading

    def lost(self) -> None:
        self.session, self._autobahn, self.ready = None, None, False
        self.recovering.lost()

    def _current(self, session) -> bool:
        return not self._stopped and session is self.session and session is self.client.session

    def _live(self, session):
        notes = self.client._position_notes

        def on_event(*args, **kwargs):
            details = kwargs.pop(DETAILS, None)
            if not self._current(session):
                return None
            raw = None
            if notes is not None and details is not None:
                raw = notes.position_of(details.subscription.id, details.publication)
            event = Event(Position.from_wire(raw), tuple(args), kwargs,
                          getattr(details, "publisher_authid", None))  # fmt: skip
            if not self.recover:
                self._deliver(event)
                return None
            pending = self._run(session, self.recovering.live(event))
            if pending is not None:
                txaio.add_callbacks(pending, None, self._crashed)
            return None

        return on_event

    # -- the recovery's steps ----------------------------------------------------------------------

    def _run(self, session, steps: list):
        """Carry out the steps in order: deliveries and announcements at once; a read (always the
        last step) as a future, returned (None when there is none)."""
        for step in steps:
            if isinstance(step, Deliver):
                self._deliver(step.event)
            elif isinstance(step, Announce):
                if self.on_recovered is not None:
                    self.client._call_application("on_recovered", self.on_recovered, step.recovery)
            elif isinstance(step, Fetch):
                return txaio.as_future(self._read, session, step)
        return None

    async def _read(self, session, fetch: Fetch) -> None:
        if fetch.delay:
            await self.client._pause_for(fetch.delay)
        if not self._current(session):
            return
        since = None if fetch.since is None else fetch.since.as_wire()
        try:
            answer = await self.client._read_history(session, self.topic, since, fetch.limit)
        except ApplicationError as error:
            if not self._current(session):
                return
            steps = self.recovering.failed(fetch.read, error.error)
        except Exception as error:  # noqa: BLE001 - the session went, or the call could not be made
            if not self._current(session):
                return
            self.client.log.warn("crossbar-jwt: reading the history of {topic} failed ({error}); trying again",
                                 topic=self.topic, error=f"{type(error).__name__}: {error}")  # fmt: skip
            steps = self.recovering.failed(fetch.read, HISTORY_UNAVAILABLE)
        else:
            if not self._current(session):
                return
            try:
                page = Page.from_wire(answer)
            except ValueError as problem:
                self.client.log.warn("crossbar-jwt: the history answer for {topic} is not one ({problem})",
                                     topic=self.topic, problem=str(problem))  # fmt: skip
                steps = self.recovering.failed(fetch.read, INVALID_ANSWER)
            else:
                steps = self.recovering.answered(fetch.read, page)
        await _done(self._run(session, steps))
        if self._current(session) and not self.recovering.reading:
            self.ready = True

    def _deliver(self, event: Event) -> None:
        kwargs = dict(event.kwargs)
        if self.details_arg:
            kwargs[self.details_arg] = event
        try:
            result = self.handler(*event.args, **kwargs)
        except Exception:  # noqa: BLE001 - the application's handler: logged, the kit goes on
            self.client._application_failed("the handler of " + self.topic, txaio.create_failure())
            return
        if inspect.isawaitable(result):
            txaio.add_callbacks(txaio.as_future(_awaited, result), None,
                                lambda failure: self.client._application_failed("the handler of " + self.topic,
                                                                                failure))  # fmt: skip

    def _crashed(self, failure) -> None:
        self.client.log.error("crossbar-jwt: recovery of {topic}: unexpected {error}\n{traceback}", topic=self.topic,
                              error=txaio.failure_message(failure),
                              traceback=txaio.failure_format_traceback(failure))  # fmt: skip


async def _done(pending) -> None:
    if pending is not None:
        await pending


async def _awaited(awaitable):
    return await awaitable


def make(client, topic: str, handler: Callable[..., Any], *, recover: bool = False, on_recovered=None, since=None,
         limit: int = HISTORY_LIMIT, details_arg: str | None = None) -> Subscription:  # fmt: skip
    if not callable(handler):
        raise TypeError("handler must be callable")
    if on_recovered is not None and not recover:
        raise ValueError("on_recovered needs recover=True")
    return Subscription(client, topic, handler, recover=recover, on_recovered=on_recovered, since=since, limit=limit,
                        details_arg=details_arg)  # fmt: skip
