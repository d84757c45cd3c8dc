"""A one-shot WAMP client for the CLI: connect with a token, call one procedure, leave."""

from __future__ import annotations

from urllib.parse import urlparse

from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.types import ComponentConfig
from twisted.internet import defer, task

REALM = "realm1"
TIMEOUT_SECONDS = 10


def call_once(url: str, token: str, procedure: str, **kwargs):
    """Blocking: runs a reactor until the call is answered. Raises RuntimeError with a reason."""
    outcome: dict = {}

    async def run(reactor):
        done: defer.Deferred = defer.Deferred()

        class OneCall(ApplicationSession):
            def onConnect(self):
                self.join(self.config.realm, authmethods=["ticket"])

            def onChallenge(self, challenge):
                return token

            async def onJoin(self, details):
                try:
                    outcome["answer"] = await self.call(procedure, **kwargs)
                except Exception as error:  # noqa: BLE001 - reported to the user
                    reason = getattr(error, "error", type(error).__name__)
                    outcome["error"] = f"{reason}: {error.args[0] if error.args else ''}"
                self.leave()

            def onLeave(self, details):
                if not outcome:
                    outcome["error"] = f"the router refused the login: {details.reason}: {details.message}"
                self.disconnect()

            def onDisconnect(self):
                if not done.called:
                    done.callback(None)

        factory = WampWebSocketClientFactory(lambda: OneCall(ComponentConfig(realm=REALM)), url=url)
        factory.clientConnectionFailed = lambda connector, reason: done.called or done.errback(reason)
        parsed = urlparse(url)
        reactor.connectTCP(parsed.hostname, parsed.port or 80, factory, timeout=TIMEOUT_SECONDS)
        try:
            await done.addTimeout(TIMEOUT_SECONDS, reactor)
        except Exception as error:  # noqa: BLE001
            outcome.setdefault("error", f"cannot reach the router at {url}: {error.__class__.__name__}")

    try:
        task.react(run)
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            outcome.setdefault("error", f"cannot reach the router at {url}")
    if "error" in outcome:
        raise RuntimeError(outcome["error"])
    return outcome["answer"]
