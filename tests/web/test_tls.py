"""Chromium over TLS to the production profile: the page loads over https from an allowed origin
and its WebSocket is wss://, with a certificate the test CA signed (Chromium trusts exactly that
key: --ignore-certificate-errors-spki-list)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.support.router import RouterProcess, free_port
from tests.support.tls import make_certificates
from tests.support.tokens import TEST_SECRET, mint
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS

PAGE = """<!doctype html>
<script src="node_modules/autobahn-browser/autobahn.min.js"></script>
<p id="state">connecting</p>
<script>
  const connection = new autobahn.Connection({
    url: `wss://${location.host}/ws`, realm: "realm1", authmethods: ["ticket"], max_retries: 0,
    onchallenge: () => window.TOKEN,
  });
  connection.onopen = (session, details) => {
    const state = `joined ${details.authid} ${details.authrole} over ${location.protocol}`;
    document.getElementById("state").textContent = state;
  };
  connection.onclose = (reason, details) => {
    document.getElementById("state").textContent = `closed ${reason} ${details.reason || ""}`;
  };
  window.start = (token) => { window.TOKEN = token; connection.open(); };
</script>
"""


@pytest.fixture(scope="module")
def tls_router(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tls-web")
    certificates = make_certificates(workdir / ".crossbar")
    port = free_port()
    node = RouterProcess(
        workdir, env={"JWT_SECRET": TEST_SECRET}, loglevel="warn", port=port,
        production={"origins": (f"https://localhost:{port}",), "static_directory": "../web",
                    "tls": {"key": "server.key", "certificate": "server.crt"}},
    ).start()  # fmt: skip
    node.certificates = certificates
    yield node
    assert node.stop() == 0, node.log()[-3000:]


def test_chromium_joins_over_wss_from_an_https_page(browser, tls_router):
    """A Chromium of its own (it trusts the test key), from the suite's Playwright (one per process)."""
    trust = f"--ignore-certificate-errors-spki-list={tls_router.certificates.spki_sha256}"
    trusting = browser.browser_type.launch(executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, trust])
    try:
        page = trusting.new_context().new_page()
        page.goto(f"https://localhost:{tls_router.port}/index.html")
        page.set_content(PAGE)  # a test page on the router's https origin
        page.wait_for_function("typeof autobahn !== 'undefined'")
        page.evaluate("token => window.start(token)", mint("alice"))
        expect(page.locator("#state")).to_have_text("joined alice user over https:")
    finally:
        trusting.close()
