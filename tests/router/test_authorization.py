"""Authorization through a real crossbar node: per-role rules, per-user topics, the role cache."""

import pytest
import pytest_twisted
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from tests.support.router import RouterProcess
from tests.support.tokens import TEST_SECRET, mint, unique
from tests.support.wamp import Inbox, connect, wamp_error

NOT_AUTHORIZED = "wamp.error.not_authorized"
ACK = PublishOptions(acknowledge=True)


async def user(router, name, roles=("user",)):
    return await connect(router.url, mint(name, list(roles)))


@pytest_twisted.ensureDeferred
async def test_alice_receives_her_notification_and_bob_cannot_subscribe_to_it(router):
    alice_id, bob_id = unique("alice"), unique("bob")
    alice, bob, admin = await user(router, alice_id), await user(router, bob_id), await user(router, "root", ["admin"])
    topic = f"app.user.{alice_id}.notifications"
    try:
        inbox = Inbox()
        await alice.subscribe(inbox, topic)
        assert await wamp_error(bob.subscribe(Inbox(), topic)) == NOT_AUTHORIZED
        await admin.publish(topic, "hello alice", options=ACK)
        args, _ = await inbox.next()
        assert args == ("hello alice",)
    finally:
        for client in (alice, bob, admin):
            client.leave()


@pytest_twisted.ensureDeferred
async def test_per_user_answers_are_never_cached_owner_first(router):
    owner, other = await user(router, unique("alice")), await user(router, unique("bob"))
    topic = f"app.user.{owner.details.authid}.notifications"
    try:
        await owner.subscribe(Inbox(), topic)
        offset = router.log_size()
        assert await wamp_error(other.subscribe(Inbox(), topic)) == NOT_AUTHORIZED
        # the authorizer was asked again: Crossbar did not reuse the owner's answer for the role
        router.wait_for_log(f"authorization denied: subscribe {topic} authid={other.details.authid}", after=offset)
    finally:
        owner.leave()
        other.leave()


@pytest_twisted.ensureDeferred
async def test_per_user_answers_are_never_cached_intruder_first(router):
    owner, other = await user(router, unique("carol")), await user(router, unique("dave"))
    topic = f"app.user.{owner.details.authid}.notifications"
    try:
        assert await wamp_error(other.subscribe(Inbox(), topic)) == NOT_AUTHORIZED
        await owner.subscribe(Inbox(), topic)  # a cached denial would fail here
        assert await wamp_error(other.subscribe(Inbox(), topic)) == NOT_AUTHORIZED
    finally:
        owner.leave()
        other.leave()


@pytest_twisted.ensureDeferred
async def test_pattern_subscriptions_that_reach_other_users_topics_are_denied(router):
    name = unique("alice")
    alice = await user(router, name)
    try:
        for uri, match in [
            ("app.user.", "prefix"),
            ("app.user.al", "prefix"),
            (f"app.user.{name}.", "prefix"),
            ("app.user..notifications", "wildcard"),
            ("app.", "prefix"),
        ]:
            error = await wamp_error(alice.subscribe(Inbox(), uri, options=SubscribeOptions(match=match)))
            assert error == NOT_AUTHORIZED, (uri, match)
        await alice.subscribe(Inbox(), "app.chat.", options=SubscribeOptions(match="prefix"))
        await alice.subscribe(Inbox(), "app.chat..typing", options=SubscribeOptions(match="wildcard"))
    finally:
        alice.leave()


@pytest_twisted.ensureDeferred
async def test_anonymous_visitors_read_the_public_feed_and_cannot_publish_or_chat(router):
    visitor = await connect(router.url)
    admin = await user(router, "root", ["admin"])
    try:
        assert visitor.details.authrole == "anonymous"
        inbox = Inbox()
        await visitor.subscribe(inbox, "app.public.", options=SubscribeOptions(match="prefix"))
        await admin.publish("app.public.news", "extra!", options=ACK)
        args, _ = await inbox.next()
        assert args == ("extra!",)
        assert await wamp_error(visitor.publish("app.public.news", "spam", options=ACK)) == NOT_AUTHORIZED
        assert await wamp_error(visitor.subscribe(Inbox(), "app.chat.lobby")) == NOT_AUTHORIZED
    finally:
        visitor.leave()
        admin.leave()


@pytest.fixture(scope="module")
def static_anonymous_node(tmp_path_factory):
    """The shipped config with Crossbar's own *static* anonymous authentication instead of the
    dynamic one. Crossbar then hands the authextra a client sends in its HELLO on to the session
    (CROSSBAR-NOTES.md), so the authorizer is asked about a session whose authextra claims roles."""

    def configure(config):
        config["workers"][0]["transports"][0]["paths"]["ws"]["auth"]["anonymous"] = {
            "type": "static", "role": "anonymous"}  # fmt: skip

    node = RouterProcess(tmp_path_factory.mktemp("static-anonymous"), env={"JWT_SECRET": TEST_SECRET},
                         edit_config=configure)  # fmt: skip
    yield node.start()
    node.stop()


@pytest_twisted.ensureDeferred
async def test_an_anonymous_visitor_cannot_claim_roles_in_its_hello(router):
    """With the shipped dynamic anonymous authentication the client's HELLO authextra never reaches
    the session: the authenticator always returns its own (the WELCOME shows it). The authorizer's
    side of the same guarantee is tested below, where Crossbar does pass the claim on."""
    visitor = await connect(router.url, authextra={"roles": ["admin"]})
    try:
        assert visitor.details.authextra["roles"] == ["anonymous"]
        assert await wamp_error(visitor.subscribe(Inbox(), "app.secret.plans")) == NOT_AUTHORIZED
    finally:
        visitor.leave()


@pytest_twisted.ensureDeferred
async def test_roles_a_static_anonymous_session_claims_in_its_authextra_grant_nothing(static_anonymous_node):
    """The authorizer takes a session's extra roles from the tokens it admitted, never from the
    session's authextra: here that authextra is the client's own claim of admin."""
    node = static_anonymous_node
    visitor = await connect(node.url, authextra={"roles": ["admin"]})
    try:
        assert (visitor.details.authrole, visitor.details.authextra.get("roles")) == ("anonymous", ["admin"])
        offset = node.log_size()
        assert await wamp_error(visitor.subscribe(Inbox(), "app.secret.plans")) == NOT_AUTHORIZED
        node.wait_for_log("authorization denied: subscribe app.secret.plans authid=", after=offset)
        await visitor.subscribe(Inbox(), "app.public.news")  # what the anonymous role allows still works
    finally:
        visitor.leave()


@pytest_twisted.ensureDeferred
async def test_chat_subscribers_see_who_published(router):
    alice_id, bob_id = unique("alice"), unique("bob")
    alice, bob = await user(router, alice_id), await user(router, bob_id)
    try:
        inbox = Inbox()
        await bob.subscribe(inbox, "app.chat.lobby", options=SubscribeOptions(details=True))
        await alice.publish("app.chat.lobby", "hi bob", options=ACK)
        args, kwargs = await inbox.next()
        assert args == ("hi bob",)
        assert kwargs["details"].publisher_authid == alice_id
    finally:
        alice.leave()
        bob.leave()


@pytest_twisted.ensureDeferred
async def test_users_cannot_call_admin_procedures(router):
    alice = await user(router, unique("alice"))
    try:
        error = await wamp_error(alice.call("authenticator.revoke", authid="bob"))
        assert error == NOT_AUTHORIZED
    finally:
        alice.leave()
