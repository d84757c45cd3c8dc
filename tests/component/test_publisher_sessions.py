"""The embedded publisher sessions of HTTP publishing, on a real in-process Crossbar router (its
router, broker and embedded sessions; no network): what the decision hook lets through, and the
pool's reuse and bounds."""

from __future__ import annotations

import pytest
import pytest_twisted
from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import ComponentConfig, PublishOptions, SubscribeOptions
from crossbar.router.role import RouterRoleStaticAuth
from crossbar.router.router import RouterFactory
from crossbar.router.session import RouterApplicationSession
from crossbar.worker.types import RouterRealm

from authenticator.endpoints.publisher_pool import PublisherPool
from tests.support.wamp import Inbox, eventually

ALLOW = {"allow": True, "cache": False, "disclose": True}
TOPIC = "app.user.bob.notifications"


def static_role(router, name, allow):
    router.add_role(RouterRoleStaticAuth(router, name, default_permissions={
        "uri": "", "match": "prefix", "allow": allow, "disclose": {"caller": False, "publisher": False},
        "cache": False,
    }))  # fmt: skip


@pytest.fixture
def router():
    factory = RouterFactory("node1", "router1", None)
    factory.start_realm(RouterRealm(None, None, {"name": "realm1"}))
    router = factory.get("realm1")
    # The backend role allows nothing by itself: whatever a publisher session publishes was let
    # through by the decision hook, or not at all.
    static_role(router, "backend", {"call": False, "register": False, "publish": False, "subscribe": False})
    static_role(router, "reader", {"call": False, "register": False, "publish": False, "subscribe": True})
    return router


async def subscriber(router) -> Inbox:
    session = ApplicationSession(ComponentConfig(realm="realm1"))
    RouterApplicationSession(session, router, authid="bob", authrole="reader")
    inbox = Inbox()
    await session.subscribe(inbox, "app.", options=SubscribeOptions(match="prefix", details_arg="details"))
    return inbox


@pytest_twisted.ensureDeferred
async def test_a_decided_publish_reaches_subscribers_as_from_that_identity(router):
    inbox = await subscriber(router)
    session = PublisherPool(router, "realm1").session("billing", "backend")
    publication = await session.publish_decided(TOPIC, ["ready"], {"n": 1}, {}, ALLOW)
    assert isinstance(publication, int)
    args, kwargs = await inbox.next()
    details = kwargs.pop("details")
    assert (args, kwargs) == (("ready",), {"n": 1})
    assert (details.publisher_authid, details.publisher_authrole, details.forward_for) == ("billing", "backend", None)


@pytest_twisted.ensureDeferred
async def test_a_decision_is_for_its_topic_only_and_is_used_once(router):
    inbox = await subscriber(router)
    session = PublisherPool(router, "realm1").session("billing", "backend")
    # a decision set for another topic does not allow this one
    session.decision = ("app.other", ALLOW)
    with pytest.raises(ApplicationError) as denied:
        await session.publish(TOPIC, "undecided", options=PublishOptions(acknowledge=True))
    assert denied.value.error == "wamp.error.not_authorized"
    await session.publish_decided(TOPIC, ["decided"], {}, {}, ALLOW)
    assert session.decision is None  # never left for a later message
    with pytest.raises(ApplicationError) as denied:
        await session.publish(TOPIC, "after", options=PublishOptions(acknowledge=True))
    assert denied.value.error == "wamp.error.not_authorized"
    await session.publish_decided(TOPIC, ["marker"], {}, {}, ALLOW)
    assert [(await inbox.next())[0] for _ in range(2)] == [("decided",), ("marker",)]
    assert inbox.events == []


@pytest_twisted.ensureDeferred
async def test_a_denial_from_the_decision_is_the_brokers_not_authorized(router):
    session = PublisherPool(router, "realm1").session("billing", "backend")
    with pytest.raises(ApplicationError) as denied:
        await session.publish_decided(TOPIC, [], {}, {}, {"allow": False, "cache": False, "disclose": False})
    assert denied.value.error == "wamp.error.not_authorized"


@pytest_twisted.ensureDeferred
async def test_the_pool_reuses_a_session_per_identity_and_closes_the_least_recently_used(router):
    pool = PublisherPool(router, "realm1", size=2, idle_seconds=60)
    first = pool.session("a", "backend")
    assert pool.session("a", "backend") is first
    second = pool.session("b", "backend")
    pool.session("a", "backend")  # a is the most recently used now
    pool.session("c", "backend")
    assert len(pool) == 2
    assert second.gone and not first.gone
    await eventually(lambda: not router.is_attached(second), 5, "the router to detach the closed session")
    assert router.is_attached(first)


@pytest_twisted.ensureDeferred
async def test_idle_sessions_are_closed_and_replaced_when_needed_again(router):
    pool = PublisherPool(router, "realm1", size=10, idle_seconds=60)
    session = pool.session("a", "backend")
    assert pool.close_idle(now=session.last_used + 59) == 0
    assert pool.close_idle(now=session.last_used + 60) == 1
    assert session.gone and len(pool) == 0
    await eventually(lambda: not router.is_attached(session), 5, "the router to detach the idle session")
    again = pool.session("a", "backend")
    assert again is not session and router.is_attached(again)


@pytest_twisted.ensureDeferred
async def test_a_session_the_router_ended_is_replaced(router):
    pool = PublisherPool(router, "realm1")
    session = pool.session("a", "backend")
    session.leave("wamp.close.killed", "ended elsewhere")  # as when the router kills it
    await eventually(lambda: not router.is_attached(session), 5, "the router to detach it")
    assert session.gone
    assert pool.session("a", "backend") is not session


@pytest_twisted.ensureDeferred
async def test_held_is_what_crossbars_session_count_counts_of_these_sessions(router):
    """The live-session gauge is Crossbar's count less `held` (issue 20, finding 10): it must match
    Crossbar's count of these sessions at every moment, also while one let go is not detached yet."""

    def crossbar_count(role: str) -> int:  # how wamp.session.count counts (crossbar/router/service.py)
        return sum(1 for s in router._session_id_to_session.values() if s._session_details.authrole == role)

    pool = PublisherPool(router, "realm1", size=2, idle_seconds=60)
    first = pool.session("a", "backend")
    pool.session("b", "backend")
    pool.session("c", "reader")  # evicts a: closed, detached by the router a reactor turn later
    assert first.gone and router.is_attached(first)
    assert (
        (pool.held("backend"), pool.held("reader")) == (crossbar_count("backend"), crossbar_count("reader")) == (2, 1)
    )
    await eventually(lambda: not router.is_attached(first), 5, "the router to detach the closed session")
    assert (
        (pool.held("backend"), pool.held("reader")) == (crossbar_count("backend"), crossbar_count("reader")) == (1, 1)
    )
    pool.close()
    await eventually(lambda: crossbar_count("backend") + crossbar_count("reader") == 0, 5, "every session detached")
    assert pool.held("backend") == pool.held("reader") == 0
