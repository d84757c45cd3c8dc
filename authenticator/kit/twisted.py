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
  reason, with bounded backoff (0.5 s, growing 1.5× to at most 1.5 s, ±10 % jitter).
- Stops on a final reason (FINAL_REASONS): start()'s Deferred fires with (reason, message).
- state ("connecting", "connected", "reconnecting", "stopped"), reason and message (the exact WAMP
  reason URI and message that ended the last session or attempt; None while connected), session
  (the joined ApplicationSession or None), refreshes.

On Twisted; the same on asyncio is authenticator/kit/asyncio.py (autobahn picks one framework
per process). What both share is authenticator/kit/common.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.types import ComponentConfig
from autobahn.websocket.util import parse_url
from twisted.internet import defer, task
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger

from authenticator.kit.common import (  # noqa: F401 - the kit's vocabulary, importable from here
    EXPIRED,
    FINAL_REASONS,
    LOST,
    NO_TOKEN,
    REFRESH,
    REFRESH_REFUSED,
    TOKEN_UNAVAILABLE,
    UNREACHABLE,
    Backoff,
    KitClient,
    KitSession,
    NoToken,
    TokenUnavailable,
    fresh_token,
    refresh_delay,
    seconds_left,
    timer_seconds,
)


class Client(KitClient):
    """One logical connection: start() keeps a session joined until stop() or a final reason."""

    log = Logger()

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
        reactor=None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        super().__init__(
            url, realm, get_token, on_join=on_join, on_state=on_state, on_refresh=on_refresh, bearer=bearer,
            backoff=backoff, refresh_ahead=refresh_ahead, final_reasons=final_reasons,
        )  # fmt: skip
        self._reactor = reactor
        self._running: defer.Deferred | None = None
        self._refresh_call = None

    # -- the application's side ----------------------------------------------------------------

    def start(self) -> defer.Deferred:
        """Connect, and keep connected. Fires with (reason, message) once stopped."""
        if self._running is None:
            self._running = defer.ensureDeferred(self._run())
        return self._when_stopped()

    def stop(self) -> defer.Deferred:
        """Leave the session (or give up connecting) and stop; fires like start()'s Deferred."""
        self._stopping = True
        if self._running is None:
            return defer.succeed(self._stopped("wamp.close.normal", "closed by the application"))
        if self._waiting is not None:
            self._waiting.cancel()
        if self.session is not None and self.session.is_attached():
            self.session.leave("wamp.close.normal", "closed by the application")
        elif self._protocol is not None:
            self._protocol.dropConnection(abort=True)
        return self._when_stopped()

    def _when_stopped(self) -> defer.Deferred:
        """A Deferred of its own for each caller: awaiting one consumes its result."""
        waiter: defer.Deferred = defer.Deferred()

        def relay(result):
            waiter.callback(result)
            return result

        self._running.addBoth(relay)
        return waiter

    # -- the loop: connect, wait for the connection to end, decide ------------------------------

    async def _run(self) -> tuple[str, str]:
        failures = 0  # attempts since the last join
        self._set_state("connecting")
        while not self._stopping:
            joined = await self._attempt()
            if self._stopping:
                break
            reason, message = self._outcome or (LOST, "the connection was lost")
            if reason in self.final_reasons:
                return self._stopped(reason, message)
            if joined:
                failures = 0
            self._set_state("reconnecting", reason, message)
            self._waiting = task.deferLater(self._reactor, self._retry_delay(failures), lambda: None)
            failures += 1
            try:
                await self._waiting
            except defer.CancelledError:
                break
            finally:
                self._waiting = None
        return self._stopped("wamp.close.normal", "closed by the application")

    async def _attempt(self) -> bool:
        """One connection, from connect to close. True if a session joined on it."""
        self._outcome = None
        self._joined = False
        headers = None
        if self.bearer and self.get_token is not None:
            try:
                token = await fresh_token(self.get_token)
            except TokenUnavailable as error:
                self._outcome = (error.error, str(error))
                return False
            if self._stopping:  # stop() came while get_token() was running
                return False
            headers = {"Authorization": f"Bearer {token}"}
        factory = WampWebSocketClientFactory(
            lambda: _Session(ComponentConfig(realm=self.realm), self), url=self.url, headers=headers
        )
        # Notice a router that went away without closing (power, network) within ~40 s.
        factory.setProtocolOptions(openHandshakeTimeout=10, autoPingInterval=30, autoPingTimeout=10)
        self._waiting = self._endpoint(factory).connect(factory)
        try:
            self._protocol = await self._waiting
        except defer.CancelledError:
            return False
        except Exception as error:  # noqa: BLE001 - refused, timed out, DNS, TLS: all "try again"
            self._outcome = (UNREACHABLE, str(error))
            return False
        finally:
            self._waiting = None
        try:
            await self._protocol.is_closed
        finally:
            # A lost connection ends the session without a leave: forget it here in any case.
            self._protocol, self.session = None, None
            self._cancel_refresh()
        return self._joined

    def _endpoint(self, factory):
        secure, host, port = parse_url(self.url)[:3]
        # attemptDelay: the pause between the addresses of a host name (IPv6, IPv4), and how late a
        # refused connect is reported (default 0.3 s, a fifth of the longest backoff).
        endpoint = HostnameEndpoint(self._reactor, host, port, timeout=10, attemptDelay=0.1)
        return wrapClientTLS(optionsForClientTLS(host), endpoint) if secure else endpoint

    # -- the session's side (called by _Session) -----------------------------------------------

    async def _joined_session(self, session: ApplicationSession, details) -> None:
        self.session, self._joined = session, True
        self._set_state("connected")
        extra = details.authextra or {}
        if self.get_token is not None and extra.get("exp"):
            self._schedule_refresh(session, seconds_left(extra))
        if self.on_join is not None:
            await defer.maybeDeferred(self.on_join, session, details)

    # -- refresh -------------------------------------------------------------------------------

    def _schedule_refresh(self, session, expires_in: float, attempt: int = 0, delay: float | None = None) -> None:
        self._cancel_refresh()
        delay = timer_seconds(refresh_delay(expires_in, self.refresh_ahead) if delay is None else delay)
        self._refresh_call = self._reactor.callLater(
            delay, lambda: defer.ensureDeferred(self._refresh(session, expires_in - delay, attempt))
        )

    def _warn(self, text: str) -> None:
        self.log.warn("{text}", text=text)

    def _cancel_refresh(self) -> None:
        if self._refresh_call is not None and self._refresh_call.active():
            self._refresh_call.cancel()
        self._refresh_call = None

    async def _refresh(self, session, expires_in: float, attempt: int) -> None:
        if session is not self.session:
            return
        try:
            token = await fresh_token(self.get_token)
            answer = await session.call(REFRESH, token)
        except Exception as error:  # noqa: BLE001 - any failure: try again, or reconnect
            if session is not self.session:
                return  # the session ended meanwhile
            if self._left_for_refresh_failure(session, error):
                return
            # Try again shortly; if no refresh succeeds the router ends the session at exp (+ grace).
            self.log.warn("token refresh failed ({reason}); trying again",
                          reason=getattr(error, "error", None) or type(error).__name__)  # fmt: skip
            self._schedule_refresh(session, expires_in, attempt + 1, self._retry_delay(attempt))
            return
        if session is not self.session:
            return
        self.refreshes += 1
        if self.on_refresh is not None:
            self.on_refresh(answer["exp"])
        self._schedule_refresh(session, seconds_left(answer))


class _Session(KitSession, ApplicationSession):
    """The WAMP session of one connection; everything it learns goes to its Client."""
