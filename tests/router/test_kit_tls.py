"""The Python kits over wss:// to the production profile with TLS, a certificate the test CA
signed: the kit trusts the CA it is given (ca_file=, or its framework's ssl_context=) without
SSL_CERT_FILE, and a certificate nobody told it to trust is `unreachable`, with the reason, on
both frameworks (the Twisted kit said `lost`, with none). Each program runs on one framework in a
process of its own, with SSL_CERT_FILE and SSL_CERT_DIR removed from its environment."""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.router.test_kit_frameworks import FRAMEWORKS, KitProgram
from tests.support.router import tls_production_node


@pytest.fixture(scope="module")
def tls_router(tmp_path_factory):
    node = tls_production_node(tmp_path_factory.mktemp("kit-tls"))
    assert node.url.startswith("wss://127.0.0.1:")
    yield node
    assert node.stop() == 0, node.log()[-3000:]


@pytest.mark.parametrize("trust", ["ca_file", "ssl_context_ca"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest_twisted.ensureDeferred
async def test_over_wss_the_kit_joins_trusting_the_ca_it_is_given(tls_router, tmp_path, framework, trust):
    kit = KitProgram(tmp_path, framework, tls_router.url, **{trust: str(tls_router.certificates.ca)})
    try:
        await kit.wait_for(lambda: kit.starting("joined"), 15, "the join over wss://")
        assert kit.states() == [("connecting", "None"), ("connected", "None")], kit.lines()
        await kit.stop()
    finally:
        kit.kill()


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest_twisted.ensureDeferred
async def test_over_wss_a_certificate_the_kit_was_not_told_to_trust_is_unreachable_with_the_reason(
    tls_router, tmp_path, framework
):
    kit = KitProgram(tmp_path, framework, tls_router.url)
    try:
        failed = lambda: [s for s in kit.states() if s == ("reconnecting", "unreachable")]  # noqa: E731
        await kit.wait_for(lambda: len(failed()) >= 2, 15, "two refused attempts")
        assert kit.starting("joined") == [], kit.lines()  # two attempts ended: none joined
        assert all("certificate verify failed" in message for message in kit.messages("reconnecting")), kit.lines()
        await kit.stop()
    finally:
        kit.kill()
