"""Both Python kits, Twisted and asyncio, behave alike where they used to differ. One loop
(authenticator/kit/loop.py) runs both; each test runs the same program on each framework, in a
process of its own (Autobahn works with one framework per process), against a real router.

- an on_refresh that raises is logged and the refreshes go on (the Twisted kit's stopped);
- an on_state that raises is logged and the kit still connects and reconnects (both kits' ended);
- a lost connection is told by the kit's state, reason `lost` on both (asyncio said
  wamp.close.transport_lost), and Autobahn's "session closed with reason
  wamp.close.transport_lost" warning is not on the program's stderr (asyncio printed it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads

from tests.support.router import REPO, RouterProcess
from tests.support.stalling_proxy import StallingProxy
from tests.support.tokens import TEST_SECRET, unique
from tests.support.wamp import eventually

FRAMEWORKS = ["twisted", "asyncio"]

# One program for both kits: argv framework, url, authid, options (JSON). It prints one line per
# join, refresh, state and the stop; on SIGINT it calls client.stop(). The Twisted variant logs to
# stderr as an application that logs would (textFileLogObserver); the asyncio one leaves logging
# unconfigured (Python prints warnings and errors on stderr).
KIT_PROGRAM = r"""
import json, os, sys, time
import jwt

framework, url, name, options = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
raising = set(options.get("raising", ()))


def say(*words):
    print(*words, flush=True)


def get_token():
    now = int(time.time())
    return jwt.encode({"sub": name, "roles": ["user"], "iat": now, "exp": now + options.get("ttl", 60)},
                      options.get("secret") or os.environ["JWT_SECRET"], algorithm="HS256")


def on_refresh(exp):
    say("refreshed", exp)
    if "on_refresh" in raising:
        raise RuntimeError("a bug in on_refresh")


def on_state(state, client):
    say("state", state, client.reason, json.dumps(client.message))
    if "on_state" in raising:
        raise RuntimeError("a bug in on_state")


if options.get("async_on_state"):  # the same, failing in the coroutine it returns
    sync_on_state = on_state

    async def on_state(state, client):
        sync_on_state(state, client)


async def on_join(session, details):
    say("joined", details.session)


def tls_options():
    if "ca_file" in options:
        return {"ca_file": options["ca_file"]}
    if "ssl_context_ca" not in options:
        return {}
    ca = options["ssl_context_ca"]
    if framework == "twisted":
        from twisted.internet.ssl import Certificate, optionsForClientTLS
        with open(ca, "rb") as pem:
            return {"ssl_context": optionsForClientTLS("127.0.0.1", trustRoot=Certificate.loadPEM(pem.read()))}
    import ssl
    return {"ssl_context": ssl.create_default_context(cafile=ca)}


kwargs = dict(on_join=on_join, on_state=on_state, on_refresh=on_refresh, **tls_options())

if framework == "twisted":
    import signal
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    from authenticator.kit.twisted import Client

    client = Client(url, "realm1", get_token, **kwargs)

    def stopped(result):
        say("stopped", *result)
        reactor.stop()

    client.start().addCallback(stopped)
    signal.signal(signal.SIGINT, lambda *_: reactor.callFromThread(client.stop))
    reactor.run(installSignalHandlers=False)
else:
    import asyncio, signal
    from authenticator.kit.asyncio import Client

    async def main():
        client = Client(url, "realm1", get_token, **kwargs)
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, client.stop)
        reason, message = await client.start()
        say("stopped", reason, message)

    asyncio.run(main())
"""


class KitProgram:
    """KIT_PROGRAM on one framework, as a process; what it printed, line by line."""

    def __init__(self, workdir: Path, framework: str, url: str, **options) -> None:
        self.name = unique(f"kit-{framework}")
        script = workdir / "kit_program.py"
        script.write_text(KIT_PROGRAM)
        self.out, self.err = workdir / f"{self.name}.out", workdir / f"{self.name}.err"
        env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}  # system CAs only
        env.update(JWT_SECRET=TEST_SECRET, PYTHONPATH=str(REPO))
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(script), framework, url, self.name, json.dumps(options)],
                cwd=REPO, env=env, stdout=out, stderr=err,
            )  # fmt: skip

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines()

    def stderr(self) -> str:
        return self.err.read_text()

    def starting(self, word: str) -> list[list[str]]:
        return [line.split(" ", 3) for line in self.lines() if line.split(" ", 1)[0] == word]

    def states(self) -> list[tuple[str, str]]:
        """(state, reason) of every state line."""
        return [(words[1], words[2]) for words in self.starting("state")]

    def messages(self, state: str) -> list[str]:
        return [json.loads(words[3]) for words in self.starting("state") if words[1] == state]

    async def wait_for(self, condition, timeout: float, what: str):
        def met():
            if self.process.poll() is not None:
                raise AssertionError(f"the {what} never came: the program exited\n{self.lines()}\n{self.stderr()}")
            return condition()

        return await eventually(met, timeout, f"{what} ({self.name})")

    async def stop(self) -> None:
        """SIGINT: client.stop(); the program prints its stop line and ends."""
        self.process.send_signal(signal.SIGINT)
        assert await threads.deferToThread(self.process.wait, 15) == 0, self.lines() + [self.stderr()]
        assert self.lines()[-1] == "stopped wamp.close.normal closed by the application", self.lines()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    """Sessions end 1 s after their token's exp: a kit that stopped refreshing is seen soon."""

    def short_grace(config):
        config["workers"][0]["components"][0]["extra"]["session"]["expiry_grace_seconds"] = 1

    node = RouterProcess(
        tmp_path_factory.mktemp("kit-frameworks"), env={"JWT_SECRET": TEST_SECRET}, edit_config=short_grace,
        loglevel="warn",
    ).start()  # fmt: skip
    yield node
    node.stop()


