"""Faults around the router: the identity provider's JWKS endpoint down or hanging, the router
restarted under load. (Redis down: test_redis_store.py; the verifier raising: the component tests.)"""

import json
import os
import subprocess
import time
import uuid

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from tests.support.keys import JwksServer, new_private_key, public_jwk
from tests.support.router import REPO, RouterProcess
from tests.support.tokens import TEST_SECRET, mint
from tests.support.wamp import Refused, connect, refusal

IDP = new_private_key("rsa")
STRANGER = new_private_key("rsa")


@pytest.fixture(scope="module")
def jwks():
    server = JwksServer()
    server.keys = [public_jwk(IDP, "idp-1")]
    yield server
    server.release.set()
    server.close()


@pytest.fixture(scope="module")
def idp_node(tmp_path_factory, jwks):
    def configure(config):
        extra = config["workers"][0]["components"][0]["extra"]
        extra["keys"].append({"jwks_url": jwks.url, "algorithms": ["RS256"], "timeout_seconds": 2,
                              "min_refetch_seconds": 1})  # fmt: skip
        extra["single_use"] = True  # every login also needs the store's I/O thread

    node = RouterProcess(tmp_path_factory.mktemp("idp"), env={"JWT_SECRET": TEST_SECRET}, edit_config=configure)
    yield node.start()
    node.stop()


def idp_token(kid="idp-1", key=IDP):
    return mint("idp-user", ["user"], secret=key, algorithm="RS256", headers={"kid": kid}, jti=uuid.uuid4().hex)


async def timed(coroutine) -> tuple[object, float]:
    started = time.monotonic()
    result = await coroutine
    return result, time.monotonic() - started


async def refused_until_fetched(node, jwks, kid: str) -> Refused:
    """Log in with an unknown kid until one attempt makes the router fetch the JWKS. Within
    min_refetch_seconds (1 s here) of the last fetch an unknown kid is refused without one."""
    before, deadline = jwks.requests, time.monotonic() + 10
    while True:
        refused = await refusal(node.url, idp_token(kid, STRANGER))
        assert refused.reason == "authenticator.error.unknown_key"
        if jwks.requests > before:
            return refused
        assert time.monotonic() < deadline, "no JWKS fetch for an unknown kid within 10 s"
        await task.deferLater(reactor, 0.1, lambda: None)


@pytest_twisted.ensureDeferred
async def test_a_hanging_jwks_endpoint_neither_blocks_known_keys_nor_holds_unknown_ones(idp_node, jwks):
    (await connect(idp_node.url, idp_token())).leave()  # the key is cached
    offset = idp_node.log_size()
    jwks.fault, jwks.release = "hang", type(jwks.release)()
    before, deadline = jwks.requests, time.monotonic() + 10
    try:
        # Within min_refetch_seconds of the last fetch an unknown kid is refused without one; go on
        # until an attempt has made the router fetch (and hang on) the JWKS.
        while jwks.requests == before:
            assert time.monotonic() < deadline, "no JWKS refetch for an unknown kid within 10 s"
            unknown = defer.ensureDeferred(timed(refusal(idp_node.url, idp_token("idp-9", STRANGER))))
            while jwks.requests == before and not unknown.called:  # this attempt's fetch, or its refusal
                await task.deferLater(reactor, 0.01, lambda: None)
            if jwks.requests > before:  # the fetch is hanging now: a cached key must not wait for it
                known, known_seconds = await timed(connect(idp_node.url, idp_token()))
                known.leave()
                assert known_seconds < 1.0, "a login with a cached key waited for the JWKS fetch"
            refused, unknown_seconds = await unknown
            assert refused.reason == "authenticator.error.unknown_key"
            assert unknown_seconds < 4.0, f"an unknown kid took {unknown_seconds:.1f} s (fetch timeout is 2 s)"
    finally:
        jwks.release.set()
        jwks.fault = None
    idp_node.wait_for_log("JWKS fetch failed", after=offset)


@pytest_twisted.ensureDeferred
async def test_a_jwks_endpoint_that_is_down_keeps_the_cached_keys(idp_node, jwks):
    (await connect(idp_node.url, idp_token())).leave()  # the key is cached
    offset = idp_node.log_size()
    jwks.fault = "down"
    try:
        await refused_until_fetched(idp_node, jwks, "idp-8")  # the router asked the JWKS endpoint: 503
        idp_node.wait_for_log("JWKS fetch failed", after=offset)
        refused, seconds = await timed(refusal(idp_node.url, idp_token("idp-7", STRANGER)))
        assert refused.reason == "authenticator.error.unknown_key" and seconds < 3.0
        client = await connect(idp_node.url, idp_token())
        assert client.details.authid == "idp-user"
        client.leave()
    finally:
        jwks.fault = None


@pytest.fixture
def single_use_node(tmp_path):
    def configure(config):
        config["workers"][0]["components"][0]["extra"]["single_use"] = True

    node = RouterProcess(tmp_path, env={"JWT_SECRET": TEST_SECRET}, edit_config=configure)
    yield node.start()
    node.stop()


def test_after_a_restart_under_load_clients_return_with_fresh_tokens_and_replayed_ones_stay_out(single_use_node):
    """200 AutobahnJS clients fetch a fresh single-use token on every connect; 20 others keep
    presenting the token they first used. Restart the router under them."""
    job = {"mode": "reconnect", "url": single_use_node.url, "fresh": 200, "stale": 20, "timeout_s": 120}
    generator = subprocess.Popen(
        ["node", str(REPO / "bench" / "load.js"), json.dumps(job)], env={**os.environ, "JWT_SECRET": TEST_SECRET},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        ready = json.loads(generator.stdout.readline())
        assert ready == {"joined": 220}
        single_use_node.restart()
        generator.stdin.write("restarted\n")
        generator.stdin.flush()
        result = json.loads(generator.stdout.readline())
    finally:
        generator.kill()
    assert result["rejoined"] == 200, result
    assert result["refused"] == {"authenticator.error.replayed": 20}, result
    assert result["rejoined_stale"] == 0
