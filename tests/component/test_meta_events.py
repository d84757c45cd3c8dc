"""Patch 'meta-events-in-process' (authenticator/patches/meta_events.py): the listeners get each
meta event's arguments, one that raises stops neither the others nor Crossbar's publication.
(Through the real router: every lifecycle and presence test follows sessions this way.)"""

from types import SimpleNamespace

from authenticator.patches.meta_events import install


class _Agent:
    def __init__(self):
        self.published = []

    def publish(self, topic, *args, **kwargs):
        self.published.append((topic, args, kwargs))
        return "crossbar's own"


class _Log:
    def __init__(self):
        self.failures = []

    def failure(self, text, **fields):
        self.failures.append((text, fields))


def test_each_listener_gets_the_event_and_a_raising_one_stops_nothing():
    agent, log, seen = _Agent(), _Log(), []
    router = SimpleNamespace(_realm=SimpleNamespace(session=agent))

    def broken(*args):
        raise ValueError("a bug in one listener")

    assert install(router, {"wamp.session.on_leave": (broken, lambda *a: seen.append(a))}, log) is True
    assert agent.publish("wamp.session.on_leave", 42, options="ack") == "crossbar's own"
    assert agent.publish("wamp.session.on_join", {"session": 7}) == "crossbar's own"
    assert seen == [(42,)]
    assert agent.published == [("wamp.session.on_leave", (42,), {"options": "ack"}),
                               ("wamp.session.on_join", ({"session": 7},), {})]  # fmt: skip
    assert [fields["topic"] for _, fields in log.failures] == ["wamp.session.on_leave"]
