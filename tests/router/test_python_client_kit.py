"""The Python client kit (authenticator/kit/twisted.py) against a real router: it comes back after a
restart and subscribes again, keeps one session alive with 3-second tokens by refreshing, reconnects
with a fresh token when the refresh fails and the session expires, logs in with a Bearer header as
the token's user, and stops with the reason when the user is revoked; and the README's Python first client runs."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import pytest_twisted
from autobahn.wamp.types import PublishOptions
from twisted.internet import reactor, task, threads

from authenticator.kit.twisted import EXPIRED, NO_TOKEN, REFRESH_REFUSED, UNREACHABLE, Backoff, Client
from tests.support.router import RouterProcess
from tests.support.snippets import readme_snippet
from tests.support.tokens import TEST_SECRET, mint, unique
from tests.support.wamp import connect, eventually

ACK = PublishOptions(acknowledge=True)
# The tests' backoff: the kit's full jitter with a 1.5 s cap (the default, 10 s, is for fleets of
# thousands: docs/clients.md#backoff), so that a restart test waits ~1 s for the kit, not ~5.
MAX_RETRY_DELAY = 1.5
FAST_BACKOFF = {"maximum": MAX_RETRY_DELAY}
ATTEMPTS = 8  # reconnect attempts the router stays down for
REFUSED = 0.1  # how long a refused connect takes (the kit's HostnameEndpoint attemptDelay)
RUN_SECONDS = 15  # five lifetimes of a 3-second token


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    """A node of its own (these tests restart it), ending sessions 1 s after their token's exp."""

    def short_grace(config):
        config["workers"][0]["components"][0]["extra"]["session"]["expiry_grace_seconds"] = 1

    node = RouterProcess(
        tmp_path_factory.mktemp("pykit"), env={"JWT_SECRET": TEST_SECRET}, edit_config=short_grace
    ).start()
    yield node
    node.stop()


class Watched:
    """A kit Client as an application uses it, and what it saw: the tokens it was handed, its
    sessions, its states and the events of one topic it subscribes to on every join."""

    def __init__(self, router, topic: str, *, ttl: float = 60, bearer: bool = False) -> None:
        self.name, self.topic, self.ttl = unique("kit"), topic, ttl
        self.issuer_up = True
        self.roles = ["user"]  # what the issuer puts in the next token
        self.tokens = 0
        self.sessions: list[dict] = []
        self.states: list[tuple[str, str | None, float]] = []
        self.events: list[int] = []
        self.subscribed = 0  # joins whose subscription is in place
        self.delays: list[tuple[float, float]] = []  # (when, seconds) of every pause the kit chose
        self.client = Client(
            router.url,
            "realm1",
            self.get_token,
            on_join=self.on_join,
            on_state=self.on_state,
            bearer=bearer,
            backoff=_RecordingBackoff(self.delays),
        )

    def get_token(self) -> str:
        if not self.issuer_up:
            raise ConnectionError("the issuer is down")
        self.tokens += 1
        return mint(self.name, self.roles, ttl=self.ttl)

    async def on_join(self, session, details) -> None:
        self.sessions.append({"id": details.session, "authid": details.authid, "role": details.authrole,
                              "at": time.time()})  # fmt: skip
        await session.subscribe(self.events.append, self.topic)
        self.subscribed += 1

    def on_state(self, state: str, client: Client) -> None:
        self.states.append((state, client.reason, time.time()))

    def joins(self, count: int, timeout: float = 10):
        """Wait for join number `count`, subscribed."""
        return eventually(lambda: self.subscribed >= count, timeout, f"join number {count} of {self.name}")


class _RecordingBackoff(Backoff):
    """The tests' backoff (FAST_BACKOFF), telling the test each pause it chooses."""

    def __init__(self, chosen: list) -> None:
        super().__init__(**FAST_BACKOFF)
        object.__setattr__(self, "_chosen", chosen)  # a frozen dataclass

    def delay(self, attempt: int, rand=random.random) -> float:
        seconds = super().delay(attempt, rand)
        self._chosen.append((time.time(), seconds))
        return seconds


