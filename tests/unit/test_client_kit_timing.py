"""When the client kits refresh and retry: by the router's clock, before exp, never under 0.5 s;
retries with full jitter, a random delay in [0, cap] where the cap starts at 0.5 s and doubles to
at most 10 s (docs/clients.md#backoff: chosen by bench/restart.py). The JavaScript kit's functions
are run under node and must give the same answers as the Python kit's."""

import json
import math
import random
import shutil
import subprocess
import sys

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from authenticator.kit.common import MAX_TIMER_SECONDS, timer_seconds
from authenticator.kit.twisted import Backoff, Client, refresh_delay
from tests.support.router import REPO, free_port
from tests.support.wamp import eventually

CASES = [
    (3, 2.0),  # a 3-second token: a third of it ahead
    (60, 50.0),  # 10 s ahead
    (600, 590.0),  # a cached 1-hour token with 10 minutes left: before exp, not a third of 3,600 s in
    (-7, 0.5),  # admitted within the leeway, already past exp: at once
    (0.9, 0.6),
]


def kit_under_node(tmp_path, script: str, never_warns: str | None = None):
    """Run `script` (an ES module importing './kit.mjs', the JavaScript kit) under node; what it
    printed, parsed as JSON. `never_warns`: text its stderr must not hold."""
    if shutil.which("node") is None:
        pytest.fail("node is missing: make test installs the test dependencies")
    shutil.copy(REPO / "web" / "crossbar-jwt" / "crossbar-jwt.js", tmp_path / "kit.mjs")
    (tmp_path / "run.mjs").write_text(script)
    out = subprocess.run(["node", "run.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert never_warns is None or never_warns not in out.stderr, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize(("expires_in", "delay"), CASES)
def test_the_python_kit_refreshes_before_exp_by_the_routers_clock(expires_in, delay):
    assert refresh_delay(expires_in) == pytest.approx(delay)
    assert refresh_delay(expires_in) < max(expires_in, 0.6)


def test_the_javascript_kit_times_its_refresh_like_the_python_kit(tmp_path):
    script = (
        "import { refreshDelay } from './kit.mjs';"
        f"console.log(JSON.stringify({json.dumps([c[0] for c in CASES])}.map(e => refreshDelay(e))));"
    )
    assert kit_under_node(tmp_path, script) == pytest.approx([c[1] for c in CASES])


CAPS = [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]  # the default cap of retries 0 to 7


def test_the_retry_cap_starts_at_half_a_second_and_doubles_to_at_most_10_s():
    backoff = Backoff()
    assert [backoff.delay(n, rand=lambda: 0.0) for n in range(8)] == pytest.approx(CAPS)  # rand 0: the cap
    assert [backoff.delay(n, rand=lambda: 0.5) for n in range(8)] == pytest.approx([c / 2 for c in CAPS])
    assert [backoff.delay(n, rand=lambda: 1.0) for n in range(8)] == [0.0] * 8  # full jitter reaches 0
    # jitter is the random part of the cap: 0 is the cap itself, 0.1 within 10 % under it
    assert [Backoff(jitter=0).delay(n, rand=lambda: 0.7) for n in range(8)] == pytest.approx(CAPS)
    assert Backoff(jitter=0.1).delay(2, rand=lambda: 1.0) == pytest.approx(1.8)
    assert Backoff(maximum=1.5, growth=1.5).delay(5, rand=lambda: 0.0) == 1.5  # the tests' fast backoff


def full_jitter_spread(delays: list[float], cap: float) -> None:
    """Full jitter: every delay within [0, cap], and spread evenly over it (not bunched near the
    cap as ±10 % was, nor near 0): each tenth of the window holds about a tenth of the delays."""
    assert all(0.0 <= d <= cap for d in delays), (min(delays), max(delays))
    tenths = [0] * 10
    for d in delays:
        tenths[min(9, int(10 * d / cap))] += 1
    share = len(delays) / 10
    assert all(0.8 * share <= n <= 1.2 * share for n in tenths), tenths
    assert min(delays) < 0.01 * cap and max(delays) > 0.99 * cap
    assert sum(delays) / len(delays) == pytest.approx(cap / 2, rel=0.05)


@pytest.mark.parametrize("attempt", [0, 3, 9])
def test_the_python_kits_retry_delays_are_full_jitter(attempt):
    draw = random.Random(attempt).random  # seeded: the same draws every run
    full_jitter_spread([Backoff().delay(attempt, rand=draw) for _ in range(10_000)], CAPS[min(attempt, 7)])


JS_SPREAD = """
import { retryDelay } from "./kit.mjs";
console.log(JSON.stringify([0, 3, 9].map((n) => Array.from({ length: 10000 }, () => retryDelay(n)))));
"""


def test_the_javascript_kits_retry_delays_are_full_jitter_too(tmp_path):
    """retryDelay with its own Math.random, as the kit calls it."""
    for attempt, delays in zip([0, 3, 9], kit_under_node(tmp_path, JS_SPREAD), strict=True):
        full_jitter_spread(delays, CAPS[min(attempt, 7)])


# -- long outages and long-lived tokens: no overflow, no timer that fires at once -------------------

DAY = 86400


@pytest.mark.parametrize("attempt", [1_749, 1_750, 1_000_000, 5_000_000, 2**64])
def test_after_millions_of_attempts_the_backoff_is_its_maximum_not_an_overflow(attempt):
    """1.5**attempt overflows a float near attempt 1,750 (some 40 minutes of outage, or of
    store_unavailable refusals): the kit's loop died there and the client stayed "reconnecting"."""
    backoff = Backoff()
    assert backoff.delay(attempt, rand=lambda: 0.5) == 5.0  # half the 10 s cap
    assert 0.0 <= backoff.delay(attempt) <= 10.0
    assert Backoff(initial=0).delay(attempt) == 0  # no delay asked for: none, not NaN
    assert Backoff(jitter=math.nan).delay(attempt) == 10.0  # a jitter nobody can use: the cap, as in JS


def test_no_python_kit_timer_is_negative_nan_or_longer_than_a_javascript_timer_can_be():
    assert MAX_TIMER_SECONDS == (2**31 - 1) / 1000  # the longest setTimeout: the kits refresh alike
    assert timer_seconds(refresh_delay(30 * DAY)) == MAX_TIMER_SECONDS
    assert [timer_seconds(d) for d in (-3.0, math.inf, math.nan, 10**400)] == [0.0, *[MAX_TIMER_SECONDS] * 3]
    assert refresh_delay(math.nan) == MAX_TIMER_SECONDS  # no usable lifetime: the router ends it at exp


def test_the_twisted_kit_arms_a_30_day_tokens_refresh_for_the_longest_timer():
    clock = Clock()
    client = Client("ws://127.0.0.1:9/ws", "realm1", lambda: "token", reactor=clock)
    session = object()
    client.session = session
    client._plan_refresh(session, 30 * DAY)
    [call] = clock.getDelayedCalls()
    assert call.getTime() == MAX_TIMER_SECONDS


class FailingBackoff(Backoff):
    """An application's own backoff with a bug (or the old Backoff past attempt 1,750)."""

    def delay(self, attempt, rand=None):
        raise OverflowError((34, "Numerical result out of range"))


@pytest_twisted.ensureDeferred
async def test_a_backoff_that_raises_does_not_end_the_twisted_kits_reconnect_loop():
    states = []
    client = Client(f"ws://127.0.0.1:{free_port()}/ws", "realm1", on_state=lambda state, _: states.append(state),
                    backoff=FailingBackoff())  # fmt: skip
    client.start()
    try:
        await eventually(lambda: states.count("reconnecting") >= 2, 6, "a second attempt after the failed backoff")
    finally:
        await client.stop()
    assert client.state == "stopped"


ASYNCIO_LOOP = """
import asyncio
from authenticator.kit.asyncio import Backoff, Client

class FailingBackoff(Backoff):
    def delay(self, attempt, rand=None):
        raise OverflowError((34, "Numerical result out of range"))

async def main():
    states = []
    client = Client("ws://127.0.0.1:{port}/ws", "realm1", on_state=lambda state, _: states.append(state),
                    backoff=FailingBackoff())
    client.start()
    for _ in range(120):
        if states.count("reconnecting") >= 2:
            break
        await asyncio.sleep(0.05)
    await client.stop()
    print(states.count("reconnecting"), client.state)

asyncio.run(main())
"""


def test_a_backoff_that_raises_does_not_end_the_asyncio_kits_reconnect_loop():
    """In a process of its own: Autobahn works with one framework per process."""
    out = subprocess.run([sys.executable, "-c", ASYNCIO_LOOP.replace("{port}", str(free_port()))], cwd=REPO,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.stdout.split() == ["2", "stopped"], out.stdout + out.stderr
    assert "the backoff failed for attempt 0 (OverflowError" in out.stderr, out.stderr


KIT_UNDER_NODE = """
import { connect, retryDelay, MAX_TIMER_SECONDS } from "./kit.mjs";
const realSetTimeout = globalThis.setTimeout;
const delays = [];
globalThis.setTimeout = (fn, ms, ...rest) => { delays.push(ms); return realSetTimeout(fn, ms, ...rest); };

// AutobahnJS as far as the kit uses it: one session whose token lives 30 days, refreshed for 30 more.
const lifetime = 30 * 86400;
const answer = () => ({ exp: Date.now() / 1000 + lifetime, expires_in: lifetime });
let refreshCalls = 0;
const opened = [];
class Connection {
  constructor(options) { opened.push(options); }
  open() {
    const session = { id: 1, call: async () => { refreshCalls += 1; return answer(); }, leave() {} };
    realSetTimeout(() => this.onopen(session, { authextra: answer() }), 0);
  }
  close() {}
}
const client = connect({ url: "ws://unused", realm: "realm1", getToken: async () => "token",
                         autobahn: { Connection }, maxRetryDelay: 1e12 });
realSetTimeout(() => {
  const attempts = [0, 1, 2, 3, 7, 1749, 1750, 1e6, 5e6, 2 ** 64];
  console.log(JSON.stringify({
    state: client.state, refreshCalls, longest: Math.max(...delays), max: MAX_TIMER_SECONDS,
    autobahnMaxRetryDelay: opened[0].max_retry_delay,
    backoff: attempts.map((n) => retryDelay(n, {}, () => 0.5)),
    noInitial: attempts.map((n) => retryDelay(n, { initial: 0 }, () => 0.5)),
  }));
  client.close();
  process.exit(0);
}, 1000);
"""


def test_the_javascript_kit_never_sets_a_timer_that_fires_at_once_for_a_30_day_token_or_a_long_outage(tmp_path):
    """setTimeout fires at once for more than 2^31 - 1 ms (~24.8 days), in Node and in Chromium:
    a 30-day token was refreshed 2,423 times in 5 s. Here: none in a second, and the longest timer
    is the bound. The browser, through the router: tests/web/test_client_kit.py."""
    result = kit_under_node(tmp_path, KIT_UNDER_NODE, never_warns="TimeoutOverflowWarning")
    assert result["state"] == "connected" and result["refreshCalls"] == 0, result
    assert result["longest"] == 2**31 - 1 and result["max"] == MAX_TIMER_SECONDS, result
    assert result["autobahnMaxRetryDelay"] == MAX_TIMER_SECONDS  # AutobahnJS's own retries: bounded too
    python = [Backoff().delay(n, rand=lambda: 0.5) for n in (0, 1, 2, 3, 7, 1749, 1750, 10**6, 5 * 10**6, 2**64)]
    assert result["backoff"] == pytest.approx(python) and result["noInitial"] == [0] * 10, result


KIT_RETRIES_UNDER_NODE = """
import { connect } from "./kit.mjs";
const realSetTimeout = globalThis.setTimeout;
const delays = []; // every timer the kit sets, in ms
globalThis.setTimeout = (fn, ms, ...rest) => { delays.push(ms); return realSetTimeout(fn, ms, ...rest); };
Math.random = () => 0.25; // each delay is then 3/4 of its cap

// AutobahnJS as the kit uses it: the first attempt joins; the router then goes away, and every
// later attempt is refused, reported twice as AutobahnJS 22.11.1 under Node does (its transport
// calls onclose for ws's "error" and again for its "close").
const opened = [];
let opens = 0;
class Connection {
  constructor(options) { opened.push(options); }
  open() {
    opens += 1;
    if (opens === 1) {
      realSetTimeout(() => this.onopen({ id: 1, leave() {} }, { authextra: {} }), 0);
      realSetTimeout(() => { // the router restarts: the session is lost (AutobahnJS: "lost", will_retry)
        this.onclose("lost", { reason: null, message: null, will_retry: true });
        this.onclose("lost", { reason: null, message: null, will_retry: true });
      }, 20);
      return;
    }
    if (opens === 3) { // the marker: the second retry came; what was scheduled until now is known
      console.log(JSON.stringify({ delays, opens, maxRetries: opened[0].max_retries }));
      process.exit(0);
    }
    realSetTimeout(() => {
      this.onclose("lost", { reason: null, message: null, will_retry: false });
      this.onclose("lost", { reason: null, message: null, will_retry: false });
    }, 0);
  }
  close() {}
}
connect({ url: "ws://unused", realm: "realm1", autobahn: { Connection } });
realSetTimeout(() => { // no second retry came
  console.log(JSON.stringify({ delays, opens, maxRetries: opened[0].max_retries }));
  process.exit(0);
}, 5000);
"""


def test_the_javascript_kit_retries_a_lost_connection_itself_once_per_attempt_with_full_jitter(tmp_path):
    """The first retry after a lost connection is itself a random part of 0.5 s (5,000 clients of a
    restarted router do not come back in the same instant), scheduled by the kit, not by AutobahnJS
    (whose backoff has no full jitter: it is told max_retries 0). A failed attempt reported twice
    (AutobahnJS under Node) schedules one retry, not two."""
    result = kit_under_node(tmp_path, KIT_RETRIES_UNDER_NODE)
    # 3/4 of the caps 0.5 s and 1 s, one timer each: the kit's retries, in order
    assert result == {"delays": [375, 750], "opens": 3, "maxRetries": 0}, result
