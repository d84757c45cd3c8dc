"""A custom policy through the real router, in both deployments:

- a token with several unrelated roles: the session's Crossbar role is one of them, its permissions
  are the union (behind proxies Crossbar marks every session anonymous-proxy, so the roles must
  come from what the authenticator verified, not from the session);
- a role-wide *exact* rule: Crossbar's cache ignores the match type, so its ALLOW must not be
  cached, or a later prefix request on the same URI would get it (in both orders);
- a callee that may register cannot answer as someone else (forward_for in its YIELD);
- grants (caps) that give publish: a publication decision a session kept from its grant is never
  another session's, and POST /publish decides with the grants of the backend's token."""

from __future__ import annotations

import pytest
import pytest_twisted
from autobahn.wamp.types import CallOptions, PublishOptions, RegisterOptions, SubscribeOptions

from tests.conftest import DEPLOYMENTS
from tests.support.router import RouterProcess
from tests.support.tokens import TEST_SECRET, mint, unique
from tests.support.wamp import Inbox, connect, wamp_error

NOT_AUTHORIZED = "wamp.error.not_authorized"
EXTRA_ROLES = [
    {"name": "editor", "rules": [{"uri": "app.docs.", "match": "prefix", "allow": {"subscribe": True}}]},
    {"name": "billing", "rules": [{"uri": "app.invoices.", "match": "prefix", "allow": {"subscribe": True}}]},
]


EXACT_RULE = {"uri": "app.news", "match": "exact", "allow": {"subscribe": True, "register": True}}
# Each user may offer procedures under its own name, and every user may call them.
SERVICE_RULE = {"uri": "app.svc.{authid}.", "match": "prefix", "allow": {"register": True}}
CALL_RULE = {"uri": "app.svc.", "match": "prefix", "allow": {"call": True}, "disclose": {"caller": True}}
# Each user's status topic keeps its last event (retain).
STATUS_RULE = {"uri": "app.status.{authid}", "match": "exact", "allow": {"publish": True, "subscribe": True},
               "retain": True}  # fmt: skip
# Tokens of users may grant subscribe and publish on boards, tokens of the backend publish.
BOARD_RULE = {"uri": "app.board.", "match": "prefix", "grantable": ["subscribe", "publish"]}
BACKEND_BOARD_RULE = {"uri": "app.board.", "match": "prefix", "grantable": ["publish"]}


def custom_policy(config: dict) -> None:
    router = config["workers"][0]
    router["realms"][0]["roles"] += [{"name": r["name"], "authorizer": "authenticator.authorize"} for r in EXTRA_ROLES]
    policy = router["components"][0]["extra"]["policy"]
    policy["roles"] += EXTRA_ROLES
    user = next(role for role in policy["roles"] if role["name"] == "user")
    user["rules"] += [EXACT_RULE, SERVICE_RULE, CALL_RULE, STATUS_RULE, BOARD_RULE]
    next(role for role in policy["roles"] if role["name"] == "backend")["rules"].append(BACKEND_BOARD_RULE)


@pytest.fixture(scope="module", params=list(DEPLOYMENTS))
def node(request, tmp_path_factory):
    node = RouterProcess(
        tmp_path_factory.mktemp(f"roles-{request.param}"), env={"JWT_SECRET": TEST_SECRET},
        edit_config=custom_policy, proxies=DEPLOYMENTS[request.param],
    ).start()  # fmt: skip
    yield node
    assert node.stop() == 0, node.log()[-3000:]


@pytest_twisted.ensureDeferred
async def test_a_session_has_the_union_of_its_tokens_roles(node):
    both = await connect(node.url, mint(unique("erin"), ["editor", "billing"]))
    try:
        assert both.details.authrole == "billing"  # defined later: it wins
        await both.subscribe(print, "app.invoices.2026")
        await both.subscribe(print, "app.docs.handbook")  # through the token's other role
    finally:
        both.leave()


