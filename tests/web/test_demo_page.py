"""The demo page in a real browser: people log in, chat, get their own notifications, are revoked,
the page refreshes its token before exp, and reconnects by itself with fresh tokens after an
expiry it could not refresh and after router restarts."""

import re
import time

import pytest
from playwright.sync_api import expect

from tests.web.conftest import console_shows, web_router

PASSWORDS = {"alice": "alice-demo-password", "bob": "bob-demo-password", "root": "root-demo-password"}


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    node = web_router(tmp_path_factory.mktemp("web"))
    yield node
    node.stop()


def log_in(page, name):
    page.fill("#username", name)
    page.fill("#password", PASSWORDS[name])
    page.click("#login-form button")
    expect(page.locator("#identity")).to_have_text(f"{name} ({'admin' if name == 'root' else 'user'})")
    expect(page.locator("#state")).to_have_text("connected")


def session_id(page):
    return page.evaluate("connection.session && connection.session.id")


def wait_for_new_session(page, previous_id, timeout_ms):
    page.wait_for_function(
        f"connection.session && connection.session.isOpen && connection.session.id !== {previous_id}",
        timeout=timeout_ms,
    )
    expect(page.locator("#state")).to_have_text("connected")


def test_two_users_chat_and_see_each_others_names(router, open_page):
    alice, bob = open_page(router), open_page(router)
    log_in(alice, "alice")
    log_in(bob, "bob")
    alice.fill("#chat-text", "hello bob")
    alice.click("#chat-form button")
    expect(bob.locator("#chat li").last).to_have_text("alice hello bob")
    bob.fill("#chat-text", "hi alice")
    bob.click("#chat-form button")
    expect(alice.locator("#chat li").last).to_have_text("bob hi alice")


def test_bob_never_sees_alices_notification(router, open_page):
    alice, bob, root = open_page(router), open_page(router), open_page(router)
    for page, name in ((alice, "alice"), (bob, "bob"), (root, "root")):
        log_in(page, name)
    root.fill("#notify-user", "alice")
    root.fill("#notify-text", "for alice only")
    root.click("#notify-wamp")
    expect(alice.locator("#notifications li")).to_have_text(["for alice only"])
    root.fill("#notify-user", "bob")
    root.fill("#notify-text", "for bob")
    root.click("#notify-wamp")
    expect(bob.locator("#notifications li")).to_have_text(["for bob"])  # bob's arrived; alice's never did
    # bob cannot subscribe to alice's topic even by hand
    error = bob.evaluate(
        "connection.session.subscribe('app.user.alice.notifications', () => {}).then(() => 'ok', e => e.error)"
    )
    assert error == "wamp.error.not_authorized"


def test_the_admin_notifies_bob_from_the_backend_over_http(router, open_page):
    """The other path: the demo issuer mints a backend token on the server and POSTs /publish."""
    bob, root = open_page(router), open_page(router)
    log_in(bob, "bob")
    log_in(root, "root")
    root.fill("#notify-user", "bob")
    root.fill("#notify-text", "your report is ready")
    root.click("#notify-backend")
    expect(root.locator("#admin-result")).to_contain_text("published from the backend (POST /publish, publication ")
    expect(bob.locator("#notifications li")).to_have_text(["your report is ready"])
    # the backend's rules decide: it may not publish outside app.user./app.public./app.chat.
    root.fill("#notify-user", "bob.notifications.x y")
    root.click("#notify-backend")
    expect(root.locator("#admin-result")).to_contain_text("refused: 400 wamp.error.invalid_argument")


def test_a_logged_out_visitor_sees_the_public_feed_and_cannot_chat(router, open_page):
    visitor, root = open_page(router), open_page(router)
    expect(visitor.locator("#state")).to_have_text("connected")
    expect(visitor.locator("#identity")).to_contain_text("visitor (anonymous)")  # not Crossbar's random authid
    log_in(root, "root")
    root.fill("#announce-text", "doors open at nine")
    root.click("#announce-form button")
    expect(visitor.locator("#public-feed li").last).to_have_text("doors open at nine")
    expect(visitor.locator("#chat-panel")).to_be_hidden()
    error = visitor.evaluate(
        "connection.session.publish('app.chat.lobby', ['spam'], {}, {acknowledge: true}).then(() => 'ok', e => e.error)"
    )
    assert error == "wamp.error.not_authorized"


