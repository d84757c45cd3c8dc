"""Patch 'event-positions': every live EVENT of a topic that keeps history carries its position
(the detail ``x_position``, contract.EVENT_POSITION_DETAIL), so a kit can tell that it missed one.

Crossbar gives an event no place for it: a PUBLISH's custom options never reach subscribers, and
Autobahn's ``Event`` has no free detail. So, in the router worker:

- :func:`install_history_tap` hooks the realm's router and broker. Crossbar authorizes each
  publication (asynchronously: the dynamic authorizer is a WAMP call) and then, in one reactor
  turn, stores it in its event store (``store_event``, once per publication) and dispatches its
  EVENTs. The tap keeps the event in the history store when the authorization allowed it -- the
  only place where I/O (a Redis round trip) can run before any EVENT is sent -- and, in
  ``store_event``, records the position under the publication's id.
- :func:`install_event_details` wraps ``Event.marshal`` to add the recorded position to each EVENT
  of that publication, and ``Event.parse`` to record the position an EVENT arrives with: a proxy
  worker parses the router worker's EVENTs and marshals them again for its client, and would drop
  the detail otherwise (installed there by harden_proxy_worker).

The tap is registered as the broker's event store, an observer of the subscriptions that cover
every history topic (core/policy.observed_topics): Crossbar then authorizes a publication on such
a topic even when nobody is subscribed, so it is kept (Crossbar skips publications nobody would
receive). Its own event history stays off: ``get_events`` answers nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import txaio

from authenticator.contract import EVENT_POSITION_DETAIL
from authenticator.core.history import PositionProblem, read_position

# Publications whose EVENTs may still be marshalled. A fan-out to many subscribers is sent in
# chunks over several reactor turns: an entry must outlive its publication's dispatch. Past the
# bound the oldest goes; an EVENT sent later still reaches its subscriber, without a position
# (the kits then check the stream's position: docs/recovery.md).
KEEP_POSITIONS = 16_384
# Publications authorized and kept, whose store_event has not come yet (one reactor turn, except
# for a publication whose payload failed Crossbar's validation after it was allowed).
MAX_PENDING = 16_384

_positions: OrderedDict[int, dict] = OrderedDict()


def remember(publication: int, position: dict) -> None:
    _positions[publication] = position
    if len(_positions) > KEEP_POSITIONS:
        _positions.popitem(last=False)


def position_of(publication: int) -> dict | None:
    return _positions.get(publication)


def install_event_details(*, passthrough: bool = False) -> None:
    """Every Event marshalled in this process carries the position recorded for its publication.
    `passthrough` (proxy workers): every Event parsed records the position it carries, so that the
    router worker's EVENTs keep it on their way to the client. Only there: a router worker parses
    what clients send, and a client's (invalid) EVENT must not reach the table."""
    from autobahn.wamp import message

    if not getattr(message.Event, "_crossbar_jwt_positions", False):
        original_marshal = message.Event.marshal

        def marshal(self):
            wire = original_marshal(self)
            position = _positions.get(self.publication)
            if position is not None:
                wire[3][EVENT_POSITION_DETAIL] = position
            return wire

        message.Event.marshal = marshal
        message.Event._crossbar_jwt_positions = True
    if passthrough and not getattr(message.Event, "_crossbar_jwt_passthrough", False):
        from crossbar.worker.proxy import ProxyBackendSession

        original_parse, original_open = message.Event.parse, ProxyBackendSession.onOpen

        def parse(wmsg):
            event = original_parse(wmsg)
            carried = wmsg[3].get(EVENT_POSITION_DETAIL) if isinstance(wmsg[3], dict) else None
            if carried is not None and _reading_from_router[0]:  # never from what a client sends
                try:
                    remember(event.publication, read_position(carried).as_wire())
                except PositionProblem:
                    pass  # not one of ours: passed on without it
            return event

        def on_open(self, transport):
            # The proxy's connection to the router worker: only what arrives on it is the router's.
            serializer = getattr(transport, "_serializer", None)
            if serializer is not None:
                serializer.unserialize = from_the_router(serializer.unserialize)
            return original_open(self, transport)

        message.Event.parse = staticmethod(parse)
        ProxyBackendSession.onOpen = on_open
        message.Event._crossbar_jwt_passthrough = True


_reading_from_router = [False]  # set while a proxy worker parses what its router worker sent (or a
# router link what the other node's router sent)

# The key a router link's relay carries its event's position under, in its forward_for's first
# entry (authenticator/patches/rlink_events.py); the tap takes it out before anything is sent.
RELAYED_POSITION = "x_crossbar_jwt_position"


def _relayed_position(publish) -> dict | None:
    """The position a router link's relay carries (taken out of its forward_for), if it is one."""
    forward_for = publish.forward_for
    if not forward_for or not isinstance(forward_for[0], dict) or RELAYED_POSITION not in forward_for[0]:
        return None
    first = dict(forward_for[0])
    carried = first.pop(RELAYED_POSITION)
    publish.forward_for = [first, *forward_for[1:]]
    try:
        return read_position(carried).as_wire()
    except PositionProblem:
        return None


