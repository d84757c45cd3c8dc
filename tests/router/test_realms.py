"""Several realms (tenants) on one router, through both deployments: one WebSocket path, one
authenticator component per realm (its own keys, claim rules, policy and token store), a token
bound to its realm by `aud` (docs/configuration.md#several-realms).

Both realms share one HMAC secret (the hard case: the signature alone cannot tell the realms
apart) and one Redis database (revocations, single use, history, presence and idempotency keys:
every key, stream and channel carries the realm), and each has a JWKS of its own."""

from __future__ import annotations

import copy
import json
import time

import pytest
import pytest_twisted
import treq
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions
from twisted.internet import threads

from tests.conftest import DEPLOYMENTS
from tests.router.test_metrics import scrape, value
from tests.support.keys import JwksServer, new_private_key, public_jwk
from tests.support.redis_server import RedisServer
from tests.support.router import RouterProcess
from tests.support.tokens import TEST_SECRET, mint, unique
from tests.support.wamp import Inbox, connect, refusal, wamp_error

A, B = "tenant-a", "tenant-b"
WRONG_REALM = "authenticator.error.wrong_realm"
NOT_AUTHORIZED = "wamp.error.not_authorized"
ONLY_IN_B = "app.tenant."  # realm B's users may subscribe here; realm A's policy has no such rule


