"""A one-shot WAMP client for the CLI: connect with a token (over TLS for wss://), call one
procedure, leave."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory, WampWebSocketClientProtocol
from autobahn.wamp.types import ComponentConfig
from twisted.internet import defer, ssl, task

TIMEOUT_SECONDS = 10
DEFAULT_PORTS = {"ws": 80, "wss": 443}  # a URL without a port means its scheme's
PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def router_address(url: str) -> tuple[bool, str, int]:
    """(TLS or not, host, port) of a ws:// or wss:// URL; ValueError saying what a URL must be."""
    parsed = urlparse(url)
    if parsed.scheme not in DEFAULT_PORTS or not parsed.hostname:
        raise ValueError(f"{url!r} is not a WebSocket URL: ws://host[:port]/path or wss://host[:port]/path")
    try:
        port = parsed.port  # ValueError for a port out of range or not a number
    except ValueError as error:
        raise ValueError(f"{url!r}: {error}") from None
    return parsed.scheme == "wss", parsed.hostname, port or DEFAULT_PORTS[parsed.scheme]


def tls_options(host: str, ca_file: Path | None):
    """The router's certificate is verified, always: against the CA certificates of ca_file (a
    private CA, and only it), or the system's trusted CAs; and it must name host. A client that
    skipped either would hand its admin token to whoever answers on the way."""
    if ca_file is None:
        return ssl.optionsForClientTLS(host)
    try:
        blocks = PEM_CERTIFICATE.findall(Path(ca_file).read_bytes())
        trust = ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(block) for block in blocks])
    except Exception as error:  # noqa: BLE001 - OSError, OpenSSL's errors: one line either way
        raise ValueError(f"--ca-file {ca_file}: cannot be read as PEM certificates ({type(error).__name__})") from None
    if not blocks:
        raise ValueError(f"--ca-file {ca_file}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it")
    return ssl.optionsForClientTLS(host, trustRoot=trust)


def connection_failure(url: str, host: str, port: int, reason, ca_file: Path | None) -> str:
    """One line for a connection that failed or was lost before the session was answered."""
    from OpenSSL.SSL import Error as TLSError
    from service_identity import VerificationError

    error = reason.value
    if isinstance(error, VerificationError):
        return f"the router's TLS certificate at {url} is not the certificate of {host}: it does not name that host"
    if isinstance(error, TLSError):
        entries = error.args[0] if error.args and isinstance(error.args[0], list) else []
        details = "; ".join(str(entry[-1]) for entry in entries if isinstance(entry, tuple) and entry)
        if "certificate verify failed" in details:
            # OpenSSL says no more: another CA, or a certificate out of its validity period
            trusted = f"the CA certificates in {ca_file}" if ca_file else "the system's trusted CAs"
            return (
                f"the router's TLS certificate at {url} is not trusted: certificate verify failed against {trusted} "
                "(signed by another CA, or expired); give the CA that signed it with --ca-file"
            )
        return f"TLS with the router at {url} failed: {details or type(error).__name__}"
    return f"cannot reach the router at {url} ({host}:{port}): {type(error).__name__}: {error}"


class RememberingProtocol(WampWebSocketClientProtocol):
    """Keeps why its connection was lost on the factory: for a TLS handshake that failed on the
    certificate only the protocol hears the reason; the factory hears "closed cleanly"."""

    def connectionLost(self, reason):
        self.factory.lost_reason = reason
        super().connectionLost(reason)


def call_once(url: str, token: str, procedure: str, *, realm: str, kwargs: dict, ca_file: Path | None = None):
    """Blocking: runs a reactor until the call is answered. Raises RuntimeError with a reason."""
    try:
        secure, host, port = router_address(url)
        tls = tls_options(host, ca_file) if secure else None
    except ValueError as error:
        raise RuntimeError(str(error)) from None
    outcome: dict = {}

    async def run(reactor):
        done: defer.Deferred = defer.Deferred()

        def failed(connector, reason):
            if not done.called and not outcome:
                # the connection's own reason (a TLS handshake refused) before the socket's (closed)
                reason = getattr(factory, "lost_reason", None) or reason
                outcome["error"] = connection_failure(url, host, port, reason, ca_file)
            if not done.called:
                done.callback(None)

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

        class OneCallFactory(WampWebSocketClientFactory):
            protocol = RememberingProtocol

            # Before a session exists (refused TCP, a TLS handshake that fails on the certificate)
            # only the factory hears of it.
            def clientConnectionFailed(self, connector, reason):  # noqa: N802 - Twisted's name
                failed(connector, reason)

            def clientConnectionLost(self, connector, reason):  # noqa: N802 - Twisted's name
                failed(connector, reason)

        factory = OneCallFactory(lambda: OneCall(ComponentConfig(realm=realm)), url=url)
        if tls is not None:
            reactor.connectSSL(host, port, factory, tls, timeout=TIMEOUT_SECONDS)
        else:
            reactor.connectTCP(host, port, factory, timeout=TIMEOUT_SECONDS)
        try:
            await done.addTimeout(TIMEOUT_SECONDS, reactor)
        except defer.TimeoutError:
            outcome.setdefault("error", f"no answer from the router at {url} within {TIMEOUT_SECONDS} s")

    try:
        task.react(run)
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            outcome.setdefault("error", f"cannot reach the router at {url}")
    if "error" in outcome:
        raise RuntimeError(outcome["error"])
    return outcome["answer"]
