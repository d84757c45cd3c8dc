"""The JavaScript client kit (web/crossbar-jwt/crossbar-jwt.js) in Chromium against a real router whose issuer
mints 3-second tokens: it keeps one session alive for half a minute by refreshing, it is back
within two seconds of a restarted router, reconnects at once when a refresh is refused for other
roles, and stops and says why when the user is revoked. The README's Node client runs it under Node.

The page under test is the kit as an application uses it (getToken fetches /auth/token with the
login cookie); the other side is a plain AutobahnJS admin session with a token the test minted."""

import shutil
import signal
import subprocess
import time
import uuid

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.support.router import REPO, wait_for
from tests.support.snippets import readme_snippet
from tests.support.tokens import TEST_SECRET, mint
from tests.web.conftest import console_shows, web_router

PASSWORDS = {"alice": "alice-demo-password", "bob": "bob-demo-password", "root": "root-demo-password"}
RUN_SECONDS = 30
# The page's retry cap: the kit's full jitter below 1.5 s (the default, 10 s, is for fleets of
# thousands: docs/clients.md#backoff), so that a restart test waits ~1 s for the kit, not ~5.
MAX_RETRY_DELAY = 1.5
ATTEMPTS = 8  # reconnect attempts the router stays down for

KIT_PAGE = """<!doctype html>
<meta charset="utf-8">
<title>client kit under test</title>
<script>
  // Every connection attempt, as the router would see it.
  window.attempts = [];
  window.WebSocket = class extends WebSocket {
    constructor(...args) { super(...args); attempts.push(Date.now()); }
  };
</script>
<script src="node_modules/autobahn-browser/autobahn.min.js"></script>
<script type="module">
  import { connect } from "./crossbar-jwt/crossbar-jwt.js";
  const url = `ws://${location.host}/ws`;
  window.kit = { tokens: 0, tokenTimes: [], sessions: [], subscribed: [], states: [], events: [], acked: [] };

  window.startKit = (topic, options = {}) => {
    window.client = connect({
      maxRetryDelay: 1.5, // MAX_RETRY_DELAY
      ...options,
      url,
      realm: "realm1",
      getToken: async () => {
        kit.tokens += 1;
        kit.tokenTimes.push(Date.now());
        const response = await fetch("/auth/token", { cache: "no-store" });
        if (response.status === 401) return null; // logged out: no user to connect as
        if (!response.ok) throw new Error(`/auth/token answered ${response.status}`);
        return (await response.json()).token;
      },
      onSession: (session, details) => {
        kit.sessions.push({ id: session.id, authid: details.authid, role: details.authrole, at: Date.now() });
        session.subscribe(topic, ([n]) => kit.events.push(n)).then(() => kit.subscribed.push(session.id));
      },
      onState: (state, client) => kit.states.push({ state, reason: client.reason, at: Date.now() }),
    });
  };

  // An admin session of its own (plain AutobahnJS, a minted token): publishes and revokes.
  window.admin = (token) => new Promise((resolve, reject) => {
    const connection = new autobahn.Connection({
      url, realm: "realm1", authmethods: ["ticket"], onchallenge: () => token, max_retries: 0 });
    connection.onopen = (session) => resolve(session);
    connection.onclose = (reason, details) => reject(new Error(details.reason || reason));
    connection.open();
  });

  window.publishEvery = (session, topic, ms) => {
    let n = 0;
    const timer = setInterval(() => {
      const seq = ++n;
      session.publish(topic, [seq], {}, { acknowledge: true }).then(() => kit.acked.push(seq), () => {});
    }, ms);
    return () => clearInterval(timer);
  };
  window.kitLoaded = true;
</script>
"""


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    """3-second tokens from the issuer, sessions ended 1 s after exp."""
    node = web_router(tmp_path_factory.mktemp("kit"), token_ttl_seconds=3)
    yield node
    node.stop()


