"""Grants carried in a token (caps) through a real crossbar node, in both deployments, on the shipped
policy: the user role may carry grants to subscribe within ``app.doc.`` (a prefix rule that says
``"grantable": ["subscribe"]``). A grant allows what it names, to the session whose token carries
it, for that session's life; Crossbar never caches an answer a grant gave."""

from __future__ import annotations

import pytest_twisted
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from tests.support.tokens import mint, unique
from tests.support.wamp import Inbox, connect, refusal, wamp_error

NOT_AUTHORIZED = "wamp.error.not_authorized"
GRANT_NOT_ALLOWED = "authenticator.error.grant_not_allowed"
REFRESH_REFUSED = "authenticator.error.refresh_refused"


def caps(*grants) -> list[dict]:
    return [{"uri": uri, "match": match, "allow": ["subscribe"]} for uri, match in grants]


def granted(name: str, *grants) -> str:
    return mint(name, ["user"], caps=caps(*grants))


def pattern(match: str) -> SubscribeOptions:
    return SubscribeOptions(match=match)


async def denied(router, session, uri: str, match: str = "exact") -> None:
    """The subscription is refused, and the authorizer said why (it was asked: nothing cached)."""
    offset = router.log_size()
    assert await wamp_error(session.subscribe(Inbox(), uri, options=pattern(match))) == NOT_AUTHORIZED, (uri, match)
    router.wait_for_log(
        f"authorization denied: subscribe {uri} authid={session.details.authid} role=user via=wamp reason=no rule "
        f"of role 'user'", after=offset,
    )  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_grants_allow_exactly_the_subscriptions_they_name(router):
    doc, folder = unique("d"), unique("f")
    alice = await connect(router.url, granted(unique("alice"), (f"app.doc.{doc}", "exact"),
                                              (f"app.doc.{folder}.", "prefix")))  # fmt: skip
    try:
        # at once after the join (behind proxies the join event may not have reached the keeper yet)
        await alice.subscribe(Inbox(), f"app.doc.{doc}")
        await alice.subscribe(Inbox(), f"app.doc.{folder}.", options=pattern("prefix"))
        await alice.subscribe(Inbox(), f"app.doc.{folder}.pages.", options=pattern("prefix"))
        await alice.subscribe(Inbox(), f"app.doc.{folder}..title", options=pattern("wildcard"))
        await alice.subscribe(Inbox(), f"app.doc.{folder}.readme")
        for uri, match in [
            (f"app.doc.{doc}", "prefix"),  # granted exactly: a prefix reaches app.doc.<doc>x and app.doc.<doc>.y
            (f"app.doc.{doc}", "wildcard"),
            ("app.doc.", "prefix"),  # every document
            ("app.doc..title", "wildcard"),
            (f"app.doc.{folder}", "exact"),  # the folder's prefix is "app.doc.<folder>.", not the folder
            (f"app.doc.{folder}", "prefix"),  # app.doc.<folder>x: other documents
            (f"app.doc.{doc}x", "exact"),
        ]:
            await denied(router, alice, uri, match)
        # subscribe was granted, publish was not (and the policy lets no token grant it)
        assert (
            await wamp_error(alice.publish(f"app.doc.{doc}", "x", options=PublishOptions(acknowledge=True)))
            == NOT_AUTHORIZED
        )
    finally:
        alice.leave()


@pytest_twisted.ensureDeferred
async def test_a_token_granting_outside_the_grantable_space_is_refused_at_login_naming_the_grant(router):
    name = unique("mallory")
    offset = router.log_size()
    for grants, why in [
        (caps(("app.chat.secret", "exact")), "is outside what the policy lets a token grant"),
        (caps(("app.", "prefix")), "is outside what the policy lets a token grant"),
        ([{"uri": "app.doc.1", "match": "exact", "allow": ["publish"]}], "asks for an action the policy does not"),
        ([{"uri": "wamp.session.", "match": "prefix", "allow": ["call"]}], "reaches wamp.* or authenticator.*"),
    ]:
        refused = await refusal(router.url, mint(name, ["user"], caps=grants))
        assert refused.reason == GRANT_NOT_ALLOWED, refused.message
        assert f"grant #1 ({grants[0]['match']} '{grants[0]['uri']}'" in refused.message and why in refused.message
    router.wait_for_log("authentication refused: reason=grant_not_allowed detail=grant #1 (exact 'app.chat.secret': "
                        "subscribe) is outside", after=offset)  # fmt: skip
    # an anonymous visitor's role has no grantable rule: a claim in its HELLO is no token at all
    visitor = await connect(router.url, authextra={"caps": caps(("app.doc.1", "exact"))})
    try:
        assert await wamp_error(visitor.subscribe(Inbox(), "app.doc.1")) == NOT_AUTHORIZED
    finally:
        visitor.leave()


