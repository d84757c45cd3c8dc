"""server/presence fed Crossbar's meta events in the orders a real router produces, some of which a
test through the router cannot force: a GOODBYE's on_leave is published at once, the broker's
subscription events of the same moment on a later reactor turn."""

from __future__ import annotations

import pytest

from authenticator.config.node_config import component_extra
from authenticator.config.settings import load_settings
from authenticator.server.presence import Presence
from tests.support.router import REPO
from tests.support.tokens import TEST_SECRET

TOPIC = "app.chat.lobby"


class _Log:
    def info(self, *args, **kwargs) -> None: ...

    def warn(self, *args, **kwargs) -> None: ...


@pytest.fixture
def presence(monkeypatch):
    monkeypatch.setenv("JWT_SECRET", TEST_SECRET)
    settings = load_settings(component_extra(REPO / ".crossbar" / "config.json"), REPO / ".crossbar",
                             generate_secret=None)  # fmt: skip
    published = []
    tracker = Presence(settings, authorizer=None, token_roles=None,
                       publish=lambda topic, **kwargs: published.append((topic, kwargs)), io_pool=None,
                       log=_Log())  # fmt: skip
    tracker.published = published
    return tracker


def join(presence, session, authid, authrole="user"):
    presence.joined({"session": session, "authid": authid, "authrole": authrole})


def test_a_subscription_announced_after_its_sessions_leave_is_never_counted(presence):
    join(presence, 1, "bob")
    presence.left(1)  # the GOODBYE's on_leave, published at once ...
    presence.created(1, {"id": 10, "uri": TOPIC, "match": "exact"})  # ... the broker's events a turn later
    presence.subscribed(1, 10)
    presence.unsubscribed(1, 10)
    presence.deleted(1, 10)
    assert presence.table.answer(TOPIC)["sessions"] == 0 and presence.published == []
    assert len(presence.table) == 0


def test_a_session_that_leaves_before_its_unsubscribe_arrives_leaves_once(presence):
    join(presence, 1, "bob")
    presence.created(1, {"id": 10, "uri": TOPIC, "match": "exact"})
    presence.subscribed(1, 10)
    presence.left(1)
    presence.unsubscribed(1, 10)  # the detach's event, a turn after on_leave
    presence.deleted(1, 10)
    events = [(topic, kwargs["event"], kwargs["authid"]) for topic, kwargs in presence.published]
    assert events == [
        ("authenticator.presence." + TOPIC, "join", "bob"),
        ("authenticator.presence." + TOPIC, "leave", "bob"),
    ]


def test_patterns_untracked_topics_and_static_roles_are_nobodys_presence(presence):
    join(presence, 1, "bob")
    join(presence, 2, "node2", authrole="rlink")  # a router link's session
    presence.created(1, {"id": 10, "uri": "app.chat.", "match": "prefix"})
    presence.subscribed(1, 10)
    presence.created(1, {"id": 11, "uri": "app.public.news", "match": "exact"})  # no rule grants presence
    presence.subscribed(1, 11)
    presence.created(2, {"id": 12, "uri": TOPIC, "match": "exact"})
    presence.subscribed(2, 12)
    presence.created(1, {"id": 13, "uri": "authenticator.presence." + TOPIC, "match": "exact"})
    presence.subscribed(1, 13)
    assert len(presence.table) == 0 and presence.published == []
