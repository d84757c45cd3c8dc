"""Headless Debian Chromium driven by Playwright against a real router serving the demo page.

Never `playwright install`: the browser is Debian's /usr/bin/chromium (`make test` installs it).
On a failure the page's screenshot and browser console are kept in tests/artifacts/.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.support.router import REPO, RouterProcess
from tests.support.tokens import TEST_SECRET

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
    "--disable-background-networking", "--disable-component-update",
]  # fmt: skip


def web_router(workdir: Path, **issuer) -> RouterProcess:
    def configure(config):
        extra = config["workers"][0]["components"][0]["extra"]
        # The page tests log in many times a minute from one address; the login rate limit has
        # its own tests (tests/router/test_issuer_limits.py).
        extra["issuer"].update({"login_attempts_per_minute": 600, **issuer})
        if "token_ttl_seconds" in issuer or "share_min_seconds" in issuer:  # short tokens, or short shares'
            extra["session"]["expiry_grace_seconds"] = 1  # grant tokens: their sessions end 1 s after exp

    return RouterProcess(workdir, env={"JWT_SECRET": TEST_SECRET}, edit_config=configure).start()


def console_shows(page, predicate, timeout: float, what: str) -> None:
    """Wait for a console line of the page (Playwright delivers console events while it is called)."""
    deadline = time.monotonic() + timeout
    while not any(predicate(line) for line in page.console):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}: {page.console}"
        page.wait_for_timeout(100)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test`, which installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser, request):
    """open_page(router) -> a page in a fresh browser context (its own cookies: one user each);
    open_page(router, "/x.html", html=...) serves that HTML there instead of the demo page."""
    pages = []

    def opener(router: RouterProcess, path: str = "/", html: str | None = None):
        context = browser.new_context()
        page = context.new_page()
        page.console = []
        page.on("console", lambda message: page.console.append(f"{message.type}: {message.text}"))
        page.goto(f"http://127.0.0.1:{router.port}{path}")
        if html is not None:
            # A test's own page on the router's origin. Written into a document the router served
            # (here its 404 page): Chromium's local-network checks block WebSockets to 127.0.0.1
            # from a page that a route handler fulfilled, as it has no address to call local.
            page.set_content(html)
        pages.append(page)
        return page

    yield opener
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for i, page in enumerate(pages):
        if failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            stem = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', request.node.name)}-{i}"
            page.screenshot(path=f"{stem}.png", full_page=True)
            Path(f"{stem}.console.txt").write_text("\n".join(page.console))
        page.context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
