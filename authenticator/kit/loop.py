"""The Python client kit's one loop, on txaio: connect with a fresh token, refresh it before exp,
reconnect with bounded backoff, stop on a final reason. Written once, as Autobahn writes its own
reconnect loop once (autobahn/wamp/component.py); authenticator/kit/twisted.py and
authenticator/kit/asyncio.py pick the framework, make the connection and name the Client.

The loop's coroutines await only txaio futures (Autobahn's own are txaio's), so they run as a
Twisted Deferred and as an asyncio Task alike. stop() never cancels what the loop awaits, it
resolves it: the two frameworks raise different CancelledErrors, and only an asyncio caller that
cancels the run itself raises into it (the loop then leaves the session and lets it end).

Imports Autobahn, txaio and the kit's own modules: nothing of the router (tests/unit/test_kit_imports.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import txaio
from autobahn.wamp.types import ComponentConfig
from autobahn.websocket.util import parse_url

import authenticator.kit.subscriptions as subscriptions
from authenticator.contract import HISTORY
from authenticator.kit.common import (
    FINAL_REASONS,
    LOST,
    NO_TOKEN,
    REFRESH,
    REFRESH_REFUSED,
    UNREACHABLE,
    Backoff,
    TokenUnavailable,
    fresh_token,
    refresh_delay,
    seconds_left,
    timer_seconds,
)
from authenticator.kit.event_positions import keep_positions
from authenticator.kit.recovery import HISTORY_LIMIT

CONNECT_TIMEOUT = 10  # seconds for a TCP (and TLS) connect; the WebSocket upgrade has 10 s more
STOPPED = object()  # what a wait of the loop resolves to when stop() ends it

TRANSPORT_LOST = "wamp.close.transport_lost"  # the leave Autobahn makes up when the connection is lost

# What ApplicationSession.onLeave logs, as a warning, for every reason but wamp.close.normal.
LEAVE_WARNING = "session closed with reason {reason} [{message}]"


class KitClient:
    """One logical connection: start() keeps a session joined until stop() or a final reason.

    A framework's Client adds: `_factory_class` (its WampWebSocketClientFactory), `_session_class`
    (KitSession before its ApplicationSession), `_connect(factory)` (a future of the connected
    protocol) and what start() and stop() hand the application (a Deferred, a Task)."""

    _factory_class: type
    _session_class: type

    def __init__(
        self, url: str, realm: str, get_token: Callable[[], Any] | None = None, *, on_join=None, on_state=None,
        on_refresh=None, bearer: bool = False, backoff: Backoff = Backoff(),  # noqa: B008 - frozen
        refresh_ahead: float = 10.0, final_reasons: frozenset[str] = FINAL_REASONS, ca_file=None, ssl_context=None,
    ) -> None:  # fmt: skip
        if ca_file is not None and ssl_context is not None:
            raise ValueError("pass ca_file or ssl_context, not both: ssl_context already says whom to trust")
        self.url, self.realm, self.get_token = url, realm, get_token
        self.on_join, self.on_state, self.on_refresh = on_join, on_state, on_refresh
        self.bearer, self.backoff, self.refresh_ahead = bearer, backoff, refresh_ahead
        self.final_reasons = final_reasons
        # The address the shells connect to (and, for wss://, check the certificate against).
        self._secure, self._host, self._port = parse_url(url)[:3]
        self.state = "connecting"
        self.reason: str | None = None
        self.message: str | None = None
        self.session = None  # the joined ApplicationSession
        self.refreshes = 0
        self.log = txaio.make_logger()
        self._call_later = txaio.call_later  # the Twisted kit's reactor= replaces it (a Clock in tests)
        self._running = None  # the run: a future of (reason, message)
        self._stopping = False
        self._wait = None  # a backoff pause or a connect in progress: stop() resolves it
        self._protocol = None
        self._refresh_call = None
        self._outcome: tuple[str, str] | None = None  # why the current attempt ended
        self._joined = False  # a session joined on the current attempt
        self._subscriptions: list[subscriptions.Subscription] = []  # made again on every join
        self._position_notes = None  # the current connection's event positions (event_positions.py)

    # -- the application's side (the framework's start() and stop() call these) ------------------

    def subscribe(
        self, topic: str, handler: Callable[..., Any], *, recover: bool = False, on_recovered=None, since=None,
        limit: int = HISTORY_LIMIT, details_arg: str | None = None,
    ) -> subscriptions.Subscription:  # fmt: skip
        """Subscribe on every join, from now on (at once if joined). recover=True: a topic that keeps
        history delivers every event once, in order, the ones missed while away first, or tells
        on_recovered(recovery) that it cannot (docs/clients.md#recovering-subscriptions-python)."""
        subscription = subscriptions.make(self, topic, handler, recover=recover, on_recovered=on_recovered,
                                          since=since, limit=limit, details_arg=details_arg)  # fmt: skip
        self._subscriptions.append(subscription)
        if self.session is not None and self.session.is_attached():
            self._establish(subscription, self.session)
        return subscription

    def _start_run(self):
        if self._running is None:
            self._running = txaio.as_future(self._run)
        return self._running

    def _stop_run(self) -> bool:
        """Leave the session (or give up connecting or waiting); False if it never started."""
        self._stopping = True
        if self._running is None:
            return False
        self._end_wait()
        if self.session is not None and self.session.is_attached():
            self.session.leave("wamp.close.normal", "closed by the application")
        elif self._protocol is not None:
            self._protocol.dropConnection(abort=True)
        return True

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
            delay = self._retry_delay(failures)
            failures += 1
            await self._pause(delay)
        return self._stopped("wamp.close.normal", "closed by the application")

    async def _pause(self, seconds: float) -> None:
        if self._stopping:  # on_state stopped the client
            return
        self._wait = waiting = txaio.create_future()
        call = self._call_later(seconds, _settle, waiting, None)
        try:
            await waiting
        finally:
            self._wait = None
            _cancel_call(call)

    async def _turn(self) -> None:
        turned = txaio.create_future()
        self._call_later(0, _settle, turned, None)
        await turned

    def _end_wait(self) -> None:
        if self._wait is not None:
            _settle(self._wait, STOPPED)

    async def _attempt(self) -> bool:
        self._outcome, self._joined = None, False
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
        factory = self._factory_class(
            lambda: self._session_class(ComponentConfig(realm=self.realm), self), url=self.url, headers=headers
        )
        self._position_notes = keep_positions(factory)
        # Notice a router that went away without closing (power, network) within ~40 s.
        factory.setProtocolOptions(openHandshakeTimeout=10, autoPingInterval=30, autoPingTimeout=10)
        protocol = await self._connected(factory)
        if protocol is None:
            return False
        if self._stopping:  # stop() came as the connection was made
            protocol.dropConnection(abort=True)
        try:
            await protocol.is_closed
        except BaseException:
            # asyncio: the run was cancelled while connected. Do not leave the session behind.
            if self.session is not None and self.session.is_attached():
                self.session.leave("wamp.close.normal", "the client stopped")
            protocol.dropConnection(abort=True)
            raise
        finally:
            # A lost connection ends the session without a leave: forget it here in any case.
            self._protocol, self.session = None, None
            self._cancel_refresh()
            self._subscriptions_lost()
        # Twisted resolves is_closed first and then works out why (the TLS error, the session's
        # leave); asyncio the other way round. One turn of the loop, and both have said it.
        await self._turn()
        if self._outcome is None and not txaio.is_called(protocol.is_open):
            # The WebSocket never opened: the certificate was refused (Twisted connects the TCP
            # socket first, asyncio fails the connect), or the upgrade was. It could not be made.
            self._outcome = (UNREACHABLE, protocol.wasNotCleanReason or "the WebSocket was not opened")
        return self._joined

    async def _connected(self, factory):
        """The connected protocol; None when no connection could be made (the outcome says why)
        or stop() came first."""
        self._wait = waiting = txaio.create_future()
        connecting = self._connect(factory)

        def made(protocol):
            if txaio.is_called(waiting):  # stop() came first
                protocol.dropConnection(abort=True)
            else:
                self._protocol = protocol
                txaio.resolve(waiting, protocol)

        def failed(failure):  # refused, timed out, DNS, TLS: all "try again"
            error = failure.value
            _settle(waiting, (UNREACHABLE, str(error) or type(error).__name__))

        txaio.add_callbacks(connecting, made, failed)
        try:
            result = await waiting
        except BaseException:
            txaio.cancel(connecting)  # asyncio: the run was cancelled
            raise
        finally:
            self._wait = None
        if result is STOPPED:
            txaio.cancel(connecting)
            return None
        if isinstance(result, tuple):
            self._outcome = result
            return None
        return result

    def _retry_delay(self, attempt: int) -> float:
        """The backoff's delay before retry `attempt`, as a timer takes it. The backoff may be the
        application's own: if it raises, the kit says so and waits what the default Backoff would,
        instead of leaving its reconnect loop (the client would stay "reconnecting" and never try again)."""
        try:
            return timer_seconds(self.backoff.delay(attempt))
        except Exception as error:  # noqa: BLE001 - whatever the backoff raised: keep reconnecting
            seconds = timer_seconds(Backoff().delay(attempt))
            self.log.warn(
                "crossbar-jwt: the backoff failed for attempt {attempt} ({error}); waiting {seconds:.2f} s",
                attempt=attempt, error=f"{type(error).__name__}: {error}", seconds=seconds,
            )  # fmt: skip
            return seconds

    # -- the session's side (called by KitSession) ----------------------------------------------

    @property
    def _authmethods(self) -> list[str]:
        return ["ticket"] if self.get_token is not None and not self.bearer else ["anonymous"]

    async def _challenged(self, challenge) -> str:
        if challenge.method != "ticket":
            raise ValueError(f"unexpected authentication method {challenge.method!r}")
        try:
            return await fresh_token(self.get_token)
        except TokenUnavailable as error:
            self._outcome = (error.error, str(error))
            raise

    async def _joined_session(self, session, details) -> None:
        self.session, self._joined = session, True
        self._set_state("connected")
        for subscription in list(self._subscriptions):
            self._establish(subscription, session)
        extra = details.authextra or {}
        if self.get_token is not None and extra.get("exp"):
            self._plan_refresh(session, seconds_left(extra))
        if self.on_join is not None:
            # Raising here is Autobahn's to log ("While firing onJoin"); the session stays.
            await txaio.as_future(self.on_join, session, details)

    def _left(self, details) -> None:
        self.session = None
        self._cancel_refresh()
        self._subscriptions_lost()
        if details.reason == TRANSPORT_LOST:
            # Autobahn's own word for a connection that went away, not the router's: LOST, as the
            # JavaScript kit says. (And the same on both frameworks: Twisted reports the closed
            # connection before this leave, asyncio after it.)
            return
        if self._outcome is None:  # first reason wins: a refused refresh, a failed get_token
            self._outcome = (details.reason, details.message or "")

    # -- subscriptions (authenticator/kit/subscriptions.py) ---------------------------------------

    def _establish(self, subscription, session) -> None:
        txaio.add_callbacks(txaio.as_future(subscription.establish, session), None,
                            lambda failure: self._subscription_failed(subscription, failure))  # fmt: skip

    def _subscription_failed(self, subscription, failure) -> None:
        if subscription.session is not self.session or self.session is None:
            return  # the session ended while subscribing: the next join makes it again
        self.log.error("crossbar-jwt: subscribing to {topic} failed: {error}", topic=subscription.topic,
                       error=txaio.failure_message(failure))  # fmt: skip

    def _subscriptions_lost(self) -> None:
        for subscription in self._subscriptions:
            subscription.lost()

    def _read_history(self, session, topic: str, since: dict | None, limit: int):
        """One authenticator.history call (a future of its answer); tests hold answers back here."""
        return session.call(HISTORY, topic, since=since, limit=limit)

    def _pause_for(self, seconds: float):
        waiting = txaio.create_future()
        self._call_later(timer_seconds(seconds), _settle, waiting, None)
        return waiting

    # -- refresh -------------------------------------------------------------------------------

    def _plan_refresh(self, session, expires_in: float) -> None:
        self._arm_refresh(session, refresh_delay(expires_in, self.refresh_ahead), 0)

    def _arm_refresh(self, session, delay: float, attempt: int) -> None:
        self._cancel_refresh()
        self._refresh_call = self._call_later(timer_seconds(delay), self._start_refresh, session, attempt)

    def _start_refresh(self, session, attempt: int) -> None:
        self._refresh_call = None
        txaio.add_callbacks(txaio.as_future(self._refresh, session, attempt), None, self._refresh_crashed)

    def _cancel_refresh(self) -> None:
        _cancel_call(self._refresh_call)
        self._refresh_call = None

    async def _refresh(self, session, attempt: int) -> None:
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
            self._arm_refresh(session, self._retry_delay(attempt), attempt + 1)
            return
        if session is not self.session:
            return
        self.refreshes += 1
        self._plan_refresh(session, seconds_left(answer))
        if self.on_refresh is not None:  # after the next refresh is planned: it fails nothing
            self._call_application("on_refresh", self.on_refresh, answer["exp"])

    def _refresh_crashed(self, failure) -> None:
        self.log.error("token refresh: unexpected {error}\n{traceback}", error=txaio.failure_message(failure),
                       traceback=txaio.failure_format_traceback(failure))  # fmt: skip

    def _left_for_refresh_failure(self, session, error: BaseException) -> bool:
        """A refresh failed: no user any more (the kit stops), or a token for other roles (a new
        session with it, now) makes the session leave; True then. Anything else is retried."""
        reason = getattr(error, "error", None) or type(error).__name__
        if reason not in (NO_TOKEN, REFRESH_REFUSED):
            return False
        self._outcome = (reason, error.args[0] if error.args else "")
        session.leave("wamp.close.normal", "the session cannot take this token")
        return True

    # -- state, and the application's callbacks -----------------------------------------------

    def _set_state(self, state: str, reason: str | None = None, message: str | None = None) -> None:
        self.state, self.reason, self.message = state, reason, message
        if self.on_state is not None:
            self._call_application("on_state", self.on_state, state, self)

    def _stopped(self, reason: str, message: str) -> tuple[str, str]:
        self._cancel_refresh()
        self._set_state("stopped", reason, message)
        return reason, message

    def _call_application(self, name: str, callback, *args) -> None:
        """Call on_state or on_refresh (sync, or returning an awaitable). A bug in it is the
        application's: logged with its traceback, and the kit goes on (reconnecting, refreshing)."""
        try:
            result = callback(*args)
        except Exception:  # noqa: BLE001 - whatever the application raised
            self._application_failed(name, txaio.create_failure())
            return
        if inspect.isawaitable(result):
            txaio.add_callbacks(txaio.as_future(_awaited, result), None,
                                lambda failure: self._application_failed(name, failure))  # fmt: skip

    def _application_failed(self, name: str, failure) -> None:
        self.log.error(
            "crossbar-jwt: {callback} raised {error}; the kit goes on\n{traceback}", callback=name,
            error=txaio.failure_message(failure), traceback=txaio.failure_format_traceback(failure),
        )  # fmt: skip


class KitSession:
    """Put before the framework's ApplicationSession: the WAMP session of one connection, which
    hands everything it learns to its kit Client."""

    def __init__(self, config, client: KitClient) -> None:
        super().__init__(config)
        self._client = client
        self.log = _WithoutLeaveWarning(self.log)

    def onConnect(self):  # noqa: N802 - Autobahn's names
        self.join(self.config.realm, authmethods=self._client._authmethods)

    async def onChallenge(self, challenge):  # noqa: N802
        return await self._client._challenged(challenge)

    async def onJoin(self, details):  # noqa: N802
        await self._client._joined_session(self, details)

    def onLeave(self, details):  # noqa: N802
        self._client._left(details)
        return super().onLeave(details)  # fails outstanding calls, disconnects


class _WithoutLeaveWarning:
    """A session's Autobahn log without one line: "session closed with reason
    wamp.close.transport_lost [None]", which ApplicationSession.onLeave writes for a lost
    connection; the kit tells it as state `reconnecting`, reason `lost`, and reconnects. The same
    warning for any other reason (a refused login, an expiry, a revocation) passes, as every
    other line of the session does: a program that reads no on_state still sees why."""

    def __init__(self, log) -> None:
        self._log = log

    def warn(self, format=None, **kwargs):  # noqa: A002 - the logger's own parameter name
        if format == LEAVE_WARNING and kwargs.get("reason") == TRANSPORT_LOST:
            return None  # the kit says it: state reconnecting, reason lost
        return self._log.warn(format, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._log, name)


async def _awaited(awaitable):
    return await awaitable


def _settle(future, value) -> None:
    if not txaio.is_called(future):
        txaio.resolve(future, value)


def _cancel_call(call) -> None:
    """Cancel a txaio.call_later (a Twisted IDelayedCall, an asyncio TimerHandle) if pending."""
    if call is None:
        return
    active = getattr(call, "active", None)  # Twisted's: cancel() of a call that ran raises
    if active is None or active():
        call.cancel()