async def admin(router):
    return await connect(router.url, mint("root", ["admin"], ttl=600))


async def kit_receives(router, kit, topic: str, value) -> None:
    """An admin publishes value to topic; the kit's current session must receive it."""
    publisher = await admin(router)
    try:
        await publisher.publish(topic, value, options=ACK)
        await eventually(lambda: value in kit.events, 5, f"the kit to receive {value!r} on {topic}")
    finally:
        publisher.leave()


@pytest_twisted.ensureDeferred
async def test_after_a_router_restart_the_kit_is_back_within_2_s_and_receives_again(router):
    kit = Watched(router, "app.chat.pykit-restart")
    kit.client.start()
    try:
        await kit.joins(1)
        await threads.deferToThread(router.stop)  # off the reactor: the kit keeps trying meanwhile
        # A long outage: without its cap the backoff would wait up to 64 s before the 8th attempt.
        failed = lambda: [at for state, reason, at in kit.states if reason == UNREACHABLE]  # noqa: E731
        await eventually(lambda: len(failed()) >= ATTEMPTS, ATTEMPTS * (MAX_RETRY_DELAY + REFUSED) + 2, "attempts")
        await threads.deferToThread(router.start)
        ready = time.time()
        await kit.joins(2, timeout=15)
        back = kit.sessions[1]["at"] - ready
        attempts = [at for at in failed() if at <= ready]
        gaps = [round(b - a, 2) for a, b in zip(attempts, attempts[1:], strict=False)]
        # the pause the kit chose after each failed attempt (chosen at once, before the next one)
        chosen = [next(seconds for when, seconds in kit.delays if when >= at) for at in attempts[:-1]]
        print(f"the kit joined {back:.2f} s after the router was ready; attempts {gaps} s apart, "
              f"after pauses of {[round(c, 2) for c in chosen]} s")  # fmt: skip
        assert back <= 2.0, kit.states
        # Bounded backoff: every pause within the cap (the ATTEMPTS above, within their deadline,
        # bound the waits on the wall clock), and the kit really waited each one. A gap on its own
        # also holds the machine's scheduling: under the whole suite's load it was 0.3 s late.
        assert max(chosen) <= MAX_RETRY_DELAY, chosen
        assert all(gap >= pause - 0.01 for gap, pause in zip(gaps, chosen, strict=True)), (gaps, chosen)
        assert kit.tokens == 2  # a fresh token for the new session (none while the router was down)
        await kit_receives(router, kit, "app.chat.pykit-restart", 4711)  # published after the restart
    finally:
        await kit.client.stop()


@pytest_twisted.ensureDeferred
async def test_with_3_second_tokens_the_kit_refreshes_and_keeps_one_session(router):
    kit = Watched(router, "app.chat.pykit-refresh", ttl=3)
    kit.client.start()
    publisher = None
    try:
        await kit.joins(1)
        publisher = await admin(router)
        published, end = [], time.time() + RUN_SECONDS
        while time.time() < end:  # the claim is about a stretch of time: five token lifetimes
            await publisher.publish("app.chat.pykit-refresh", len(published), options=ACK)
            published.append(len(published))
            await task.deferLater(reactor, 0.2, lambda: None)
        await eventually(lambda: set(published) <= set(kit.events), 5, "every published event")
        assert [s["id"] for s in kit.sessions] == [kit.sessions[0]["id"]], kit.states
        print(f"refreshes in {RUN_SECONDS} s: {kit.client.refreshes}, events received: {len(published)}")
        assert kit.client.refreshes >= 5
        assert kit.tokens == 1 + kit.client.refreshes  # one for the login, one per refresh
        assert f"session ended: reason=expired authid={kit.name}" not in router.log()
    finally:
        if publisher is not None:
            publisher.leave()
        await kit.client.stop()


