"""The Redis store through real routers and a real redis-server: several routers share single-use
and revocation state, and an unreachable store fails closed and recovers."""

import threading
import time
import uuid
from contextlib import contextmanager

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from authenticator.server.store import BLOCK_SECONDS, RedisStore, StoreUnavailable
from tests.support.redis_server import RedisServer
from tests.support.router import RouterProcess, start_all, stop_all, wait_for
from tests.support.tokens import TEST_SECRET, mint
from tests.support.wamp import Refused, connect, refusal


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
    nodes = start_all([_node(tmp_path_factory.mktemp(f"redis-router{i}"), redis_server.url) for i in (1, 2)])
    yield nodes
    stop_all(nodes)


def token(sub="alice", roles=("user",), **claims):
    return mint(sub, roles, jti=uuid.uuid4().hex, **claims)


async def login_once_the_store_answers(url: str, sub="alice", roles=("user",), timeout: float = 10):
    """Log in with fresh tokens until one is admitted. Just after an outage the router refuses at
    once, without asking Redis, for a short while (its store's circuit breaker): only
    store_unavailable may be answered meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await connect(url, token(sub, roles))
        except Refused as refused:
            assert refused.reason == "authenticator.error.store_unavailable", refused
        assert time.monotonic() < deadline, f"no login admitted within {timeout:.0f} s of Redis returning"
        await task.deferLater(reactor, 0.2, lambda: None)


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
    client = await login_once_the_store_answers(first.url)
    client.leave()


async def revoked_across(root, bob, bobs_router, name: str, *, within: float, after: int = 0) -> None:
    """root revokes name on its router; bob's session on the other router ends with the reason."""
    try:
        await root.call("authenticator.revoke", authid=name)
        goodbye = await bob.left.addTimeout(within, reactor)
        assert goodbye.reason == "authenticator.error.revoked"
    finally:
        root.leave()
    bobs_router.wait_for_log(f"revoked on another router: authid={name}", after=after)


@pytest_twisted.ensureDeferred
async def test_a_revocation_on_one_router_ends_the_users_live_session_on_the_other(two_routers):
    first, second = two_routers
    name = f"bob{uuid.uuid4().hex[:6]}"
    bob = await connect(second.url, token(name))
    root = await connect(first.url, token("root", roles=["admin"]))
    await revoked_across(root, bob, second, name, within=5)


@pytest_twisted.ensureDeferred
async def test_the_revocation_listener_reconnects_after_a_redis_outage_and_ends_sessions_again(
    two_routers, redis_server
):
    first, second = two_routers
    offset = second.log_size()
    redis_server.stop()
    try:  # the second router's listener has lost Redis (it logs each failed attempt)
        second.wait_for_log("Redis revocation stream at", after=offset, timeout=BLOCK_SECONDS + 10)
    finally:
        redis_server.start()
    name = f"bob{uuid.uuid4().hex[:6]}"
    bob = await login_once_the_store_answers(second.url, name)
    root = await login_once_the_store_answers(first.url, "root", ["admin"])
    await revoked_across(root, bob, second, name, within=10, after=offset)


def revoke(store, authid) -> None:
    store.revoke(authid=authid, jti=None, now=time.time(), keep_seconds=60)


@contextmanager
def listening(store, waker):
    """A revocation listener on `store`: yields the authids it hears and the problems it reports.
    On exit it is stopped and its thread joined (an entry from `waker` ends its blocking read)."""
    heard: list = []
    problems: list = []
    before = set(threading.enumerate())
    stop = store.listen_for_revocations(lambda authid, jti: heard.append(authid), problems.append)
    started = [t for t in threading.enumerate() if t not in before and t.name == "authenticator-revocations"]
    assert len(started) == 1
    try:
        yield heard, problems
    finally:
        stop.set()
        try:
            revoke(waker, f"wake-{uuid.uuid4().hex[:6]}")
        except StoreUnavailable:
            pass  # Redis is down: the read ends at its socket timeout instead
        started[0].join(BLOCK_SECONDS + 5)
        assert not started[0].is_alive(), "the revocation listener's thread did not stop"


def until_heard(store, heard: list, authid: str) -> None:
    """A listener starts at the stream's end once it has connected: revoke until it hears."""

    def heard_it():
        revoke(store, authid)
        return authid in heard

    wait_for(heard_it, 10, f"the listener to hear {authid}")


def test_the_revocation_stream_reaches_other_routers_and_not_the_one_that_revoked(redis_server):
    here, there, third = (RedisStore(redis_server.url) for _ in range(3))
    tag = uuid.uuid4().hex[:6]
    try:
        with listening(here, third) as (heard_here, _), listening(there, third) as (heard_there, _):
            until_heard(third, heard_here, f"warmup-{tag}")
            until_heard(third, heard_there, f"warmup-{tag}")
            revoke(here, f"carol-{tag}")
            revoke(third, f"marker-{tag}")  # read after carol's entry: once here has it, it has passed carol's
            wait_for(lambda: f"marker-{tag}" in heard_here and f"carol-{tag}" in heard_there, 10, "the entries")
            assert f"carol-{tag}" not in heard_here
    finally:
        for store in (here, there, third):
            store.close()


def test_the_revocation_listener_reconnects_when_redis_returns(redis_server):
    listener, revoker = RedisStore(redis_server.url), RedisStore(redis_server.url)
    tag = uuid.uuid4().hex[:6]
    try:
        with listening(listener, revoker) as (heard, problems):
            until_heard(revoker, heard, f"warmup-{tag}")
            redis_server.stop()
            try:
                wait_for(lambda: problems, BLOCK_SECONDS + 10, "the listener to report the lost connection")
            finally:
                redis_server.start()
            assert problems[0].startswith(f"Redis revocation stream at {redis_server.url}: "), problems

            def revoked_after_restart():
                try:
                    revoke(revoker, f"after-{tag}")
                except StoreUnavailable:
                    return False
                return True

            wait_for(revoked_after_restart, 10, "Redis to take a revocation again")
            # One revocation, made once: the listener reads it from the stream whenever it is back.
            wait_for(lambda: f"after-{tag}" in heard, 15, "the listener to hear a revocation made after the outage")
    finally:
        for store in (listener, revoker):
            store.close()