def two_realms(jwks: dict[str, JwksServer], redis_url: str):
    """The shipped config with realm1 replaced by realms A and B, each with its own component."""

    def configure(config):
        router = config["workers"][0]
        template_realm, template_component = router["realms"][0], router["components"][0]
        router["realms"], router["components"] = [], []
        for name in (A, B):
            realm = copy.deepcopy(template_realm)
            realm["name"] = name
            component = copy.deepcopy(template_component)
            component["realm"] = name
            extra = component["extra"]
            extra["keys"] = [
                {"algorithms": ["HS256"], "secret_env": "JWT_SECRET"},  # the same secret in both realms
                {"jwks_url": jwks[name].url, "algorithms": ["RS256"], "min_refetch_seconds": 0.1},
            ]
            extra["store"] = {"redis_url": redis_url}  # one database for both realms
            if name == B:
                extra.pop("issuer", None)  # the demo issuer mints for realm A
                user = next(r for r in extra["policy"]["roles"] if r["name"] == "user")
                user["rules"].append({"uri": ONLY_IN_B, "match": "prefix", "allow": {"subscribe": True}})
            router["realms"].append(realm)
            router["components"].append(component)
        publish = router["transports"][0]["paths"]["publish"]
        publish["extra"].pop("realm")  # the realm the token names

    return configure


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("realms-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=list(DEPLOYMENTS))
def tenants(request, tmp_path_factory, redis_server):
    jwks = {A: JwksServer(), B: JwksServer()}
    keys = {A: new_private_key("rsa"), B: new_private_key("rsa")}
    for name in (A, B):
        jwks[name].keys = [public_jwk(keys[name], f"{name}-1")]
    node = RouterProcess(tmp_path_factory.mktemp(f"realms-{request.param}"), env={"JWT_SECRET": TEST_SECRET},
                         edit_config=two_realms(jwks, redis_server.url),
                         proxies=DEPLOYMENTS[request.param]).start()  # fmt: skip
    node.jwks, node.keys = jwks, keys
    yield node
    assert node.stop() == 0, node.log()[-3000:]
    for server in jwks.values():
        server.close()


def token_for(realm: str, authid: str, roles=("user",), **claims) -> str:
    return mint(authid, list(roles), aud=realm, **claims)


@pytest_twisted.ensureDeferred
async def test_a_token_for_one_realm_is_refused_on_the_other_though_both_share_its_key(tenants):
    alice = unique("alice")
    offset = tenants.log_size()
    refused = await refusal(tenants.url, token_for(A, alice), realm=B)
    assert refused.reason == WRONG_REALM
    assert f"its aud names '{A}'; this is realm '{B}'" in refused.message
    tenants.wait_for_log(f"authentication refused: reason=wrong_realm detail=its aud names '{A}'; this is realm "
                         f"'{B}' authid=None", after=offset)  # fmt: skip
    # a token without aud names no realm: refused on both, saying which claim is missing
    for realm in (A, B):
        refused = await refusal(tenants.url, mint(alice, ["user"]), realm=realm)
        assert refused.reason == "authenticator.error.missing_claim"
        assert f"'aud' (the realm the token is for, here '{realm}')" in refused.message
    # a token naming both realms is for neither (it would open both, and be used once in each)
    for realm in (A, B):
        refused = await refusal(tenants.url, mint(alice, ["user"], aud=[A, B]), realm=realm)
        assert refused.reason == WRONG_REALM and "a token is for one realm" in refused.message
    session = await connect(tenants.url, token_for(A, alice), realm=A)  # and on its own realm it joins
    try:
        assert (session.details.realm, session.details.authid) == (A, alice)
    finally:
        session.leave()


@pytest_twisted.ensureDeferred
async def test_the_same_authid_in_two_realms_is_two_users_revoked_in_one_only(tenants):
    alice = unique("alice")
    in_a = await connect(tenants.url, token_for(A, alice), realm=A)
    in_b = await connect(tenants.url, token_for(B, alice), realm=B)
    root_b = await connect(tenants.url, token_for(B, unique("root"), ["admin"]), realm=B)
    try:
        root_a = await connect(tenants.url, token_for(A, unique("root"), ["admin"]), realm=A)
        try:
            assert (await root_a.call("authenticator.revoke", authid=alice))["sessions_ended"] == 1
        finally:
            root_a.leave()
        await in_a.left
        assert (await refusal(tenants.url, token_for(A, alice), realm=A)).reason == "authenticator.error.revoked"
        # realm B's alice is another user: her session lives on, she logs in again, and B's admin
        # finds exactly her one session to end
        topic = f"app.chat.{unique('room')}"
        inbox = Inbox()
        await in_b.subscribe(inbox, topic)
        await root_b.publish(topic, "still here", options=_acknowledged())
        assert (await inbox.next())[0] == ("still here",)
        again = await connect(tenants.url, token_for(B, alice), realm=B)
        again.leave()
        await again.left
        assert (await root_b.call("authenticator.revoke", authid=alice))["sessions_ended"] == 1
        await in_b.left
    finally:
        root_b.leave()


def _acknowledged() -> PublishOptions:
    return PublishOptions(acknowledge=True)


@pytest_twisted.ensureDeferred
async def test_each_realms_policy_decides_for_the_same_uri(tenants):
    topic = f"{ONLY_IN_B}{unique('news')}"
    name = unique("carol")
    in_a = await connect(tenants.url, token_for(A, name), realm=A)
    in_b = await connect(tenants.url, token_for(B, name), realm=B)
    try:
        offset = tenants.log_size()
        assert await wamp_error(in_a.subscribe(print, topic)) == NOT_AUTHORIZED
        tenants.wait_for_log(f"authorization denied: subscribe {topic} authid={name} role=user", after=offset)
        await in_b.subscribe(print, topic)  # B's rule allows it
        # and the same role of realm A is still refused after B's allow (no answer crosses realms)
        assert await wamp_error(in_a.subscribe(print, f"{topic}.again")) == NOT_AUTHORIZED
    finally:
        in_a.leave()
        in_b.leave()


@pytest_twisted.ensureDeferred
async def test_a_realms_jwks_rotation_does_not_reach_the_other_realm(tenants):
    rotated = new_private_key("rsa")
    kid = unique(f"{A}-rotated")
    tenants.jwks[A].keys = [public_jwk(rotated, kid)]  # A's identity provider rotates: its old key is gone
    user = unique("dave")
    session = await connect(tenants.url, token_for(A, user, algorithm="RS256", secret=rotated, headers={"kid": kid}),
                            realm=A)  # fmt: skip
    session.leave()
    # realm B never learns A's key: a token it signs is an unknown key there, even bound to B
    refused = await refusal(tenants.url, token_for(B, user, algorithm="RS256", secret=rotated, headers={"kid": kid}),
                            realm=B)  # fmt: skip
    assert refused.reason == "authenticator.error.unknown_key"
    # and B's own key still opens B (B's JWKS was not replaced by A's rotation)
    own = token_for(B, user, algorithm="RS256", secret=tenants.keys[B], headers={"kid": f"{B}-1"})
    session = await connect(tenants.url, own, realm=B)
    session.leave()
    # A's old key is gone from A
    old = token_for(A, user, algorithm="RS256", secret=tenants.keys[A], headers={"kid": f"{A}-1"})
    assert (await refusal(tenants.url, old, realm=A)).reason == "authenticator.error.unknown_key"


async def post(node, body: dict, token: str, key: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": ["application/json"], "Authorization": [f"Bearer {token}"]}
    if key is not None:
        headers["Idempotency-Key"] = [key]
    response = await treq.post(f"http://127.0.0.1:{node.port}/publish", data=json.dumps(body).encode(),
                               headers=headers, timeout=10)  # fmt: skip
    return response.code, json.loads(await response.text())


@pytest_twisted.ensureDeferred
async def test_http_publishing_publishes_into_the_realm_the_token_names(tenants):
    topic = f"app.chat.{unique('room')}"
    in_a = await connect(tenants.url, token_for(A, unique("erin")), realm=A)
    in_b = await connect(tenants.url, token_for(B, unique("erin")), realm=B)
    try:
        inbox_a, inbox_b = Inbox(), Inbox()
        await in_a.subscribe(inbox_a, topic)
        await in_b.subscribe(inbox_b, topic)
        assert (await post(tenants, {"topic": topic, "args": ["for b"]}, token_for(B, "app", ["backend"])))[0] == 200
        assert (await inbox_b.next())[0] == ("for b",)
        assert (await post(tenants, {"topic": topic, "args": ["marker"]}, token_for(A, "app", ["backend"])))[0] == 200
        assert (await inbox_a.next())[0] == ("marker",)  # A's first event: B's publication never reached A
        # a token that names no realm of this router is refused before any realm's service sees it,
        # counted under realm "none"
        before = await threads.deferToThread(scrape, tenants)
        status, answer = await post(tenants, {"topic": topic}, token_for("tenant-c", "app", ["backend"]))
        assert (status, answer["error"]) == (401, WRONG_REALM)
        assert "it names no realm this router serves" in answer["message"]
        after = await threads.deferToThread(scrape, tenants)
        refused = {"realm": "none", "outcome": "token_refused", "reason": "wrong_realm"}
        http = "crossbar_jwt_http_publishes_total"
        assert value(after, http, **refused) - value(before, http, **refused) == 1
        # the realm a token names only chooses whose keys verify it: A's name with B's key is refused
        forged = token_for(A, "app", ["backend"], algorithm="RS256", secret=tenants.keys[B], headers={"kid": f"{B}-1"})
        status, answer = await post(tenants, {"topic": topic, "args": ["forged"]}, forged)
        assert (status, answer["error"]) == (401, "authenticator.error.unknown_key")
        await post(tenants, {"topic": topic, "args": ["marker 2"]}, token_for(A, "app", ["backend"]))
        assert (await inbox_a.next())[0] == ("marker 2",)  # and nothing was published
        # without a token: refused, and no realm of the router is named to a stranger
        response = await treq.post(f"http://127.0.0.1:{tenants.port}/publish", data=b'{"topic": "app.chat.x"}',
                                   headers={"Content-Type": ["application/json"]}, timeout=10)  # fmt: skip
        answer = json.loads(await response.text())
        assert (response.code, answer["error"]) == (401, "authenticator.error.missing_token")
        assert response.headers.getRawHeaders("WWW-Authenticate") == ["Bearer"]
        assert A not in json.dumps(answer) and B not in json.dumps(answer)
    finally:
        in_a.leave()
        in_b.leave()


@pytest_twisted.ensureDeferred
async def test_metrics_are_labelled_by_realm(tenants):
    before = await threads.deferToThread(scrape, tenants)
    name = unique("frank")
    await refusal(tenants.url, token_for(A, name), realm=B)
    session = await connect(tenants.url, token_for(B, name), realm=B)
    try:
        after = await threads.deferToThread(scrape, tenants)
    finally:
        session.leave()

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    total = "crossbar_jwt_authentications_total"
    assert grew(total, realm=B, outcome="refused", reason="wrong_realm") == 1
    assert grew(total, realm=A, outcome="refused", reason="wrong_realm") == 0
    assert grew(total, realm=B, outcome="accepted") == 1
    assert value(after, "crossbar_jwt_active_sessions", realm=B, role="user") >= 1
    assert value(after, "crossbar_jwt_active_sessions_scrape_ok", realm=A) == 1


@pytest_twisted.ensureDeferred
async def test_a_session_refreshes_only_with_a_token_of_its_realm_and_expires_in_it(tenants):
    name = unique("grace")
    in_a = await connect(tenants.url, token_for(A, name, ttl=60), realm=A)
    short = await connect(tenants.url, token_for(B, name, ttl=1), realm=B)  # the same user id, in B, for 1 s
    try:
        try:
            await in_a.call("authenticator.refresh", token_for(B, name, ttl=120))
            raise AssertionError("a token of realm B refreshed a session of realm A")
        except ApplicationError as error:
            assert error.error == WRONG_REALM
        assert (await in_a.call("authenticator.refresh", token_for(A, name, ttl=120)))["exp"] > time.time() + 100
        goodbye = await short.left  # B's session ends at its own exp (+ grace); A's is untouched
        assert goodbye.reason == tenants.close_reason("authenticator.error.expired")
        await in_a.publish(f"app.chat.{unique('room')}", "alive", options=_acknowledged())
    finally:
        in_a.leave()


@pytest_twisted.ensureDeferred
async def test_history_is_kept_per_realm(tenants):
    topic = f"app.chat.{unique('room')}"
    for realm in (A, B):
        status, answer = await post(tenants, {"topic": topic, "args": [f"in {realm}"]},
                                    token_for(realm, "app", ["backend"]))  # fmt: skip
        assert status == 200, answer
    for realm in (A, B):
        reader = await connect(tenants.url, token_for(realm, unique("reader")), realm=realm)
        try:
            kept = await reader.call("authenticator.history", topic)
        finally:
            reader.leave()
        assert [e["args"] for e in kept["events"]] == [[f"in {realm}"]]


@pytest_twisted.ensureDeferred
async def test_presence_and_idempotency_keys_are_per_realm_in_one_redis(tenants):
    topic = f"app.chat.{unique('room')}"
    watcher = await connect(tenants.url, token_for(A, unique("watcher")), realm=A)
    clients = [watcher]
    try:
        events = Inbox()
        await watcher.subscribe(lambda event, authid: events((event, authid)), f"authenticator.presence.{topic}")
        other = await connect(tenants.url, token_for(B, unique("bea")), realm=B)  # realm B, the same topic
        clients.append(other)
        await other.subscribe(Inbox(), topic)
        marker = await connect(tenants.url, token_for(A, unique("ann")), realm=A)
        clients.append(marker)
        await marker.subscribe(Inbox(), topic)
        # A's feed hears A's join, and never B's, which came first
        assert (await events.next())[0] == (("join", marker.details.authid),)
        answer = await watcher.call("authenticator.presence", topic)
        assert answer["authids"] == [marker.details.authid]
        # one Idempotency-Key in both realms: two publications, neither a replay of the other's
        key = unique("order-")
        for realm in (A, B):
            backend = token_for(realm, "app", ["backend"])
            status, answer = await post(tenants, {"topic": topic, "args": [realm]}, backend, key=key)
            assert status == 200 and "id" in answer, (realm, answer)
    finally:
        for client in clients:
            client.leave()