@pytest_twisted.ensureDeferred
async def test_when_refreshing_fails_the_session_expires_and_the_kit_reconnects_with_a_fresh_token(router):
    kit = Watched(router, "app.chat.pykit-expiry", ttl=3)
    kit.client.start()
    try:
        await kit.joins(1)
        kit.issuer_up = False  # every refresh fails from now on
        await eventually(lambda: any(reason == EXPIRED for _, reason, _ in kit.states), 10, "the session to expire")
        tokens = kit.tokens
        kit.issuer_up = True
        await kit.joins(2)
        assert kit.sessions[1]["id"] != kit.sessions[0]["id"]
        assert kit.tokens == tokens + 1  # the new session logged in with a fresh token
        router.wait_for_log(f"session ended: reason=expired authid={kit.name}")
        await kit_receives(router, kit, "app.chat.pykit-expiry", 7)  # published after the reconnect
    finally:
        await kit.client.stop()


@pytest_twisted.ensureDeferred
async def test_a_demoted_user_whose_refresh_is_refused_is_reconnected_at_once_with_the_new_role(router):
    kit = Watched(router, "app.chat.pykit-demoted", ttl=3)
    kit.roles = ["user", "admin"]
    kit.client.start()
    try:
        await kit.joins(1)
        assert kit.sessions[0]["role"] == "admin"
        kit.roles = ["user"]  # the application demotes them: the next token, for the refresh, says so
        await kit.joins(2)
        assert kit.sessions[1]["role"] == "user"
        ended = [reason for state, reason, _ in kit.states if state == "reconnecting"]
        assert ended == [REFRESH_REFUSED]  # left at the refusal, not at expiry
        assert f"session ended: reason=expired authid={kit.name}" not in router.log()
    finally:
        await kit.client.stop()


@pytest_twisted.ensureDeferred
async def test_the_bearer_variant_joins_as_the_tokens_user(router):
    kit = Watched(router, "app.chat.pykit-bearer", bearer=True)
    kit.client.start()
    try:
        await eventually(lambda: kit.sessions, 10, "a join")
        assert (kit.sessions[0]["authid"], kit.sessions[0]["role"]) == (kit.name, "user")  # not anonymous
        router.wait_for_log(f"authentication accepted: authid={kit.name} role=user via=bearer")
    finally:
        await kit.client.stop()


@pytest_twisted.ensureDeferred
async def test_when_the_user_is_revoked_the_kit_stops_with_the_reason(router):
    kit = Watched(router, "app.public.feed")
    stopped = kit.client.start()
    try:
        await kit.joins(1)
        root = await admin(router)
        assert (await root.call("authenticator.revoke", authid=kit.name))["sessions_ended"] == 1
        root.leave()
        reason, message = await stopped.addTimeout(5, reactor)
        assert reason == "authenticator.error.revoked" and message
        assert (kit.client.state, kit.client.reason, kit.client.session) == ("stopped", reason, None)
        assert (kit.tokens, len(kit.sessions)) == (1, 1)  # it did not try again
        assert await kit.client.stop() == (reason, message)  # every waiter gets the reason
    finally:
        await kit.client.stop()


