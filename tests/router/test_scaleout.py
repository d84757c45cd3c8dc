"""The scale-out configuration (proxy workers in front of the router worker) beyond what the
parametrized router tests cover: the proxies really share the port, and single-use state holds
across proxies. Cross-router revocation through Redis is in test_redis_store.py."""

import json
import uuid

import pytest
import pytest_twisted

from authenticator.config.proxy_profile import proxy_config
from tests.support.router import REPO, RouterProcess, free_port
from tests.support.tokens import TEST_SECRET, mint
from tests.support.wamp import connect, refusal


def test_the_shipped_scaleout_config_is_the_one_derived_from_config_json():
    shipped = json.loads((REPO / ".crossbar" / "config-proxies.json").read_text())
    derived = proxy_config(json.loads((REPO / ".crossbar" / "config.json").read_text()), proxies=2)
    regenerate = "python -m authenticator proxy-config --proxies 2 > .crossbar/config-proxies.json"
    assert shipped == derived, f"regenerate it: {regenerate}"


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    """Two proxies sharing the public port, and proxy2 also alone on a port of its own."""
    own_port = free_port()

    def single_use(config):
        config["workers"][0]["components"][0]["extra"]["single_use"] = True

    def give_proxy2_its_own_port(config):
        proxy2 = next(w for w in config["workers"] if w.get("id") == "proxy2")
        extra = json.loads(json.dumps(proxy2["transports"][0]))
        extra["endpoint"] = {"type": "tcp", "interface": "127.0.0.1", "port": own_port}
        extra["id"] = "proxy2_own"
        proxy2["transports"].append(extra)

    node = RouterProcess(
        tmp_path_factory.mktemp("proxied"), env={"JWT_SECRET": TEST_SECRET}, proxies=2,
        edit_config=single_use, edit_scaled_config=give_proxy2_its_own_port,
    ).start()  # fmt: skip
    node.proxy2_url = f"ws://127.0.0.1:{own_port}/ws"
    yield node
    assert node.stop() == 0, node.log()[-3000:]


def _once(sub="alice"):
    return mint(sub, ["user"], jti=uuid.uuid4().hex)


@pytest_twisted.ensureDeferred
async def test_both_proxies_take_connections_on_the_shared_port(proxied):
    seen = set()
    for _ in range(40):  # the kernel spreads connections over both listeners (SO_REUSEPORT)
        client = await connect(proxied.url, _once())
        seen.add(proxied.worker_holding(client))
        client.leave()
        if len(seen) == 2:
            break
    assert len(seen) == 2


@pytest_twisted.ensureDeferred
async def test_a_single_use_token_used_through_one_proxy_is_refused_through_the_other(proxied):
    proxy2 = proxied.worker_listening_on(int(proxied.proxy2_url.split(":")[2].split("/")[0]))
    for _ in range(40):  # use a token through proxy1 (the kernel picks the proxy; retry until proxy1)
        token = _once()
        client = await connect(proxied.url, token)
        worker = proxied.worker_holding(client)
        client.leave()
        if worker != proxy2:
            break
    assert worker != proxy2
    refused = await refusal(proxied.proxy2_url, token)
    assert refused.reason == "authenticator.error.replayed"
