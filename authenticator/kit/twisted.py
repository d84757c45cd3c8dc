"""Client kit for Autobahn|Python on Twisted: one WAMP session that stays logged in with a JWT.

    from twisted.internet import defer, task
    from authenticator.kit.twisted import Client

    def get_token():                         # a fresh JWT on every call (sync, or async/Deferred)
        return requests.get(...).json()["token"]

    async def on_join(session, details):     # every join: the first and each reconnect
        await session.subscribe(print, "app.chat.lobby")

    async def main(reactor):
        client = Client("ws://127.0.0.1:8080/ws", "realm1", get_token, on_join=on_join)
        reason, message = await client.start()   # runs until a final reason or client.stop()
        print("stopped:", reason, message)

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))

What it does (the same as web/crossbar-jwt.js; details in docs/clients.md):

- get_token() on every connect and reconnect: in the WAMP ticket challenge, or (bearer=True) for
  the `Authorization: Bearer` header of the WebSocket upgrade. No get_token: anonymous. get_token()
  returning None means "no user": the kit stops (NO_TOKEN); one that raises is retried.
- Before the token's exp, get_token() again and `authenticator.refresh(token)`: the same session
  goes on, timed by the router's clock (`expires_in`). A failed refresh is retried; if none
  succeeds the router ends the session at exp (+ grace) with `authenticator.error.expired`, and
  the kit reconnects.
- Reconnects after an expiry, a lost connection, a router restart or a login refused for a passing
  reason, with full-jitter backoff (a random delay below a cap of 0.5 s doubling to 10 s).
- Stops on a final reason (FINAL_REASONS): start()'s Deferred fires with (reason, message).
- state ("connecting", "connected", "reconnecting", "stopped"), reason and message (the exact WAMP
  reason URI and message that ended the last session or attempt; None while connected), session
  (the joined ApplicationSession or None), refreshes. A lost connection is `lost`, one that could
  not be made (refused, timed out, a certificate not trusted) `unreachable`, the error as message.
- wss:// URLs: the certificate is verified against the system's CAs, or ca_file= (a PEM file of
  the CAs to trust), or ssl_context= (an IOpenSSLClientConnectionCreator: optionsForClientTLS(...)).
- on_state and on_refresh are the application's: one that raises is logged and stops nothing.

The loop is authenticator/kit/loop.py, on txaio, the same for asyncio (authenticator/kit/asyncio.py);
this module picks Twisted (Autobahn works with one framework per process) and makes the connection.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import txaio

txaio.use_twisted()

from autobahn.twisted.wamp import ApplicationSession  # noqa: E402 - after the framework is chosen
from autobahn.twisted.websocket import WampWebSocketClientFactory  # noqa: E402
from twisted.internet import defer  # noqa: E402
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS  # noqa: E402
from twisted.internet.ssl import Certificate, optionsForClientTLS, trustRootFromCertificates  # noqa: E402

from authenticator.kit.common import (  # noqa: E402, F401 - the kit's vocabulary, importable from here
    EXPIRED,
    FINAL_REASONS,
    LOST,
    MAX_TIMER_SECONDS,
    NO_TOKEN,
    REFRESH,
    REFRESH_REFUSED,
    TOKEN_UNAVAILABLE,
    UNREACHABLE,
    Backoff,
    NoToken,
    TokenUnavailable,
    fresh_token,
    refresh_delay,
    seconds_left,
    timer_seconds,
)
from authenticator.kit.loop import CONNECT_TIMEOUT, KitClient, KitSession  # noqa: E402


class Client(KitClient):
    """One logical connection: start() keeps a session joined until stop() or a final reason."""

    def __init__(
        self,
        url: str,
        realm: str,
        get_token: Callable[[], Any] | None = None,
        *,
        on_join: Callable[[ApplicationSession, Any], Any] | None = None,
        on_state: Callable[[str, Client], Any] | None = None,
        on_refresh: Callable[[float], Any] | None = None,
        bearer: bool = False,
        backoff: Backoff = Backoff(),  # noqa: B008 - frozen, shared safely
        refresh_ahead: float = 10.0,
        final_reasons: frozenset[str] = FINAL_REASONS,
        ca_file: str | Path | None = None,
        ssl_context=None,
        reactor=None,
    ) -> None:
        super().__init__(
            url, realm, get_token, on_join=on_join, on_state=on_state, on_refresh=on_refresh, bearer=bearer,
            backoff=backoff, refresh_ahead=refresh_ahead, final_reasons=final_reasons, ca_file=ca_file,
            ssl_context=ssl_context,
        )  # fmt: skip
        if reactor is None:
            from twisted.internet import reactor
        else:
            self._call_later = reactor.callLater  # txaio's is the global reactor's
        self._reactor = reactor
        if isinstance(ssl_context, ssl.SSLContext):  # it would fail every handshake, unreachable for ever
            raise TypeError("the Twisted kit takes ssl_context=optionsForClientTLS(...) (twisted.internet.ssl), or "
                            "ca_file=; an ssl.SSLContext is the asyncio kit's")  # fmt: skip
        self._tls = None
        if self._secure:
            trust = _trust_root(ca_file) if ca_file is not None else None
            self._tls = ssl_context or optionsForClientTLS(self._host, trustRoot=trust)

    def start(self) -> defer.Deferred:
        """Connect, and keep connected. Fires with (reason, message) once stopped."""
        self._start_run()
        return self._when_stopped()

    def stop(self) -> defer.Deferred:
        """Leave the session (or give up connecting) and stop; fires like start()'s Deferred."""
        if not self._stop_run():
            return defer.succeed(self._stopped("wamp.close.normal", "closed by the application"))
        return self._when_stopped()

    def _when_stopped(self) -> defer.Deferred:
        """A Deferred of its own for each caller: awaiting one consumes its result."""
        waiter: defer.Deferred = defer.Deferred()

        def relay(result):
            waiter.callback(result)
            return result

        self._running.addBoth(relay)
        return waiter

    def _connect(self, factory) -> defer.Deferred:
        # attemptDelay: the pause between the addresses of a host name (IPv6, IPv4), and how late a
        # refused connect is reported (default 0.3 s, more than the first retry's average wait of 0.25 s).
        endpoint = HostnameEndpoint(self._reactor, self._host, self._port, timeout=CONNECT_TIMEOUT, attemptDelay=0.1)
        if self._tls is not None:
            endpoint = wrapClientTLS(self._tls, endpoint)
        return endpoint.connect(factory)


def _trust_root(ca_file: str | Path):
    """Every certificate of a PEM file (a CA bundle) as the roots to trust."""
    marker = b"-----BEGIN CERTIFICATE-----"
    blocks = Path(ca_file).read_bytes().split(marker)[1:]
    if not blocks:
        raise ValueError(f"{ca_file}: no PEM certificate in it")
    return trustRootFromCertificates([Certificate.loadPEM(marker + block) for block in blocks])


class _Session(KitSession, ApplicationSession):
    """The WAMP session of one connection; everything it learns goes to its Client."""


Client._factory_class = WampWebSocketClientFactory
Client._session_class = _Session