@pytest_twisted.ensureDeferred
async def test_a_session_of_the_same_role_without_the_other_role_is_refused(node):
    # the same Crossbar role as above, and asked after it: the extra role's answer was not cached
    billing = await connect(node.url, mint(unique("frank"), ["billing"]))
    try:
        assert billing.details.authrole == "billing"
        assert await wamp_error(billing.subscribe(print, "app.docs.handbook")) == "wamp.error.not_authorized"
    finally:
        billing.leave()


@pytest_twisted.ensureDeferred
async def test_roles_claimed_in_a_hello_count_for_nothing(node):
    visitor = await connect(node.url, authmethods=["anonymous"], authextra={"roles": ["editor"], "login": "login-x"})
    try:
        assert await wamp_error(visitor.subscribe(print, "app.docs.handbook")) == "wamp.error.not_authorized"
    finally:
        visitor.leave()


# -- an exact rule's answer is not reused for other match types ---------------------------------


async def outcome(request) -> str:
    try:
        await request
    except Exception as error:  # noqa: BLE001 - the WAMP error URI is the outcome
        return getattr(error, "error", type(error).__name__)
    return "allowed"


@pytest.mark.parametrize("action", ["subscribe", "register"])
@pytest.mark.parametrize("exact_first", [True, False], ids=["exact-first", "prefix-first"])
@pytest_twisted.ensureDeferred
async def test_an_exact_rule_never_allows_a_prefix_request_on_its_uri(node, action, exact_first):
    # Crossbar's cache outlives a case: were an ALLOW cached, every later case would see it too.
    first = await connect(node.url, mint(unique("ann"), ["user"]))
    second = await connect(node.url, mint(unique("ben"), ["user"]))
    try:

        def ask(client, match):
            options = (SubscribeOptions if action == "subscribe" else RegisterOptions)(match=match)
            return getattr(client, action)(print, EXACT_RULE["uri"], options=options)

        order = [(first, "exact"), (second, "prefix")] if exact_first else [(second, "prefix"), (first, "exact")]
        results = {match: await outcome(ask(client, match)) for client, match in order}
        results["prefix again"] = await outcome(ask(second, "prefix"))
    finally:
        first.leave()
        second.leave()
    assert results == {"exact": "allowed", "prefix": NOT_AUTHORIZED, "prefix again": NOT_AUTHORIZED}


@pytest_twisted.ensureDeferred
async def test_a_callee_cannot_answer_as_another_user(node):
    """Crossbar takes the callee it discloses to the caller from the YIELD's forward_for
    (router/dealer.py), and a YIELD is never authorized: the router drops a client's forward_for."""
    from autobahn.wamp import message

    name = unique("svc")
    callee = await connect(node.url, mint(name, ["user"]))
    caller = await connect(node.url, mint(unique("caller"), ["user"]))
    try:
        await callee.register(lambda: "pong", f"app.svc.{name}.ping")
        send = callee._transport.send

        def forging_send(msg):
            if isinstance(msg, message.Yield):
                msg.forward_for = [{"session": 1, "authid": "root", "authrole": "admin"}]
            send(msg)

        callee._transport.send = forging_send
        result = await caller.call(f"app.svc.{name}.ping", options=CallOptions(details=True))
        assert list(result.results) == ["pong"]
        assert (result.callee_authid, result.callee_authrole) == (name, "user")
    finally:
        callee.leave()
        caller.leave()


@pytest_twisted.ensureDeferred
async def test_a_caller_cannot_call_as_another_user_even_after_an_honest_call(node):
    """The authorizer refuses a CALL carrying forward_for (Crossbar would present its first entry
    to the callee as the caller); call answers are never cached, so an honest call first changes
    nothing."""
    name = unique("svc")
    callee = await connect(node.url, mint(name, ["user"]))
    caller = await connect(node.url, mint(unique("caller"), ["user"]))
    try:
        seen = []
        await callee.register(lambda details: seen.append(details.caller_authid) or "pong", f"app.svc.{name}.who",
                              options=RegisterOptions(details_arg="details"))  # fmt: skip
        assert await caller.call(f"app.svc.{name}.who") == "pong"
        forged = [{"session": 1, "authid": "root", "authrole": "admin"}]
        error = await wamp_error(caller.call(f"app.svc.{name}.who", options=CallOptions(forward_for=forged)))
        assert error == NOT_AUTHORIZED
        assert await caller.call(f"app.svc.{name}.who") == "pong"  # a marker, after the refused call
        assert seen == [caller.details.authid] * 2
    finally:
        callee.leave()
        caller.leave()


