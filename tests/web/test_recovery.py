"""Recovery after a reconnect (issue 22), on the demo page in Chromium against a real router: the
chat and bob's notifications are the kit's recovering subscriptions.

Bob's page reaches the router through a TCP relay (tests/support/stalling_proxy.py) that the test
cuts and restores while the router stays up: his WebSocket is really lost (Chromium's offline mode
leaves an open WebSocket open), and the admin publishes meanwhile with POST /publish. Bob comes
back with exactly what he missed, in order, once each; alice, who stayed, never sees his; a page
that was away (navigated off and back: its sessionStorage stays) recovers too; a router restart
(the memory history is gone: another epoch) is told as "history lost". The chat's online list
follows authenticator.presence and its join/leave events."""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest
from playwright.sync_api import expect

from tests.support.stalling_proxy import StallingProxy
from tests.support.tokens import mint
from tests.web.conftest import web_router
from tests.web.test_demo_page import log_in

BOB = "app.user.bob.notifications"
ALICE = "app.user.alice.notifications"
CHAT = "app.chat.lobby"


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    node = web_router(tmp_path_factory.mktemp("recovery"))
    yield node
    node.stop()


@pytest.fixture
def relay(router):
    proxy = StallingProxy(router.port)
    yield proxy
    proxy.close()


