"""Patch 'meta-events-in-process': the component learns of sessions joining and leaving, and of
subscriptions, from the realm's service session as it publishes them, not as subscribed WAMP
events.

Crossbar announces every session's join and leave (and every subscription change) by publishing
a meta event on the realm's service session (``RouterServiceAgent.publish``). The component used
to subscribe to them: each login then paid for two events dispatched by the broker and delivered
to the component, two handlers each -- ~9 % of the login rate (measured with and without, issue
23), which a component that needs no session table does not pay.

The realm's ``RouterServiceAgent`` instance gets a ``publish`` that first hands the event's
arguments to this component's listener for its topic, then publishes it as before (other
subscribers still get it). Same arguments, same moment: Crossbar delivered these events to an
embedded component synchronously within the same ``publish`` call. A listener that raises is
logged and does not stop Crossbar's publication.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

_LISTENERS = "_crossbar_jwt_meta_listeners"


def install(router, listeners: Mapping[str, tuple[Callable[..., None], ...]], log) -> bool:
    """Call each of ``listeners[topic]`` with the event's arguments for each meta event the realm of
    `router` publishes; True once installed."""
    agent = router._realm.session
    if agent is None:
        raise RuntimeError("the realm has no service session: Crossbar publishes no meta events")
    if _LISTENERS in agent.__dict__:
        agent.__dict__[_LISTENERS].update(listeners)
        return True
    kept = dict(listeners)
    original = agent.publish

    def publish(topic, *args, **kwargs):
        for listener in kept.get(topic, ()):
            try:
                listener(*args)
            except Exception:  # noqa: BLE001 - the other listeners and Crossbar's own publication go on
                log.failure("authenticator: handling {topic} failed", topic=topic)
        return original(topic, *args, **kwargs)

    agent.__dict__[_LISTENERS] = kept
    agent.publish = publish
    return True
