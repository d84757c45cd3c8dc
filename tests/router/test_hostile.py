"""The hostile corpus through the real router: every token refused with its reason, the router
keeps serving, its memory stays bounded; and nothing in a HELLO changes who a token says you are."""

import psutil
import pytest_twisted
from twisted.internet import defer

from tests.support.hostile import corpus
from tests.support.tokens import mint, unique
from tests.support.wamp import Refused, connect

BATCH = 25  # refusals in flight at once


async def outcome(url: str, ticket: str) -> str:
    try:
        client = await connect(url, ticket)
    except Refused as refused:
        return refused.reason
    client.leave()
    return "ACCEPTED"


async def run_corpus(url: str) -> dict:
    """label -> (expected, got) for every corpus entry the router did not refuse as expected."""
    items = corpus()
    wrong = {}
    for start in range(0, len(items), BATCH):
        batch = items[start : start + BATCH]
        got = await defer.gatherResults([defer.ensureDeferred(outcome(url, h.ticket)) for h in batch])
        for hostile, reason in zip(batch, got, strict=True):
            if reason != f"authenticator.error.{hostile.reason}":
                wrong[hostile.label] = (hostile.reason, reason)
    return wrong


@pytest_twisted.ensureDeferred
async def test_every_hostile_token_is_refused_with_its_reason_and_the_router_keeps_serving(router):
    assert await run_corpus(router.url) == {}
    client = await connect(router.url, mint(unique("alice"), ["user"]))
    client.leave()


@pytest_twisted.ensureDeferred
async def test_the_routers_memory_stays_bounded_under_the_corpus(router):
    if router.proxies:
        return  # measured on the single router worker; the proxies hold no session state
    worker = psutil.Process(router.worker_pids()[0])
    await run_corpus(router.url)  # warm: first-use allocations, caches
    before = worker.memory_info().rss
    for _ in range(3):
        assert await run_corpus(router.url) == {}
    growth = worker.memory_info().rss - before
    mib = 2**20
    print(f"\nhostile corpus: router worker {before / mib:.1f} MiB, +{growth / mib:.2f} MiB after 3 x {len(corpus())}")
    assert growth < 20 * 2**20, f"router worker grew {growth / 2**20:.1f} MiB over 3 x {len(corpus())} refusals"


@pytest_twisted.ensureDeferred
async def test_a_hello_cannot_change_who_the_token_says_you_are(router):
    name = unique("mallory")
    token = mint(name, ["user"])
    client = await connect(router.url, token, authid="root", authextra={"roles": ["admin"], "role": "admin"})
    try:
        assert (client.details.authid, client.details.authrole) == (name, "user")
        assert client.details.authextra["roles"] == ["user"]
    finally:
        client.leave()
    visitor = await connect(router.url, authmethods=["anonymous"], authid="root", authextra={"roles": ["admin"]})
    try:
        assert visitor.details.authrole == "anonymous"
    finally:
        visitor.leave()


@pytest_twisted.ensureDeferred
async def test_an_unknown_authmethod_is_refused(router):
    try:
        client = await connect(router.url, "x", authmethods=["cryptosign", "wampcra", "scram"])
    except Refused as refused:
        assert refused.reason == "wamp.error.no_auth_method"
    else:
        client.leave()
        raise AssertionError("joined with an authmethod the router does not offer")
