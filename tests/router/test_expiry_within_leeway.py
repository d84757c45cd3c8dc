"""A token accepted within the claim leeway after its exp (clock skew between issuer and router):
the session is not ended in the same breath; it gets the grace from now to refresh, and otherwise
ends with the reason `expired` (in the shipped config: leeway 10 s, grace 5 s)."""

import time

import pytest_twisted
from twisted.internet import reactor

from tests.support.tokens import mint, unique
from tests.support.wamp import connect


@pytest_twisted.ensureDeferred
async def test_a_session_admitted_within_the_leeway_can_refresh_and_stays(router):
    name = unique("skewed")
    client = await connect(router.url, mint(name, ["user"], ttl=-7))  # 7 s past exp, within the leeway
    try:
        answer = await client.call("authenticator.refresh", mint(name, ["user"], ttl=60))
        assert answer["exp"] > time.time() + 50
        # a round trip after the old deadline (exp + grace is already past; now + grace soon is)
        await deferred_sleep_until_past(6)
        assert "exp" in await client.call("authenticator.refresh", mint(name, ["user"], ttl=60))
    finally:
        client.leave()


@pytest_twisted.ensureDeferred
async def test_a_session_admitted_within_the_leeway_that_does_not_refresh_ends_expired(router):
    started = time.monotonic()
    client = await connect(router.url, mint(unique("skewed"), ["user"], ttl=-7))
    goodbye = await client.left.addTimeout(15, reactor)
    assert goodbye.reason == router.close_reason("authenticator.error.expired")
    assert time.monotonic() - started >= 4  # the grace (5 s) from admission, not at once


def deferred_sleep_until_past(seconds: float):
    """The behaviour under test is a deadline: let that much time pass on the reactor."""
    from twisted.internet import task

    return task.deferLater(reactor, seconds, lambda: None)
