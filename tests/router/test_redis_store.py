"""The Redis store through real routers and a real redis-server: several routers share single-use
and revocation state, and an unreachable store fails closed and recovers."""

import time
import uuid

import pytest
import pytest_twisted
from twisted.internet import reactor

from authenticator.store import RedisStore
from tests.support.redis_server import RedisServer
from tests.support.router import RouterProcess, wait_for
from tests.support.tokens import TEST_SECRET, mint
from tests.support.wamp import connect, refusal


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


def _node(workdir, redis_url):
    def configure(config):
        extra = config["workers"][0]["components"][0]["extra"]
        extra["store"] = {"redis_url": redis_url}
        extra["single_use"] = True

    return RouterProcess(workdir, env={"JWT_SECRET": TEST_SECRET}, edit_config=configure)


@pytest.fixture(scope="module")
def two_routers(tmp_path_factory, redis_server):
    nodes = [_node(tmp_path_factory.mktemp(f"redis-router{i}"), redis_server.url).start() for i in (1, 2)]
    yield nodes
    for node in nodes:
        node.stop()


def token(sub="alice", roles=("user",), **claims):
    return mint(sub, roles, jti=uuid.uuid4().hex, **claims)


@pytest_twisted.ensureDeferred
async def test_a_single_use_token_used_on_one_router_is_refused_on_the_other(two_routers):
    first, second = two_routers
    once = token()
    client = await connect(first.url, once)
    client.leave()
    assert (await refusal(second.url, once)).reason == "authenticator.error.replayed"
    assert (await refusal(first.url, once)).reason == "authenticator.error.replayed"


@pytest_twisted.ensureDeferred
async def test_a_revocation_on_one_router_refuses_the_token_on_the_other(two_routers):
    first, second = two_routers
    name = f"bob{uuid.uuid4().hex[:6]}"
    root = await connect(first.url, token("root", roles=["admin"]))
    await root.call("authenticator.revoke", authid=name)
    root.leave()
    assert (await refusal(second.url, token(name, iat=0))).reason == "authenticator.error.revoked"


@pytest_twisted.ensureDeferred
async def test_an_unreachable_redis_fails_closed_and_the_router_recovers_when_it_returns(two_routers, redis_server):
    first, _ = two_routers
    redis_server.stop()
    try:
        refused = await refusal(first.url, token())
        assert refused.reason == "authenticator.error.store_unavailable"
    finally:
        redis_server.start()
    client = await connect(first.url, token())
    client.leave()


@pytest_twisted.ensureDeferred
async def test_a_revocation_on_one_router_ends_the_users_live_session_on_the_other(two_routers):
    first, second = two_routers
    name = f"bob{uuid.uuid4().hex[:6]}"
    bob = await connect(second.url, token(name))
    root = await connect(first.url, token("root", roles=["admin"]))
    try:
        await root.call("authenticator.revoke", authid=name)
        goodbye = await bob.left.addTimeout(5, reactor)
        assert goodbye.reason == "authenticator.error.revoked"
    finally:
        root.leave()
    second.wait_for_log(f"revoked on another router: authid={name}")



def test_the_revocation_stream_reaches_other_routers_and_not_the_one_that_revoked(redis_server):
    here, there, third = (RedisStore(redis_server.url) for _ in range(3))
    heard: dict = {"here": [], "there": []}
    stops = [here.listen_for_revocations(lambda authid, jti: heard["here"].append(authid), print),
             there.listen_for_revocations(lambda authid, jti: heard["there"].append(authid), print)]  # fmt: skip
    tag = uuid.uuid4().hex[:6]

    def revoke(store, authid):
        store.revoke(authid=authid, jti=None, now=time.time(), keep_seconds=60)

    def both_listening():  # each listener starts at the stream's end once it has connected
        revoke(third, f"warmup-{tag}")
        return all(f"warmup-{tag}" in names for names in heard.values())

    try:
        wait_for(both_listening, 10, "both listeners to read the revocation stream")
        revoke(here, f"carol-{tag}")
        revoke(third, f"marker-{tag}")  # read after carol's entry: once here has it, it has passed carol's
        wait_for(lambda: f"marker-{tag}" in heard["here"] and f"carol-{tag}" in heard["there"], 10, "the entries")
        assert f"carol-{tag}" not in heard["here"]
    finally:
        for stop in stops:
            stop.set()