@pytest.fixture
def kit_page(router, open_page):
    """kit_page(user, topic) -> a page logged in as user whose kit is connected and subscribed to topic."""

    def opener(user: str, topic: str):
        page = open_page(router, "/kit.html", html=KIT_PAGE)
        page.wait_for_function("window.kitLoaded === true")
        login = page.request.post(
            f"http://127.0.0.1:{router.port}/auth/login", data={"username": user, "password": PASSWORDS[user]}
        )
        assert login.ok, login.text()
        page.evaluate("topic => startKit(topic)", topic)
        page.wait_for_function("kit.subscribed.length === 1 && client.state === 'connected'", timeout=10000)
        assert page.evaluate("kit.sessions[0].authid") == user
        return page

    return opener


def admin_token() -> str:
    return mint("root", ["admin"], ttl=600)


def test_with_3_second_tokens_the_kit_keeps_one_session_for_30_s_and_misses_no_event(router, kit_page):
    offset = router.log_size()
    page = kit_page("alice", "app.chat.kit-gap")
    page.evaluate(
        """async (token) => {
             window.publisher = await admin(token);
             window.stopPublishing = publishEvery(publisher, "app.chat.kit-gap", 200);
           }""",
        admin_token(),
    )
    # The claim is about a stretch of time: ten token lifetimes.
    page.wait_for_function(f"Date.now() >= {(time.time() + RUN_SECONDS) * 1000}", timeout=(RUN_SECONDS + 10) * 1000)
    page.evaluate("stopPublishing()")
    acked = page.evaluate("kit.acked.length")
    assert acked >= RUN_SECONDS * 4  # ~5 a second were published and acknowledged
    try:  # every acknowledged event reached alice (the last ones may still be on their way)
        page.wait_for_function("kit.acked.every(n => kit.events.includes(n))", timeout=5000)
    except PlaywrightTimeoutError:
        pass  # the assertion below names the events that never came
    missing = page.evaluate("kit.acked.filter(n => !kit.events.includes(n))")
    assert missing == [], f"{len(missing)} of {acked} events missed: {missing[:20]}"
    sessions = page.evaluate("kit.sessions.map(s => s.id)")
    assert len(sessions) == 1, f"the kit reconnected: sessions {sessions}, states {page.evaluate('kit.states')}"
    refreshes = page.evaluate("client.refreshes")
    print(f"refreshes in {RUN_SECONDS} s: {refreshes}, events received: {acked}")
    assert refreshes >= 8
    log = router.log()[offset:]
    assert log.count("session refreshed: authid=alice") >= refreshes
    assert "session ended: reason=expired authid=alice" not in log


def test_after_a_router_restart_the_kit_is_back_within_2_s_of_the_router_and_resubscribed(router, kit_page):
    page = kit_page("alice", "app.chat.kit-restart")
    router.stop()
    page.wait_for_function("client.state === 'reconnecting'", timeout=5000)
    # A long outage: without its cap the backoff would wait up to 64 s before the 8th attempt.
    retries = "attempts.filter(at => at >= kit.states.find(s => s.state === 'reconnecting').at)"
    page.wait_for_function(f"{retries}.length >= {ATTEMPTS}", timeout=(ATTEMPTS * MAX_RETRY_DELAY + 2) * 1000)
    router.start()
    ready = time.time()
    page.wait_for_function("kit.subscribed.length === 2 && client.state === 'connected'", timeout=15000)
    back = page.evaluate("kit.sessions[1].at") / 1000 - ready
    tries = [at / 1000 for at in page.evaluate(retries) if at / 1000 <= ready]
    gaps = [round(b - a, 2) for a, b in zip(tries, tries[1:], strict=False)]
    print(f"the kit joined {back:.2f} s after the router was ready; attempts while down {gaps} s apart")
    assert back <= 2.0, page.evaluate("kit.states")
    assert max(gaps) <= MAX_RETRY_DELAY + 0.1, gaps  # bounded backoff
    assert page.evaluate("kit.sessions[1].authid") == "alice"
    # onSession subscribed again: an event published after the restart arrives
    page.evaluate(
        """async (token) => {
             const session = await admin(token);
             await session.publish("app.chat.kit-restart", [4711], {}, { acknowledge: true });
           }""",
        admin_token(),
    )
    page.wait_for_function("kit.events.includes(4711)", timeout=5000)


