"""Real Autobahn Python clients for router tests (run under pytest-twisted's reactor)."""

from __future__ import annotations

from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.types import ComponentConfig
from twisted.internet import defer, reactor

REALM = "realm1"
CONNECT_TIMEOUT = 15


class Refused(Exception):
    """The router ended the session before it joined (ABORT): reason URI and message."""

    def __init__(self, reason: str, message: str | None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class Client(ApplicationSession):
    """A session that joins with a ticket (or anonymously) and records how it ends."""

    def __init__(self, config, ticket, authmethods, authid, authextra, joined):
        super().__init__(config)
        self._ticket = ticket
        self._authmethods = authmethods
        self._authid = authid
        self._authextra = authextra
        self.joined = joined
        self.left: defer.Deferred = defer.Deferred()
        self.details = None

    def onConnect(self):
        self.join(self.config.realm, authmethods=self._authmethods, authid=self._authid, authextra=self._authextra)

    def onChallenge(self, challenge):
        return self._ticket

    def onJoin(self, details):
        self.details = details
        self.joined.callback(self)

    def onLeave(self, details):
        if not self.joined.called:
            self.joined.errback(Refused(details.reason, details.message))
        elif not self.left.called:
            self.left.callback(details)
        self.disconnect()

    def onDisconnect(self):
        if not self.joined.called:
            self.joined.errback(Refused("transport_closed", "connection lost before joining"))


def connect(
    url: str, ticket: str | None = None, *, authmethods=None, authid=None, authextra=None, headers=None,
    tls_ca=None, bind_address: str | None = None, realm: str = REALM,
) -> defer.Deferred:  # fmt: skip
    """Connect and join `realm`; fires with the joined Client, or fails with Refused."""
    if authmethods is None:
        authmethods = ["ticket"] if ticket is not None else ["anonymous"]
    joined: defer.Deferred = defer.Deferred()
    config = ComponentConfig(realm=realm)

    def make():
        return Client(config, ticket, authmethods, authid, authextra, joined)

    factory = WampWebSocketClientFactory(make, url=url, headers=headers)
    host, port = url.split("//")[1].split("/")[0].split(":")
    bind = {"bindAddress": (bind_address, 0)} if bind_address else {}
    if url.startswith("wss:"):
        # Trust the test CA only (tls_ca: its PEM file); the certificate names localhost and 127.0.0.1.
        from twisted.internet.ssl import Certificate, optionsForClientTLS

        trust = Certificate.loadPEM(tls_ca.read_bytes()) if tls_ca is not None else None
        reactor.connectSSL("127.0.0.1", int(port), factory, optionsForClientTLS("localhost", trustRoot=trust), **bind)
    else:
        reactor.connectTCP(host, int(port), factory, **bind)
    return joined.addTimeout(CONNECT_TIMEOUT, reactor)


async def refusal(url: str, ticket, **kwargs) -> Refused:
    """Connect expecting a refusal; returns it (fails the test if the session joins)."""
    try:
        client = await connect(url, ticket, **kwargs)
    except Refused as refused:
        return refused
    client.leave()
    raise AssertionError(f"expected a refusal, but joined as {client.details.authid}/{client.details.authrole}")


class Inbox:
    """Collects events of one subscription; `next()` waits for the next one (with a deadline)."""

    def __init__(self) -> None:
        self.events: list = []
        self._waiting: list[defer.Deferred] = []

    def __call__(self, *args, **kwargs) -> None:
        event = (args, kwargs)
        if self._waiting:
            self._waiting.pop(0).callback(event)
        else:
            self.events.append(event)

    def next(self, timeout: float = 5) -> defer.Deferred:
        if self.events:
            return defer.succeed(self.events.pop(0))
        waiting: defer.Deferred = defer.Deferred()
        self._waiting.append(waiting)
        return waiting.addTimeout(timeout, reactor)


async def wamp_error(deferred) -> str:
    """Await a WAMP call/subscribe/publish expected to fail; returns its error URI."""
    from autobahn.wamp.exception import ApplicationError

    try:
        await deferred
    except ApplicationError as error:
        return error.error
    raise AssertionError("expected a WAMP error, but the request succeeded")


async def eventually(condition, timeout: float, what: str, interval: float = 0.05):
    """Wait, without blocking the reactor, until condition() is truthy; TimeoutError past the deadline."""
    import time

    from twisted.internet import task

    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await task.deferLater(reactor, interval, lambda: None)
    return value
