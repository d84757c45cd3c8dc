"""When the client kits refresh and retry: by the router's clock, before exp, never under 0.5 s;
retries from 0.5 s growing to at most 1.5 s with ±10 % jitter. The JavaScript kit's function is
run under node and must give the same answers as the Python kit's."""

import json
import math
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


@pytest.mark.parametrize(("expires_in", "delay"), CASES)
def test_the_python_kit_refreshes_before_exp_by_the_routers_clock(expires_in, delay):
    assert refresh_delay(expires_in) == pytest.approx(delay)
    assert refresh_delay(expires_in) < max(expires_in, 0.6)


def test_the_javascript_kit_times_its_refresh_like_the_python_kit(tmp_path):
    if shutil.which("node") is None:
        pytest.fail("node is missing: make test installs the test dependencies")
    shutil.copy(REPO / "web" / "crossbar-jwt" / "crossbar-jwt.js", tmp_path / "kit.mjs")
    script = (
        "import { refreshDelay } from './kit.mjs';"
        f"console.log(JSON.stringify({json.dumps([c[0] for c in CASES])}.map(e => refreshDelay(e))));"
    )
    out = subprocess.run(["node", "--input-type=module", "-e", script], cwd=tmp_path, capture_output=True, text=True,
                         check=True, timeout=30)  # fmt: skip
    assert json.loads(out.stdout) == pytest.approx([c[1] for c in CASES])


def test_retries_start_under_a_second_and_grow_to_at_most_1_5_s_with_jitter():
    backoff = Backoff()
    low = [backoff.delay(n, rand=lambda: 0.0) for n in range(8)]
    high = [backoff.delay(n, rand=lambda: 1.0) for n in range(8)]
    middle = [backoff.delay(n, rand=lambda: 0.5) for n in range(8)]
    assert middle == pytest.approx([0.5, 0.75, 1.125, 1.5, 1.5, 1.5, 1.5, 1.5])
    assert low[0] == pytest.approx(0.45) and high[0] == pytest.approx(0.55)  # ±10 %
    assert max(high) <= 1.5 and all(a <= b for a, b in zip(middle, middle[1:], strict=False))


# -- long outages and long-lived tokens: no overflow, no timer that fires at once -------------------

DAY = 86400


@pytest.mark.parametrize("attempt", [1_749, 1_750, 1_000_000, 5_000_000, 2**64])
def test_after_millions_of_attempts_the_backoff_is_its_maximum_not_an_overflow(attempt):
    """1.5**attempt overflows a float near attempt 1,750 (some 40 minutes of outage, or of
    store_unavailable refusals): the kit's loop died there and the client stayed "reconnecting"."""
    backoff = Backoff()
    assert backoff.delay(attempt, rand=lambda: 0.5) == 1.5
    assert 1.35 <= backoff.delay(attempt) <= 1.5
    assert Backoff(initial=0).delay(attempt) == 0  # no delay asked for: none, not NaN


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
    if shutil.which("node") is None:
        pytest.fail("node is missing: make test installs the test dependencies")
    shutil.copy(REPO / "web" / "crossbar-jwt" / "crossbar-jwt.js", tmp_path / "kit.mjs")
    (tmp_path / "run.mjs").write_text(KIT_UNDER_NODE)
    out = subprocess.run(["node", "run.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["state"] == "connected" and result["refreshCalls"] == 0, result
    assert result["longest"] == 2**31 - 1 and result["max"] == MAX_TIMER_SECONDS, result
    assert result["autobahnMaxRetryDelay"] == MAX_TIMER_SECONDS  # AutobahnJS's own retries: bounded too
    python = [Backoff().delay(n, rand=lambda: 0.5) for n in (0, 1, 2, 3, 7, 1749, 1750, 10**6, 5 * 10**6, 2**64)]
    assert result["backoff"] == pytest.approx(python) and result["noInitial"] == [0] * 10, result
    assert "TimeoutOverflowWarning" not in out.stderr, out.stderr