def test_when_the_user_is_revoked_the_kit_stops_and_says_why(router, kit_page):
    page = kit_page("bob", "app.public.feed")
    answer = page.evaluate(
        """async (token) => (await admin(token)).call("authenticator.revoke", [], { authid: "bob" })""", admin_token()
    )
    assert answer["sessions_ended"] == 1
    page.wait_for_function("client.state === 'stopped'", timeout=5000)
    assert page.evaluate("client.reason") == "authenticator.error.revoked"
    assert page.evaluate("client.message")  # the router's explanation, passed on
    stopped = page.evaluate("kit.states.at(-1)")
    tokens = page.evaluate("kit.tokens")
    # It stays stopped: no token fetched, no session, for twice the longest retry delay.
    page.wait_for_function(f"Date.now() >= {stopped['at'] + 2 * MAX_RETRY_DELAY * 1000}")
    assert page.evaluate("[kit.tokens, kit.sessions.length, client.state]") == [tokens, 1, "stopped"]
    assert page.evaluate("client.connection.isOpen || client.connection.isRetrying") is False


def test_when_a_refresh_is_refused_for_other_roles_the_kit_reconnects_at_once_with_them(router, kit_page):
    offset = router.log_size()
    page = kit_page("root", "app.chat.kit-demoted")
    assert page.evaluate("kit.sessions[0].role") == "admin"
    # The application demotes root: from now on its token endpoint hands out user-only tokens.
    demoted = mint("root", ["user"], ttl=60)
    page.route("**/auth/token", lambda route: route.fulfill(json={"token": demoted}))
    page.wait_for_function("kit.subscribed.length === 2", timeout=10000)
    assert page.evaluate("kit.sessions[1].role") == "user"
    left = page.evaluate("kit.states.filter(s => s.state === 'reconnecting').map(s => s.reason)")
    assert left == ["authenticator.error.refresh_refused"]  # at the refusal, not at expiry
    assert "session ended: reason=expired authid=root" not in router.log()[offset:]