@pytest_twisted.ensureDeferred
async def test_the_readmes_python_first_client_connects_and_receives(router, tmp_path):
    script = tmp_path / "first_client.py"
    script.write_text(readme_snippet("**Python**", "python"))
    output = tmp_path / "output.txt"
    env = {**os.environ, "JWT_SECRET": TEST_SECRET, "ROUTER_URL": router.url, "PYTHONUNBUFFERED": "1"}
    with output.open("wb") as sink:
        process = subprocess.Popen([sys.executable, str(script)], env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        lines = lambda: output.read_text().splitlines()  # noqa: E731
        await eventually(lambda: any(line.startswith("connected") for line in lines()), 15, "it to connect")
        publisher = await admin(router)
        await publisher.publish("app.chat.lobby", "hello, first client", options=ACK)
        publisher.leave()
        await eventually(lambda: "app.chat.lobby: hello, first client" in lines(), 5, "the event in its output")
        router.wait_for_log("authentication accepted: authid=worker-1 role=user via=ticket")
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest_twisted.ensureDeferred
async def test_a_token_admitted_within_the_leeway_is_refreshed_at_once_and_the_session_stays(router):
    """A token 7 s past its exp (60 s lifetime, the issuer's clock behind) is admitted within the
    leeway and given the grace (1 s here) from now: the kit refreshes at once, by the router's
    clock, instead of 20 s into a 60 s lifetime."""
    kit = Watched(router, "app.chat.pykit-skewed")
    first = mint(kit.name, kit.roles, ttl=60, now=time.time() - 67)
    fresh = kit.get_token
    handed = iter([first])
    kit.client.get_token = lambda: next(handed, None) or fresh()
    kit.client.start()
    try:
        await kit.joins(1)
        await eventually(lambda: kit.client.refreshes >= 1, 5, "the refresh of the skewed token")
        await task.deferLater(reactor, 2, lambda: None)  # past the 1 s grace the session had
        await kit_receives(router, kit, "app.chat.pykit-skewed", 99)
        assert [s["id"] for s in kit.sessions] == [kit.sessions[0]["id"]], kit.states
    finally:
        await kit.client.stop()


@pytest_twisted.ensureDeferred
async def test_a_get_token_that_returns_none_stops_the_kit_without_a_login(router):
    client = Client(router.url, "realm1", lambda: None)
    reason, message = await client.start().addTimeout(10, reactor)
    assert (reason, client.state) == (NO_TOKEN, "stopped") and "no user" in message


@pytest_twisted.ensureDeferred
async def test_stop_while_get_token_runs_ends_the_kit_before_it_connects(router):
    from twisted.internet import defer

    pending = defer.Deferred()
    joined = []
    client = Client(router.url, "realm1", lambda: pending, bearer=True, on_join=lambda s, d: joined.append(d))
    running = client.start()
    await task.deferLater(reactor, 0.2, lambda: None)
    stopping = client.stop()
    pending.callback(mint(unique("late"), ["user"]))  # the token arrives after stop()
    assert (await stopping.addTimeout(5, reactor))[0] == "wamp.close.normal"
    await running
    await task.deferLater(reactor, 1, lambda: None)  # a connect would have joined by now
    assert joined == [] and client.state == "stopped"


ASYNCIO_CLIENT = """
import asyncio, os, signal, sys, time
import jwt
from authenticator.kit.asyncio import Backoff, Client

url, name, issuer_down = sys.argv[1], sys.argv[2], sys.argv[3]

def say(*words):
    print(*words, flush=True)

async def get_token():  # a coroutine, as an application's HTTP fetch would be
    if os.path.exists(issuer_down):
        raise ConnectionError("the issuer is down")
    now = int(time.time())
    return jwt.encode({"sub": name, "roles": ["user"], "iat": now, "exp": now + 3},
                      os.environ["JWT_SECRET"], algorithm="HS256")

async def on_join(session, details):
    await session.subscribe(lambda n: say("event", n), "app.chat.pykit-asyncio")
    say("joined", details.session)

async def main():
    client = Client(url, "realm1", get_token, on_join=on_join, on_refresh=lambda exp: say("refreshed", exp),
                    on_state=lambda state, c: say("state", state, c.reason, time.time()),
                    backoff=Backoff(maximum=1.5))  # the tests' FAST_BACKOFF
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, client.stop)
    reason, message = await client.start()
    say("stopped", reason, message)

asyncio.run(main())
"""


@pytest_twisted.ensureDeferred
async def test_the_asyncio_kit_refreshes_reconnects_after_expiry_and_a_restart_and_stops(router, tmp_path):
    script, output, issuer_down = tmp_path / "asyncio_client.py", tmp_path / "output.txt", tmp_path / "issuer-down"
    script.write_text(ASYNCIO_CLIENT)
    name = unique("aio")
    with output.open("wb") as sink:
        process = subprocess.Popen([sys.executable, str(script), router.url, name, str(issuer_down)], stdout=sink,
                                   stderr=subprocess.STDOUT, env={**os.environ, "JWT_SECRET": TEST_SECRET})  # fmt: skip
    lines = lambda: output.read_text().split("\n")[:-1]  # noqa: E731 - whole lines only: the kit may be mid-write
    joined = lambda: [line for line in lines() if line.startswith("joined")]  # noqa: E731
    events = lambda: {line.split()[1] for line in lines() if line.startswith("event")}  # noqa: E731
    states = lambda: [line.split() for line in lines() if line.startswith("state ")]  # noqa: E731
    try:
        await eventually(joined, 15, "the asyncio client to join")
        # 1. refresh: 3-second tokens, 1 s grace: a session that does not refresh ends at ~4 s
        publisher = await admin(router)
        published, end = [], time.time() + 8
        while time.time() < end:
            await publisher.publish("app.chat.pykit-asyncio", len(published), options=ACK)
            published.append(str(len(published)))
            await task.deferLater(reactor, 0.25, lambda: None)
        publisher.leave()
        await eventually(lambda: set(published) <= events(), 5, "every event published")
        assert len(joined()) == 1, lines()
        assert sum(line.startswith("refreshed") for line in lines()) >= 2, lines()
        # 2. the issuer goes down: refreshes fail, the router ends the session, the kit reconnects
        issuer_down.touch()
        await eventually(lambda: ["state", "reconnecting", EXPIRED] in [s[:3] for s in states()], 10,
                         "the session to expire")  # fmt: skip
        issuer_down.unlink()
        await eventually(lambda: len(joined()) >= 2, 10, "the asyncio client to join with a fresh token")
        await kit_receives_line(router, events, "app.chat.pykit-asyncio", 7)
        # 3. a restart: bounded backoff while the router is down, back within 2 s of it
        down = len(states())
        await threads.deferToThread(router.restart)
        ready = time.time()
        await eventually(lambda: len(joined()) >= 3, 10, "the asyncio client to join again")
        assert time.time() - ready <= 2.0, lines()
        tries = [float(s[3]) for s in states()[down:] if s[1] == "reconnecting" and float(s[3]) <= ready]
        gaps = [round(b - a, 2) for a, b in zip(tries, tries[1:], strict=False)]
        assert len(gaps) >= 2 and max(gaps) <= MAX_RETRY_DELAY + REFUSED + 0.2, gaps
        await kit_receives_line(router, events, "app.chat.pykit-asyncio", 4711)
        # 4. stop
        process.send_signal(signal.SIGINT)  # client.stop(): start() returns and the program ends
        assert await threads.deferToThread(process.wait, 10) == 0, lines()
        assert lines()[-1] == "stopped wamp.close.normal closed by the application", lines()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def kit_receives_line(router, events, topic: str, value) -> None:
    publisher = await admin(router)
    try:
        await publisher.publish(topic, value, options=ACK)
        await eventually(lambda: str(value) in events(), 5, f"{value!r} in the client's output")
    finally:
        publisher.leave()


def test_the_shared_kit_core_loads_neither_twisted_nor_asyncio():
    probe = "import sys, authenticator.kit.common; print(sorted({m.split('.')[0] for m in sys.modules} & " \
            "{'twisted', 'asyncio', 'txaio', 'autobahn'}))"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


ASYNCIO_CANCEL = """
import asyncio, socket
from authenticator.kit.asyncio import Client

async def main():
    with socket.socket() as s:  # a port nothing listens on: every attempt is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = Client(f"ws://127.0.0.1:{port}/ws", "realm1", lambda: "x.y.z")
    assert client.start() is client.start()  # one run, however often it is started
    try:
        await asyncio.wait_for(client.start(), 1.0)
    except (asyncio.TimeoutError, TimeoutError):
        pass
    else:
        raise AssertionError("start() returned although nothing stopped it")
    await asyncio.sleep(0.1)
    assert client.start().cancelled(), "the run goes on after its caller was cancelled"
    print("ok")

asyncio.run(main())
"""


def test_cancelling_the_caller_of_the_asyncio_kits_start_ends_its_run():
    out = subprocess.run([sys.executable, "-c", ASYNCIO_CANCEL], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr
