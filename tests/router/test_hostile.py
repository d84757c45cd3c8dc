"""The hostile corpus through the real router: every token refused with its reason, the router
keeps serving, its memory stays bounded; and nothing in a HELLO changes who a token says you are."""

import psutil
import pytest
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


# The router worker's memory per refusal. The first passes grow it by ~2 MiB each (allocator
# arenas, first-use caches) and then it levels off: 25 passes alone, 2026-12, grew by 2124, 1916,
# 1584, 24, 136, 56, 640, 20, 20, 4, 4, 0, ... KiB (flat at 157 MiB). Measured from a fixed 5th pass
# under the whole suite's load, the late steps of that warm-up were counted as growth (588 bytes per
# refusal in one CI run), so the warm-up runs until the worker has levelled off: SETTLED_PASSES passes in a
# row growing it by less than SETTLED_KIB each. After that, 16-90 bytes per refusal over 10 passes in
# several runs, 2026-11, on the machine of docs/benchmarks.md. The bound is 6 x the worst of them; a
# simulated leak of 2 KiB per refusal measured 2,468 bytes per refusal here and fails it (and a leak
# never levels off: the warm-up stops at MAX_WARMUP_PASSES and the measured passes fail).
MIN_WARMUP_PASSES = 5
MAX_WARMUP_PASSES = 20
SETTLED_PASSES = 3
SETTLED_KIB = 128
MEASURED_PASSES = 10
MAX_BYTES_PER_REFUSAL = 512


async def warm_up(url: str, worker: psutil.Process) -> list[int]:
    """Run the corpus until the worker's memory has levelled off; the growth of each pass, in KiB."""
    growth_kib = []
    rss = worker.memory_info().rss
    while len(growth_kib) < MAX_WARMUP_PASSES:
        assert await run_corpus(url) == {}
        rss, last = worker.memory_info().rss, rss
        growth_kib.append((rss - last) // 1024)
        settled = len(growth_kib) >= SETTLED_PASSES and max(growth_kib[-SETTLED_PASSES:]) < SETTLED_KIB
        if len(growth_kib) >= MIN_WARMUP_PASSES and settled:
            break
    return growth_kib


@pytest_twisted.ensureDeferred
async def test_the_routers_memory_per_refusal_stays_bounded_under_the_corpus(router):
    if router.proxies:
        pytest.skip(
            "measured on the single-worker deployment only: behind proxies the same authenticator in the "
            "router worker refuses the same tokens, and the proxy workers keep no state for a refused login"
        )
    worker = psutil.Process(router.worker_pids()[0])
    warm_up_kib = await warm_up(router.url, worker)
    before = worker.memory_info().rss
    for _ in range(MEASURED_PASSES):
        assert await run_corpus(router.url) == {}
    growth = worker.memory_info().rss - before
    refusals = MEASURED_PASSES * len(corpus())
    print(f"\nhostile corpus: warm-up grew {warm_up_kib} KiB; router worker {before / 2**20:.1f} MiB, "
          f"+{growth / 2**10:.0f} KiB over {refusals} "
          f"refusals = {growth / refusals:.0f} bytes per refusal")  # fmt: skip
    assert growth / refusals < MAX_BYTES_PER_REFUSAL, f"router worker grew {growth} bytes over {refusals} refusals"


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