def from_the_router(unserialize):
    """Wrap a connection's unserialize: what it parses is a router's (a proxy's backend, a router link)."""

    def unserialize_from_router(*args, **kwargs):
        _reading_from_router[0] = True
        try:
            return unserialize(*args, **kwargs)
        finally:
            _reading_from_router[0] = False

    return unserialize_from_router


class HistoryTap:
    """The broker's event store, for history topics only. `keep(topic, args, kwargs,
    publisher_authid)` keeps one event and gives its position dict (or a Deferred of it)."""

    _session_id = None  # Crossbar's dispatch skips its event store by identity and reads these
    _authid = None
    _authrole = None
    _transport = None

    def __init__(self, keep: Callable, keeps_history: Callable[[str], bool],
                 kept_elsewhere: Callable[[object], bool] = lambda publish: False,
                 refused: Callable[[object, object, str], None] = lambda *_: None,
                 over_budget: Callable[[object, object], str | None] = lambda *_: None) -> None:  # fmt: skip
        """`kept_elsewhere(publish)`: whether that publication was kept already where it was first
        published (a router link relaying another router's event into a shared store);
        `refused(publish, session, reason)`: logs a publication the tap refuses."""
        self._keep, self._keeps_history, self._kept_elsewhere = keep, keeps_history, kept_elsewhere
        self._refused, self._over_budget = refused, over_budget
        self._pending: OrderedDict[int, dict] = OrderedDict()  # id(publish) -> position
        self.current = None  # the PUBLISH the broker is processing, while it asks for authorization

    # -- Crossbar's event-store interface ------------------------------------------------------

    def attach_subscription_map(self, subscription_map) -> None:
        pass

    def store_event(self, session, publication: int, publish) -> None:
        position = self._pending.pop(id(publish), None)
        if position is not None:
            remember(publication, position)

    def store_event_history(self, publication, subscription_id, receiver) -> None:
        pass

    def get_events(self, subscription_id, limit=None):
        return None  # Crossbar's own history (wamp.subscription.get_events) stays off

    def get_event_history(self, *args, **kwargs):
        return None

    # -- the authorization hook ----------------------------------------------------------------

    def authorized(self, publish, session, authorization: dict):
        """After Crossbar's authorization of `publish` answered: keep an allowed event of a history
        topic, then hand the answer on (a failure to keep it fails the authorization: Crossbar
        refuses the publication with our message, and nothing is dispatched unkept)."""
        if not authorization.get("allow") or not self._keeps_history(publish.topic):
            return authorization
        if publish.payload is not None:
            # Payload mode (end-to-end encrypted or transparent): the router never sees args and
            # kwargs, so it could keep nothing a recovering subscriber could use.
            self._refused(publish, session, "a payload-mode (end-to-end encrypted) publication cannot be kept on a "
                          "topic that keeps history; publish args/kwargs, or to a topic without history")  # fmt: skip
            return {"allow": False, "cache": False, "disclose": False}
        # The publisher receives its own event too (Crossbar's exclude_me is ignored here): a
        # stream of positions has no holes, and a recovering kit that missed it would read the
        # history after every message it sends and deliver it from there anyway.
        publish.exclude_me = False

        def hold(position: dict) -> dict:
            self._pending[id(publish)] = position
            if len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)
            return authorization

        # a router link's relay (its own session: Crossbar's reserved role) carries the position
        carried = _relayed_position(publish) if getattr(session, "_authrole", None) == "trusted" else None
        if self._kept_elsewhere(publish):
            # kept where it was published: sent on with that position, else without one (the
            # kits then read it from the shared store)
            return authorization if carried is None else hold(carried)
        over = self._over_budget(publish, session)
        if over is not None:
            self._refused(publish, session, over)
            return {"allow": False, "cache": False, "disclose": False}
        # the publisher's authid is kept only where the rule discloses the publisher
        publisher = getattr(session, "_authid", None) if authorization.get("disclose") else None
        kept = self._keep(publish.topic, publish.args, publish.kwargs, publisher)
        if txaio.is_future(kept):
            return kept.addCallback(hold)
        return hold(kept)


def install_history_tap(router, tap: HistoryTap, observed: list[tuple[str, str]]) -> None:
    """Hook this realm's router: its broker's PUBLISH processing (to know the PUBLISH an
    authorization is for), its ``authorize`` (keep allowed events of history topics), and its
    broker's event store (the tap, observing `observed`: (uri, match) pairs)."""
    if getattr(router, "_crossbar_jwt_history", False):
        return
    broker = router._broker
    original_process, original_authorize = broker.processPublish, router.authorize

    def process_publish(session, publish):
        outer, tap.current = tap.current, publish  # a publication a handler makes while one is dispatched
        try:
            return original_process(session, publish)
        finally:
            tap.current = outer

    def authorize(session, uri, action, options=None):
        answer = original_authorize(session, uri, action, options)
        publish = tap.current
        if action != "publish" or publish is None or publish.topic != uri:
            return answer
        return answer.addCallback(lambda authorization: tap.authorized(publish, session, authorization))

    broker.processPublish = process_publish
    router.authorize = authorize
    broker._event_store = tap
    for uri, match in observed:
        broker._subscription_map.add_observer(tap, uri=uri, match=match)
    router._crossbar_jwt_history = True