def test_logging_in_prints_no_auto_reconnect_disabled_warning(router, open_page):
    """A login replaces the visitor's connection: the kit's client.close() ended it, and AutobahnJS
    used to warn "auto-reconnect disabled!" at every login. Its "connection closed" line for the
    visitor's session (the marker) is still printed; that warning is not."""
    page = open_page(router)
    expect(page.locator("#identity")).to_contain_text("visitor (anonymous)")
    log_in(page, "alice")
    page.evaluate("autobahn.log.warn('marker: logged in')")
    console_shows(page, lambda line: line == "warning: marker: logged in", 5, "the marker")
    closed = "warning: connection closed closed {reason: wamp.close.normal"
    assert any(line.startswith(closed) for line in page.console), page.console
    assert not [line for line in page.console if "auto-reconnect disabled" in line], page.console


@pytest.fixture
def sharing_router(tmp_path):
    """A router whose issuer mints 5-second tokens (logins and grants) and shares documents for seconds."""
    node = web_router(tmp_path, token_ttl_seconds=5, share_min_seconds=1)
    yield node
    node.stop()


def test_the_admin_shares_a_document_with_alice_and_her_grant_ends_with_its_token(sharing_router, open_page):
    """Root shares app.doc.<id> with alice for 15 s: alice's page fetches a grant token (role
    document-reader, caps: that topic, a 5 s life) and opens a session of its own for it, which it
    refreshes with the next grant token while the share lasts; root writes, alice reads; bob (same
    role) sees nothing and may not subscribe; once the share has ended the router ends the grant's
    session at the last token's exp, the share's end, and the page says so, while alice's own
    session goes on."""
    router = sharing_router
    alice, bob, root = open_page(router), open_page(router), open_page(router)
    for page, name in ((alice, "alice"), (bob, "bob"), (root, "root")):
        log_in(page, name)
    doc = f"plan-{time.monotonic_ns()}"
    own_session = session_id(alice)
    offset = router.log_size()
    root.fill("#share-doc", doc)
    root.fill("#share-user", "alice")
    root.fill("#share-minutes", "0.25")  # 15 s, three grant tokens' lives: issuer.share_min_seconds is 1 here
    root.click("#share-form button")
    expect(root.locator("#admin-result")).to_contain_text(f"shared document {doc} (app.doc.{doc}) with alice until")
    share_end = re.search(r" until (.+)$", root.locator("#admin-result").text_content()).group(1)
    document = alice.locator(f"#documents li[data-doc='{doc}']")
    expect(document).to_have_attribute("data-state", "open")
    expect(document.locator(".status")).to_contain_text(f"shared by root until {share_end}")
    grant_session = document.get_attribute("data-session")
    root.fill("#write-doc", doc)
    root.fill("#write-text", "draft v1")
    root.click("#write-form button")
    expect(root.locator("#admin-result")).to_have_text(f"written to app.doc.{doc}")
    expect(document.locator(".log li")).to_have_text(["root draft v1"])
    # bob: nothing shown, no grant token, no subscription, checked once a later marker reached him
    root.fill("#notify-user", "bob")
    root.fill("#notify-text", "marker for bob")
    root.click("#notify-wamp")
    expect(bob.locator("#notifications li").last).to_have_text("marker for bob")
    expect(bob.locator("#documents li")).to_have_count(0)
    status, error = bob.evaluate(
        f"fetch('/auth/shares/{doc}/token').then(async r => [r.status, (await r.json()).error])"
    )
    assert status == 404 and "No live share of this document with you" in error, (status, error)
    error = bob.evaluate(f"connection.session.subscribe('app.doc.{doc}', () => {{}}).then(() => 'ok', e => e.error)")
    assert error == "wamp.error.not_authorized"
    # alice's own session has no grant: only the grant token's session may read the document
    error = alice.evaluate(f"connection.session.subscribe('app.doc.{doc}', () => {{}}).then(() => 'ok', e => e.error)")
    assert error == "wamp.error.not_authorized"
    # the page refreshes the grant's session with the next grant token: the same session reads on
    router.wait_for_log(f"session refreshed: authid=alice session={grant_session} ", after=offset)
    expect(document.locator(".status")).to_contain_text("grant token refreshed")
    root.fill("#write-text", "draft v2")
    root.click("#write-form button")
    expect(document.locator(".log li")).to_have_text(["root draft v1", "root draft v2"])
    # the share ends: no more grant tokens, and the router ends that session at the last token's
    # exp, the share's end (+ the 1 s grace here), not at the first token's
    expect(document).to_have_attribute("data-state", "expired", timeout=30000)
    expect(document.locator(".status")).to_contain_text(f"grant expired at {share_end}")
    expect(document.locator(".status")).to_contain_text("authenticator.error.expired")
    router.wait_for_log(f"session ended: reason=expired authid=alice session={grant_session}", after=offset)
    assert session_id(alice) == own_session
    expect(alice.locator("#state")).to_have_text("connected")
    status, error = alice.evaluate(
        f"fetch('/auth/shares/{doc}/token').then(async r => [r.status, (await r.json()).error])"
    )
    assert status == 404 and "Ask the admin to share it (again)" in error, (status, error)