def test_the_readmes_node_first_client_runs_the_kit_under_node(router, open_page, tmp_path):
    node_modules = REPO / "bench" / "node_modules"  # autobahn, ws and jsonwebtoken, as the README installs
    if not (node_modules / "autobahn").exists() or shutil.which("node") is None:
        pytest.fail("node and bench/node_modules are missing: run `make test`, which installs them")
    (tmp_path / "first_client.mjs").write_text(readme_snippet("**Node**", "js"))
    shutil.copy(REPO / "web" / "crossbar-jwt" / "crossbar-jwt.js", tmp_path / "crossbar-jwt.mjs")
    (tmp_path / "node_modules").symlink_to(node_modules)
    output = tmp_path / "output.txt"
    env = {"PATH": "/usr/bin:/bin", "JWT_SECRET": TEST_SECRET, "ROUTER_URL": router.url}
    with output.open("wb") as sink:
        process = subprocess.Popen(["node", "first_client.mjs"], cwd=tmp_path, env=env, stdout=sink,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    try:
        lines = lambda: output.read_text().splitlines()  # noqa: E731
        wait_for(lambda: any(line.startswith("connected") for line in lines()), 15, "the Node client to connect")
        page = open_page(router, "/kit.html", html=KIT_PAGE)
        page.wait_for_function("window.kitLoaded === true")
        page.evaluate(
            """async (token) => (await admin(token))
                 .publish("app.chat.lobby", ["hello, node"], {}, { acknowledge: true })""",
            admin_token(),
        )
        wait_for(lambda: "app.chat.lobby: hello, node" in lines(), 5, "the event in the Node client's output")
        process.send_signal(signal.SIGINT)  # client.close(): the session ends and node exits by itself
        assert process.wait(timeout=10) == 0, output.read_text()
        assert "stopped wamp.close.normal closed by the application" in lines()
        # AutobahnJS's warning after the kit's onclose took over is dropped under Node too; its
        # "connection closed" line is the marker that AutobahnJS did write about the close.
        assert any(line.startswith("connection closed closed") for line in lines()), lines()
        assert not [line for line in lines() if "auto-reconnect disabled" in line], lines()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def started_kit(router, open_page, topic: str, user: str | None = None):
    """A kit page started without waiting for a session (whatever the token endpoint does)."""
    page = open_page(router, "/kit.html", html=KIT_PAGE)
    page.wait_for_function("window.kitLoaded === true")
    if user is not None:
        login = page.request.post(
            f"http://127.0.0.1:{router.port}/auth/login", data={"username": user, "password": PASSWORDS[user]}
        )
        assert login.ok, login.text()
    return page


def test_a_failing_token_endpoint_is_asked_again_with_the_kits_growing_backoff(router, open_page):
    page = started_kit(router, open_page, "app.chat.kit-issuer-down", user="alice")
    page.route("**/auth/token", lambda route: route.fulfill(status=503, body="down"))
    page.evaluate("startKit('app.chat.kit-issuer-down', { retryDelayJitter: 0 })")  # each delay its cap
    page.wait_for_function("kit.tokens >= 6", timeout=15000)
    times = page.evaluate("kit.tokenTimes")
    gaps = [round((b - a) / 1000, 2) for a, b in zip(times, times[1:], strict=False)][:5]
    print(f"getToken() asked again after {gaps} s")
    # 0.5, 1, 1.5, 1.5, 1.5 s: AutobahnJS's own backoff would start over at every WebSocket that
    # opened and ask every ~0.5 s.
    assert gaps[0] <= 1.0 and gaps[1] >= 0.9 and gaps[2] >= 1.35 and max(gaps) <= MAX_RETRY_DELAY * 1.1 + 0.3, gaps
    assert page.evaluate("[client.state, client.reason]") == ["reconnecting", "crossbar-jwt.token_unavailable"]
    page.unroute("**/auth/token")
    page.wait_for_function("client.state === 'connected' && kit.subscribed.length === 1", timeout=10000)


def test_a_logged_out_page_whose_get_token_returns_null_stops_without_asking_again(router, open_page):
    page = started_kit(router, open_page, "app.public.feed")  # no login: /auth/token answers 401
    page.evaluate("startKit('app.public.feed')")
    page.wait_for_function("client.state === 'stopped'", timeout=10000)
    assert page.evaluate("[client.reason, kit.tokens, kit.sessions.length]") == ["crossbar-jwt.no_token", 1, 0]
    stopped = page.evaluate("kit.states.at(-1).at")
    page.wait_for_function(f"Date.now() >= {stopped + 2 * MAX_RETRY_DELAY * 1000}")
    assert page.evaluate("[kit.tokens, client.state]") == [1, "stopped"]


def test_a_token_admitted_within_the_leeway_is_refreshed_at_once_and_the_session_stays(router, open_page):
    """A token 7 s past its exp (60 s lifetime: the issuer's clock behind the router's) gets the
    grace (1 s) from its admission; the kit refreshes by the router's clock, at once."""
    page = started_kit(router, open_page, "app.chat.kit-skewed", user="alice")
    skewed = mint("alice", ["user"], ttl=60, now=time.time() - 67)
    served = []

    def first_skewed(route):
        if served:
            route.continue_()
        else:
            served.append(1)
            route.fulfill(json={"token": skewed})

    page.route("**/auth/token", first_skewed)
    page.evaluate("startKit('app.chat.kit-skewed')")
    page.wait_for_function("client.refreshes >= 1", timeout=5000)
    joined = page.evaluate("kit.sessions[0].at")
    page.wait_for_function(f"Date.now() >= {joined + 3000}")  # past the grace the session had
    assert page.evaluate("[client.state, kit.sessions.length]") == ["connected", 1], page.evaluate("kit.states")


def test_a_30_day_token_is_refreshed_after_the_longest_timer_not_in_a_loop(router, open_page):
    """setTimeout fires at once for a delay over 2^31 - 1 ms (~24.8 days), in Chromium as in Node: a
    30-day token was refreshed 2,423 times in 5 s. The kit's timers stop at that bound."""
    page = started_kit(router, open_page, "app.chat.kit-long-token", user="alice")
    page.route("**/auth/token", lambda route: route.fulfill(json={"token": mint("alice", ["user"], ttl=30 * 86400,
                                                                                 jti=uuid.uuid4().hex)}))  # fmt: skip
    page.evaluate("startKit('app.chat.kit-long-token')")
    page.wait_for_function("client.state === 'connected' && kit.subscribed.length === 1", timeout=10000)
    joined = page.evaluate("Date.now()")
    page.wait_for_function(f"Date.now() >= {joined + 2000}")
    assert page.evaluate("[client.state, client.refreshes, kit.tokens, kit.sessions.length]") == ["connected", 0, 1, 1]


def test_close_while_the_router_is_down_stops_every_attempt(router, kit_page):
    page = kit_page("alice", "app.chat.kit-close")
    router.stop()
    try:
        page.wait_for_function("client.state === 'reconnecting'", timeout=5000)
        after = "attempts.filter(at => at >= kit.states.find(s => s.state === 'reconnecting').at)"
        page.wait_for_function(f"{after}.length >= 2", timeout=10000)  # the kit is retrying
        page.evaluate("client.close()")
        closed = page.evaluate("[attempts.length, Date.now()]")
        # A retry left scheduled (AutobahnJS's own close() leaves its own in place) would open one more WebSocket.
        page.wait_for_function(f"Date.now() >= {closed[1] + 2 * MAX_RETRY_DELAY * 1000 + 500}")
        assert page.evaluate("[attempts.length, client.state]") == [closed[0], "stopped"]
    finally:
        router.start()


def test_autobahns_auto_reconnect_disabled_warning_is_not_printed_when_the_kit_reconnects(router, kit_page):
    """AutobahnJS warns "auto-reconnect disabled!" after every onclose that returns true, which the
    kit's does whenever it reconnects with its own backoff or stops: a failure told at every such
    reconnect. The kit drops that one line; AutobahnJS's "connection closed" line with the reason
    (the marker) and its later warnings are still printed."""
    page = kit_page("alice", "app.chat.kit-quiet")
    page.route("**/auth/token", lambda route: route.fulfill(status=503, body="down"))  # no refresh succeeds
    page.wait_for_function("kit.states.some(s => s.reason === 'authenticator.error.expired')", timeout=10000)
    page.wait_for_function("kit.states.some(s => s.reason === 'crossbar-jwt.token_unavailable')", timeout=10000)
    page.unroute("**/auth/token")
    page.wait_for_function("client.state === 'connected' && kit.subscribed.length === 2", timeout=10000)
    page.evaluate("autobahn.log.warn('marker: after the reconnect')")
    console_shows(page, lambda line: line == "warning: marker: after the reconnect", 5, "the marker")
    closed = [line for line in page.console if line.startswith("warning: connection closed")]
    assert any("reason: authenticator.error.expired" in line for line in closed), page.console
    assert not [line for line in page.console if "auto-reconnect disabled" in line], page.console
    # A plain AutobahnJS connection on the same page still gets the line: only the kit's is dropped.
    page.evaluate("async (token) => (await admin(token)).leave('wamp.close.normal')", admin_token())
    console_shows(page, lambda line: line.startswith("warning: auto-reconnect disabled! false"), 5, "the plain line")


def test_the_readmes_browser_snippet_connects_receives_and_stops_when_logged_out(router, open_page):
    """README step 3, as printed: logged in, it joins as the user and receives the user's
    notifications; logged out, getToken returns null and the kit stops."""
    snippet = readme_snippet("**3. Connect from the browser**", "html")
    assert "ws://127.0.0.1:8080/ws" in snippet
    snippet = snippet.replace("ws://127.0.0.1:8080/ws", router.url)  # the test router's port
    page = open_page(router, "/first.html", html="<title>first client</title>")
    login = page.request.post(f"http://127.0.0.1:{router.port}/auth/login",
                              data={"username": "alice", "password": PASSWORDS["alice"]})  # fmt: skip
    assert login.ok, login.text()
    page.set_content(snippet)
    console_shows(page, lambda line: line.startswith("log: connected"), 10, "the snippet to connect")
    admin_page = open_page(router, "/kit.html", html=KIT_PAGE)
    admin_page.wait_for_function("window.kitLoaded === true")
    admin_page.evaluate(
        """async (token) => (await admin(token))
             .publish("app.user.alice.notifications", ["for alice"], {}, { acknowledge: true })""",
        admin_token(),
    )
    console_shows(page, lambda line: line == "log: for alice", 5, "alice's notification in the console")
    logged_out = open_page(router, "/first.html", html=snippet)
    console_shows(
        logged_out,
        lambda line: line.startswith("log: stopped crossbar-jwt.no_token"),
        10,
        "the logged-out snippet to stop",
    )