def publish(router, topic: str, text: str) -> int:
    """POST /publish as root (admin), as a backend would; the publication's id."""
    token = mint("root", ["admin"], ttl=60, jti=uuid.uuid4().hex)
    request = urllib.request.Request(
        f"http://127.0.0.1:{router.port}/publish",
        data=json.dumps({"topic": topic, "args": [text]}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the test router
        return json.loads(response.read())["id"]


def bob_through(relay, open_page, router):
    """Bob's demo page, loaded (page, WebSocket and all) through the relay."""
    page = open_page(router)
    page.goto(f"http://127.0.0.1:{relay.port}/")
    log_in(page, "bob")
    expect(page.locator("#notifications-topic")).to_have_text(BOB)
    page.wait_for_function("client.session && client.subscribe && document.getElementById('chat')")
    return page


def texts(page, list_id: str) -> list[str]:
    return page.locator(f"#{list_id} li").all_inner_texts()


def subscribed(page):
    """The kit's recovering subscriptions are made on this session (their first history read done)."""
    page.wait_for_function("client.state === 'connected'")


def test_the_chat_shows_who_is_online_live(router, open_page):
    """authenticator.presence when the page joins, then the join/leave events: alice sees bob come
    and go without reloading anything."""
    alice = open_page(router)
    log_in(alice, "alice")
    online = alice.locator("#online")
    expect(online).to_have_attribute("data-authids", "alice")  # herself (nobody else is left over)
    bob = open_page(router)
    log_in(bob, "bob")
    expect(online).to_have_attribute("data-authids", "alice,bob")
    expect(online).to_have_text("alice, bob")
    expect(bob.locator("#online")).to_have_attribute("data-authids", "alice,bob")  # from the answer
    bob.click("#logout")
    expect(bob.locator("#identity")).to_contain_text("visitor (anonymous)")
    expect(online).to_have_attribute("data-authids", "alice")


def test_bob_comes_back_with_exactly_the_three_events_he_missed_in_order_and_alice_sees_none_of_his(
    router, relay, open_page
):
    alice = open_page(router)
    log_in(alice, "alice")
    bob = bob_through(relay, open_page, router)
    publish(router, BOB, "before the cut")
    publish(router, CHAT, "chat before")
    expect(bob.locator("#notifications li")).to_have_text(["before the cut"])
    expect(bob.locator("#chat li").last).to_have_text("root chat before")
    chat_before = len(texts(bob, "chat"))

    relay.cut()
    expect(bob.locator("#state")).to_have_text("reconnecting")
    publish(router, BOB, "missed one")
    publish(router, CHAT, "missed chat")
    publish(router, BOB, "missed two")
    expect(alice.locator("#chat li").last).to_have_text("root missed chat")  # the router published them
    relay.forward()

    expect(bob.locator("#state")).to_have_text("connected", timeout=15000)
    expect(bob.locator("#notifications-recovery")).to_have_text("recovered 2 missed")
    expect(bob.locator("#chat-recovery")).to_have_text("recovered 1 missed")
    # A marker on each list after the recovery: anything delivered twice would be there by now.
    publish(router, BOB, "marker")
    publish(router, CHAT, "chat marker")
    expect(bob.locator("#notifications li")).to_have_text(["before the cut", "missed one", "missed two", "marker"])
    expect(bob.locator("#chat li").last).to_have_text("root chat marker")
    assert texts(bob, "chat")[chat_before - 1 :] == ["root chat before", "root missed chat", "root chat marker"]
    # alice stayed connected: her marker comes after all of bob's, and none of his ever came
    publish(router, ALICE, "alice marker")
    expect(alice.locator("#notifications li")).to_have_text(["alice marker"])
    expect(alice.locator("#notifications-recovery")).to_have_text("")  # she had nothing to recover


# Test hooks in bob's page, outside the kit: hold the kit's history calls until released, and see
# (or drop) a raw EVENT before AutobahnJS and the kit do.
HOOKS = """() => {
  window.rawEvents = [];
  window.dropEvents = new Set();
  window.historyCalls = 0;
  window.holdHistory = null; // a promise: history calls wait for it
  const call = autobahn.Session.prototype.call;
  autobahn.Session.prototype.call = async function (procedure, ...rest) {
    if (procedure === "authenticator.history") {
      window.historyCalls += 1;
      if (window.holdHistory) await window.holdHistory;
    }
    return call.call(this, procedure, ...rest);
  };
  window.watchEvents = (session) => { // outermost: before the kit's tap
    const table = session._MESSAGE_MAP;
    const inner = table[36];
    table[36] = function (msg) {
      const text = msg[4] && msg[4][0];
      window.rawEvents.push(text);
      if (!window.dropEvents.has(text)) return inner.call(this, msg);
    };
  };
}"""


def test_a_live_event_that_comes_while_the_history_is_read_is_shown_once(router, relay, open_page):
    """After the reconnect the kit subscribes, then reads the history: an event published in
    between reaches the page live and is in the history too. It is shown once, in its place."""
    bob = bob_through(relay, open_page, router)
    bob.evaluate(HOOKS)
    publish(router, BOB, "first")
    expect(bob.locator("#notifications li")).to_have_text(["first"])
    relay.cut()
    expect(bob.locator("#state")).to_have_text("reconnecting")
    publish(router, BOB, "missed while cut")
    calls = bob.evaluate("historyCalls")
    bob.evaluate("() => { window.holdHistory = new Promise((resolve) => { window.releaseHistory = resolve; }); }")
    relay.forward()
    bob.wait_for_function(f"historyCalls >= {calls + 2}", timeout=15000)  # both lists' reads are held
    bob.evaluate("watchEvents(client.session)")
    publish(router, BOB, "during the read")
    bob.wait_for_function("rawEvents.includes('during the read')")  # it reached the page live
    bob.evaluate("releaseHistory()")
    publish(router, BOB, "read marker")
    expect(bob.locator("#notifications li")).to_have_text(["first", "missed while cut", "during the read",
                                                           "read marker"])  # fmt: skip
    expect(bob.locator("#notifications-recovery")).to_have_text("recovered 1 missed")


def test_an_event_lost_on_the_way_is_fetched_from_the_history_before_the_next_one(router, relay, open_page):
    """A live event that never reached the kit (dropped in the page before AutobahnJS saw it): the
    next one's offset shows the gap, and the kit reads the missing one from the history first."""
    bob = bob_through(relay, open_page, router)
    bob.evaluate(HOOKS)
    bob.evaluate("watchEvents(client.session); dropEvents.add('lost on the way')")
    publish(router, BOB, "before the loss")
    publish(router, BOB, "lost on the way")
    publish(router, BOB, "after the loss")
    expect(bob.locator("#notifications-recovery")).to_have_text("recovered 1 missed")
    publish(router, BOB, "gap marker")
    expect(bob.locator("#notifications li")).to_have_text(["before the loss", "lost on the way", "after the loss",
                                                           "gap marker"])  # fmt: skip
    assert bob.evaluate("rawEvents.filter((t) => t === 'lost on the way').length") == 1  # sent live once


def test_a_page_that_was_away_recovers_its_notifications_when_it_comes_back(router, relay, open_page):
    """Bob navigates away and back (a reload that takes a while): the page shows what it had (its
    own data, in sessionStorage) and the kit adds what was published meanwhile, from the position
    it kept in sessionStorage."""
    bob = bob_through(relay, open_page, router)
    publish(router, BOB, "seen before leaving")
    expect(bob.locator("#notifications li").last).to_have_text("seen before leaving")
    shown = texts(bob, "notifications")
    bob.goto("about:blank")
    publish(router, BOB, "while the page was away")
    bob.goto(f"http://127.0.0.1:{relay.port}/")
    expect(bob.locator("#state")).to_have_text("connected")
    expect(bob.locator("#notifications-recovery")).to_have_text("recovered 1 missed")
    publish(router, BOB, "back marker")
    expect(bob.locator("#notifications li")).to_have_text([*shown, "while the page was away", "back marker"])


def test_after_a_router_restart_the_lost_history_is_told_and_the_page_shows_what_came_since(router, relay, open_page):
    """The memory history does not survive a restart: the stream comes back with another epoch.
    Bob is cut off until the router is back and has published again: the kit says recovered false
    (the page shows "history lost" and forgets its list), then delivers the new stream from its
    start, what was published since the restart."""
    bob = bob_through(relay, open_page, router)
    publish(router, BOB, "before the restart")
    expect(bob.locator("#notifications li").last).to_have_text("before the restart")
    relay.cut()
    expect(bob.locator("#state")).to_have_text("reconnecting")
    router.restart()
    publish(router, BOB, "after the restart")
    relay.forward()
    expect(bob.locator("#notifications-recovery")).to_have_text("history lost: reloading", timeout=15000)
    publish(router, BOB, "restart marker")
    expect(bob.locator("#notifications li")).to_have_text(["after the restart", "restart marker"])