@pytest.fixture
def proxy(router):
    """A TCP hop between the kit and the router that the test can cut: a lost connection."""
    hop = StallingProxy(router.port)
    yield hop
    hop.close()


def cut(proxy: StallingProxy) -> None:
    """Every connection through the proxy is closed under the kit (no WebSocket close, no GOODBYE);
    new ones go through again."""
    proxy.stall()
    proxy.forward()


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest_twisted.ensureDeferred
async def test_an_on_refresh_that_raises_is_logged_and_the_kit_goes_on_refreshing(router, tmp_path, framework):
    kit = KitProgram(tmp_path, framework, router.url, ttl=3, raising=["on_refresh"])
    try:
        # 3-second tokens are refreshed every ~2 s; a session not refreshed ends 1 s after exp.
        await kit.wait_for(lambda: len(kit.starting("refreshed")) >= 3, 15, "three refreshes")
        assert len(kit.starting("joined")) == 1, kit.lines()  # one session all along: no expiry
        assert ("reconnecting", "authenticator.error.expired") not in kit.states(), kit.lines()
        assert "crossbar-jwt: on_refresh raised RuntimeError: a bug in on_refresh; the kit goes on" in kit.stderr()
        await kit.stop()
    finally:
        kit.kill()


@pytest.mark.parametrize("flavour", ["def", "async def"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest_twisted.ensureDeferred
async def test_an_on_state_that_raises_is_logged_and_the_kit_connects_and_reconnects(router, proxy, tmp_path,
                                                                                     framework, flavour):  # fmt: skip
    kit = KitProgram(tmp_path, framework, f"ws://127.0.0.1:{proxy.port}/ws", raising=["on_state"],
                     async_on_state=flavour == "async def")  # fmt: skip
    try:
        await kit.wait_for(lambda: kit.starting("joined"), 15, "the join")
        cut(proxy)
        await kit.wait_for(lambda: len(kit.starting("joined")) >= 2, 10, "the join after the lost connection")
        assert [state for state, _ in kit.states()] == ["connecting", "connected", "reconnecting", "connected"]
        assert kit.stderr().count("crossbar-jwt: on_state raised RuntimeError: a bug in on_state") == 4, kit.stderr()
        await kit.stop()
    finally:
        kit.kill()


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest_twisted.ensureDeferred
async def test_a_lost_connection_is_told_by_the_kits_state_not_by_autobahns_warning(router, proxy, tmp_path,
                                                                                    framework):  # fmt: skip
    kit = KitProgram(tmp_path, framework, f"ws://127.0.0.1:{proxy.port}/ws")
    try:
        await kit.wait_for(lambda: kit.starting("joined"), 15, "the join")
        cut(proxy)
        await kit.wait_for(lambda: len(kit.starting("joined")) >= 2, 10, "the join after the lost connection")
        # lost, as the JavaScript kit says: not Autobahn's wamp.close.transport_lost (the asyncio kit
        # said that, the Twisted kit "lost": Twisted tells the closed connection before the leave)
        assert ("reconnecting", "lost") in kit.states(), kit.lines()
        assert kit.messages("reconnecting") == ["the connection was lost"], kit.lines()
        await kit.stop()  # the program's last line came: everything it logged is in stderr now
        assert "session closed with reason" not in kit.stderr(), kit.stderr()
        assert "wamp.close.transport_lost" not in kit.stderr(), kit.stderr()
    finally:
        kit.kill()


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest_twisted.ensureDeferred
async def test_a_refused_login_stays_on_stderr_with_its_reason(router, tmp_path, framework):
    """Only the lost connection's line is the kit's to drop: a refusal (here a token signed with
    another key) is still Autobahn's "session closed with reason ..." line, for a program that
    reads no on_state."""
    kit = KitProgram(tmp_path, framework, router.url, secret="another secret, 32 bytes or more!")
    try:
        await threads.deferToThread(kit.process.wait, 20)  # a final reason: the kit stops, the program ends
        assert kit.lines()[-1].startswith("stopped authenticator.error.invalid_signature "), kit.lines()
        assert "session closed with reason authenticator.error.invalid_signature" in kit.stderr(), kit.stderr()
    finally:
        kit.kill()