@pytest_twisted.ensureDeferred
async def test_retain_is_allowed_where_a_rule_says_so_but_never_with_eligible_or_exclude(node):
    name = unique("status")
    client = await connect(node.url, mint(name, ["user"]))
    try:
        topic = f"app.status.{name}"
        await client.publish(topic, "online", options=PublishOptions(acknowledge=True, retain=True))
        for narrowed in ({"eligible": [client._session_id]}, {"exclude": [1]}):
            options = PublishOptions(acknowledge=True, retain=True, **narrowed)
            assert await wamp_error(client.publish(topic, "pinned", options=options)) == NOT_AUTHORIZED
        inbox = Inbox()
        await client.subscribe(inbox, topic, options=SubscribeOptions(get_retained=True))
        assert (await inbox.next())[0] == ("online",)  # the retained event is the allowed one
        error = await wamp_error(
            client.publish("app.chat.lobby", "x", options=PublishOptions(acknowledge=True, retain=True))
        )
        assert error == NOT_AUTHORIZED  # no rule of app.chat says retain
    finally:
        client.leave()


# -- a session's publish decisions (authenticator/patches/publish_decisions.py) -------------------


@pytest_twisted.ensureDeferred
async def test_a_decision_reused_for_one_users_publications_is_never_given_to_another(node):
    """alice's repeated publications to her own topic reuse her decision; bob, of the same role,
    publishing to alice's topic is asked about and refused, after alice's and before his own."""
    alice_id, bob_id = unique("alice"), unique("bob")
    alice, bob = await connect(node.url, mint(alice_id, ["user"])), await connect(node.url, mint(bob_id, ["user"]))
    alices_phone = await connect(node.url, mint(alice_id, ["user"]))
    try:
        topic = f"app.status.{alice_id}"
        inbox = Inbox()
        await alices_phone.subscribe(inbox, topic)
        for n in range(3):
            await alice.publish(topic, n, options=PublishOptions(acknowledge=True))
        offset = node.log_size()
        assert await wamp_error(bob.publish(topic, "as alice", options=PublishOptions(acknowledge=True))) == (
            NOT_AUTHORIZED
        )
        node.wait_for_log(f"authorization denied: publish {topic} authid={bob_id} role=user via=wamp reason=no rule "
                          f"of role 'user' allows publish on exact '{topic}'", after=offset)  # fmt: skip
        await bob.publish(f"app.status.{bob_id}", "his own", options=PublishOptions(acknowledge=True))
        await alice.publish(topic, "marker", options=PublishOptions(acknowledge=True))
        # what alice's topic carried: her 0, 1, 2 and the marker; bob's publication would be among them
        assert [(await inbox.next())[0][0] for _ in range(4)] == [0, 1, 2, "marker"]
    finally:
        for client in (alice, bob, alices_phone):
            client.leave()


def _publish_decisions(node) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{node.port}/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    return sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
               if line.startswith("crossbar_jwt_authorizations_total{") and 'action="publish"' in line)  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_a_session_asks_once_per_topic_and_keeps_at_most_32_topics(node):
    """What the reuse saves and what it bounds: the authorizer decides a session's first publication
    to a topic; 32 topics are kept per session, a 33rd is asked about every time."""
    from twisted.internet import threads

    name = unique("status")
    client = await connect(node.url, mint(name, ["user"]))
    try:
        before = await threads.deferToThread(_publish_decisions, node)
        for _ in range(5):
            await client.publish(f"app.status.{name}", "same topic", options=PublishOptions(acknowledge=True))
        after_one_topic = await threads.deferToThread(_publish_decisions, node)
        assert after_one_topic - before == 1
        for room in range(33):  # 31 more topics fill the session's 32; the 33rd is never kept
            for _ in range(2):
                await client.publish(f"app.chat.{name}.{room}", "x", options=PublishOptions(acknowledge=True))
        after = await threads.deferToThread(_publish_decisions, node)
        assert after - after_one_topic == 31 + 2 * 2  # 31 kept topics once each, the last 2 twice each
    finally:
        client.leave()