def test_an_admin_revokes_bob_and_bobs_page_shows_why_and_stays_closed(router, open_page):
    bob, root = open_page(router), open_page(router)
    log_in(bob, "bob")
    log_in(root, "root")
    root.fill("#revoke-user", "bob")
    root.click("#revoke-form button")
    expect(root.locator("#admin-result")).to_contain_text("live sessions ended: 1")
    expect(bob.locator("#reason")).to_have_attribute("data-reason", "authenticator.error.revoked")
    expect(bob.locator("#state")).to_have_text("closed")
    assert bob.evaluate("connection.isRetrying") is False


@pytest.fixture
def alice_with_short_tokens(tmp_path, open_page):
    """A router whose issuer mints 3-second tokens, and alice's page logged in to it."""
    short = web_router(tmp_path, token_ttl_seconds=3)
    try:
        page = open_page(short)
        log_in(page, "alice")
        yield short, page, session_id(page)
    finally:
        short.stop()


def test_the_page_refreshes_its_token_before_exp_and_keeps_its_session(alice_with_short_tokens):
    short, page, first = alice_with_short_tokens
    # 3-second tokens refreshed ~every second; the first token's exp + the fixture's 1 s grace is ~4 s away.
    page.wait_for_function("Number(document.getElementById('refreshed').textContent) >= 10", timeout=30000)
    assert session_id(page) == first
    short.wait_for_log("session refreshed: authid=alice")
    assert "session ended: reason=expired authid=alice" not in short.log()


def test_when_refresh_fails_the_session_ends_at_exp_and_the_page_reconnects_with_a_fresh_token(alice_with_short_tokens):
    short, page, first = alice_with_short_tokens
    page.route("**/auth/token", lambda route: route.fulfill(status=503, body="issuer down"))  # refresh fails
    short.wait_for_log("session ended: reason=expired authid=alice", timeout=20)
    offset = short.log_size()
    page.unroute("**/auth/token")
    wait_for_new_session(page, first, 20000)
    short.wait_for_log("authentication accepted: authid=alice", after=offset)


def test_after_a_router_restart_the_page_reconnects_by_itself(router, open_page):
    page = open_page(router)
    log_in(page, "alice")
    first = session_id(page)
    router.restart()
    wait_for_new_session(page, first, 30000)
    expect(page.locator("#identity")).to_have_text("alice (user)")