@pytest_twisted.ensureDeferred
async def test_a_topic_granted_to_alice_is_not_available_to_bob_when_alice_subscribes_first(router):
    topic = f"app.doc.{unique('shared')}"
    alice = await connect(router.url, granted(unique("alice"), (topic, "exact")))
    bob = await connect(router.url, mint(unique("bob"), ["user"]))
    try:
        await alice.subscribe(Inbox(), topic)
        await denied(router, bob, topic)  # Crossbar asked again: alice's answer was not cached for the role
    finally:
        alice.leave()
        bob.leave()


@pytest_twisted.ensureDeferred
async def test_a_topic_granted_to_alice_is_not_available_to_bob_when_bob_asks_first(router):
    topic = f"app.doc.{unique('shared')}"
    bob = await connect(router.url, mint(unique("bob"), ["user"]))
    alice = await connect(router.url, granted(unique("alice"), (topic, "exact")))
    try:
        await denied(router, bob, topic)
        await alice.subscribe(Inbox(), topic)  # a cached denial would fail here
        await denied(router, bob, topic)
    finally:
        alice.leave()
        bob.leave()


@pytest_twisted.ensureDeferred
async def test_a_grant_ends_with_its_session(router):
    name, topic = unique("alice"), f"app.doc.{unique('d')}"
    first = await connect(router.url, granted(name, (topic, "exact")))
    await first.subscribe(Inbox(), topic)
    first.leave()
    again = await connect(router.url, mint(name, ["user"]))  # the same user, a token without the grant
    try:
        await denied(router, again, topic)
    finally:
        again.leave()


@pytest_twisted.ensureDeferred
async def test_a_refresh_cannot_widen_or_narrow_a_sessions_grants(router):
    name, topic, other = unique("alice"), f"app.doc.{unique('d')}", f"app.doc.{unique('d')}"
    session = await connect(router.url, granted(name, (topic, "exact")))
    try:
        for fresh in (granted(name, (topic, "exact"), (other, "exact")), mint(name, ["user"])):
            try:
                await session.call("authenticator.refresh", fresh)
            except Exception as error:  # noqa: BLE001 - the error is the assertion
                assert (
                    error.error == REFRESH_REFUSED
                    and "its grants (caps) differ from the session's; reconnect" in (error.args[0])
                )
            else:
                raise AssertionError("a refresh with other grants was accepted")
        await denied(router, session, other)  # not widened
        await session.subscribe(Inbox(), topic)  # still what its login granted
        answer = await session.call("authenticator.refresh", granted(name, (topic, "exact")))  # the same grants
        assert answer["exp"] > 0
    finally:
        session.leave()


@pytest_twisted.ensureDeferred
async def test_the_history_procedure_reads_with_the_callers_grants(router):
    """authenticator.history decides as a subscription would, grants included: alice's grant lets
    her past the authorization (app.doc. keeps no history in the shipped policy: no_history), bob is
    refused not_authorized."""
    topic = f"app.doc.{unique('d')}"
    alice = await connect(router.url, granted(unique("alice"), (topic, "exact")))
    bob = await connect(router.url, mint(unique("bob"), ["user"]))
    try:
        assert await wamp_error(alice.call("authenticator.history", topic)) == "authenticator.error.no_history"
        assert await wamp_error(bob.call("authenticator.history", topic)) == NOT_AUTHORIZED
    finally:
        alice.leave()
        bob.leave()