# -- grants that give publish (caps) ---------------------------------------------------------------


def board_grant(topic: str, *actions: str) -> list[dict]:
    return [{"uri": topic, "match": "exact", "allow": list(actions)}]


@pytest_twisted.ensureDeferred
async def test_a_publish_decision_kept_from_a_grant_is_never_another_sessions(node):
    """alice's session reuses the ALLOW its grant gave (patch session-publish-decisions); bob of the
    same role and alice's next session without the grant are each asked about and refused."""
    alice_id, bob_id, topic = unique("alice"), unique("bob"), f"app.board.{unique('b')}"
    ack = PublishOptions(acknowledge=True)
    alice = await connect(node.url, mint(alice_id, ["user"], caps=board_grant(topic, "publish", "subscribe")))
    bob = await connect(node.url, mint(bob_id, ["user"]))
    reader = await connect(node.url, mint(unique("reader"), ["user"], caps=board_grant(topic, "subscribe")))
    try:
        inbox = Inbox()
        await reader.subscribe(inbox, topic)
        for n in range(3):
            await alice.publish(topic, n, options=ack)
        for intruder, authid in ((bob, bob_id), (await connect(node.url, mint(alice_id, ["user"])), alice_id)):
            offset = node.log_size()
            assert await wamp_error(intruder.publish(topic, "intruder", options=ack)) == NOT_AUTHORIZED
            node.wait_for_log(f"authorization denied: publish {topic} authid={authid} role=user via=wamp reason=no "
                              f"rule of role 'user' allows publish on exact '{topic}'", after=offset)  # fmt: skip
            if intruder is not bob:
                intruder.leave()
        await alice.publish(topic, "marker", options=ack)
        assert [(await inbox.next())[0][0] for _ in range(4)] == [0, 1, 2, "marker"]
    finally:
        for client in (alice, bob, reader):
            client.leave()


@pytest_twisted.ensureDeferred
async def test_post_publish_decides_with_the_grants_of_the_backends_token(node):
    from tests.router.test_http_publish import post

    topic, other = f"app.board.{unique('b')}", f"app.board.{unique('b')}"
    reader = await connect(node.url, mint(unique("reader"), ["user"], caps=board_grant(topic, "subscribe")))
    try:
        inbox = Inbox()
        await reader.subscribe(inbox, topic)
        token = mint(unique("billing"), ["backend"], caps=board_grant(topic, "publish"))
        status, _, answer = await post(node, {"topic": topic, "args": ["granted"]}, token)
        assert status == 200 and "id" in answer, answer
        assert (await inbox.next())[0] == ("granted",)
        status, _, answer = await post(node, {"topic": other, "args": ["not granted"]}, token)
        assert status == 403 and answer["error"] == NOT_AUTHORIZED, answer
        assert (
            f"no rule of role 'backend' or grant of the session allows publish on exact '{other}'"
            in (answer["message"])
        )
        # without the grant the backend role may not publish there at all
        status, _, answer = await post(node, {"topic": topic, "args": ["x"]}, mint(unique("billing"), ["backend"]))
        assert status == 403 and answer["error"] == NOT_AUTHORIZED, answer
        # a grant the backend role may not carry refuses the token, as at a WebSocket login
        wider = mint(unique("billing"), ["backend"], caps=board_grant(topic, "subscribe"))
        status, _, answer = await post(node, {"topic": topic, "args": ["x"]}, wider)
        assert status == 401 and answer["error"] == "authenticator.error.grant_not_allowed", answer
        assert "grant #1 (exact" in answer["message"]
    finally:
        reader.leave()
