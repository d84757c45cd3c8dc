"""GET /metrics on the router's web transport: Prometheus text from prometheus-client, counting
what the authenticator did (both deployments: behind proxies it is reverse-proxied)."""

import urllib.request

import pytest_twisted
from twisted.internet import threads

from tests.support.tokens import mint, unique
from tests.support.wamp import connect, refusal


def scrape(router) -> dict:
    """{'name{labels}': value} from the exposition text."""
    url = f"http://127.0.0.1:{router.port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback, test only
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def value(samples: dict, name: str, **labels) -> float:
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for key, v in samples.items() if key.split("{")[0] == name and all(w in key for w in wanted))


@pytest_twisted.ensureDeferred
async def test_metrics_count_logins_refusals_decisions_revocations_and_sessions(router):
    before = await threads.deferToThread(scrape, router)
    name = unique("bob")
    bob = await connect(router.url, mint(name, ["user"]))
    root = await connect(router.url, mint("root", ["admin"]))
    try:
        await refusal(router.url, mint(name, ["user"], ttl=-60))
        await refusal(router.url, "not-a-token")
        await bob.subscribe(lambda *a: None, f"app.user.{name}.notifications")
        during = await threads.deferToThread(scrape, router)
        assert value(during, "crossbar_jwt_active_sessions", role="user") >= 1
        assert value(during, "crossbar_jwt_active_sessions", role="admin") >= 1
        await root.call("authenticator.revoke", authid=name)
        await bob.left
    finally:
        root.leave()
    after = await threads.deferToThread(scrape, router)

    def grew(metric, **labels):
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert grew("crossbar_jwt_authentications_total", outcome="accepted") >= 2
    assert grew("crossbar_jwt_authentications_total", outcome="refused", reason="expired") >= 1
    assert grew("crossbar_jwt_authentications_total", outcome="refused", reason="malformed_token") >= 1
    assert grew("crossbar_jwt_authorizations_total", action="subscribe", outcome="allow", cacheable="no") >= 1
    assert grew("crossbar_jwt_revocations_total", kind="authid", origin="here") >= 1
    assert grew("crossbar_jwt_sessions_ended_total", reason="revoked") >= 1
    assert "process_resident_memory_bytes" in after


def test_metrics_never_carry_an_authid_or_a_token(router):
    text = "\n".join(scrape(router))
    assert "bob" not in text and "root" not in text and "eyJ" not in text
