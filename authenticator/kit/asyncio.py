"""Client kit for Autobahn|Python on asyncio: the same as authenticator/kit/twisted.py (Twisted).

    import asyncio
    from authenticator.kit.asyncio import Client

    async def on_join(session, details):     # every join: the first and each reconnect
        await session.subscribe(print, "app.chat.lobby")

    async def main():
        client = Client("ws://127.0.0.1:8080/ws", "realm1", get_token, on_join=on_join)
        reason, message = await client.start()   # runs until a final reason or client.stop()
        print("stopped:", reason, message)

    asyncio.run(main())

get_token may be a function or a coroutine function; a function runs on the event loop, so one
that blocks (a synchronous HTTP call) holds the whole loop, pings included: make it a coroutine,
or wrap it in asyncio.to_thread. What the kit does, its states, reasons, backoff and refresh
timing: docs/clients.md. Import it in an asyncio program only: Autobahn works with one framework
per process (this module selects asyncio).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from autobahn.asyncio.wamp import ApplicationSession
from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp.types import ComponentConfig
from autobahn.websocket.util import parse_url

from authenticator.kit.common import (
    FINAL_REASONS,
    LOST,
    REFRESH,
    UNREACHABLE,
    Backoff,
    KitClient,
    KitSession,
    TokenUnavailable,
    fresh_token,
    refresh_delay,
    seconds_left,
    timer_seconds,
)

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 10


class Client(KitClient):
    """One logical connection: `await start()` keeps a session joined until stop() or a final reason."""

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
    ) -> None:
        super().__init__(
            url, realm, get_token, on_join=on_join, on_state=on_state, on_refresh=on_refresh, bearer=bearer,
            backoff=backoff, refresh_ahead=refresh_ahead, final_reasons=final_reasons,
        )  # fmt: skip
        self._refresh_handle: asyncio.TimerHandle | None = None
        self._refresh_task: asyncio.Task | None = None
        self._task: asyncio.Task | None = None

    # -- the application's side ----------------------------------------------------------------

    def start(self) -> asyncio.Task:
        """Connect, and keep connected; await it for (reason, message) once stopped. One run per
        client: a second call returns the same run. Cancelling the task that awaits it ends the
        run (and the connection) too."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        return self._task

    def stop(self) -> asyncio.Future:
        """Leave the session (or give up connecting); await it like start()."""
        self._stopping = True
        if self._waiting is not None:
            self._waiting.cancel()
        if self.session is not None and self.session.is_attached():
            self.session.leave("wamp.close.normal", "closed by the application")
        elif self._protocol is not None:
            self._protocol.dropConnection(abort=True)
        if self._task is None:
            done = asyncio.get_running_loop().create_future()
            done.set_result(self._stopped("wamp.close.normal", "closed by the application"))
            return done
        return asyncio.shield(self._task)

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
            self._waiting = asyncio.ensure_future(asyncio.sleep(self._retry_delay(failures)))
            failures += 1
            try:
                await self._waiting
            except asyncio.CancelledError:
                if not self._stopping:
                    raise  # our own task was cancelled, not by stop(): let it end
                break
            finally:
                self._waiting = None
        return self._stopped("wamp.close.normal", "closed by the application")

    # -- one connection, from connect to close --------------------------------------------------

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
        factory = WampWebSocketClientFactory(
            lambda: _Session(ComponentConfig(realm=self.realm), self), url=self.url, headers=headers
        )
        factory.setProtocolOptions(openHandshakeTimeout=10, autoPingInterval=30, autoPingTimeout=10)
        secure, host, port = parse_url(self.url)[:3]
        # happy_eyeballs_delay: the pause between the addresses of a host name, as the Twisted kit's.
        connecting = asyncio.get_running_loop().create_connection(
            factory, host, port, ssl=True if secure else None, happy_eyeballs_delay=0.1
        )
        self._waiting = asyncio.ensure_future(asyncio.wait_for(connecting, CONNECT_TIMEOUT))
        try:
            _transport, self._protocol = await self._waiting
        except asyncio.CancelledError:
            if not self._stopping:
                raise  # our own task was cancelled, not by stop()
            return False
        except (OSError, TimeoutError) as error:  # refused, timed out, DNS, TLS: all "try again"
            self._outcome = (UNREACHABLE, str(error) or type(error).__name__)
            return False
        finally:
            self._waiting = None
        if self._stopping:  # stop() came as the connection was made (wait_for may keep the result)
            self._protocol.dropConnection(abort=True)
        try:
            await self._protocol.is_closed
        except BaseException:
            # Cancelled (or worse) while connected: do not leave the session behind on the router.
            if self.session is not None and self.session.is_attached():
                self.session.leave("wamp.close.normal", "the client stopped")
            self._protocol.dropConnection(abort=True)
            raise
        finally:
            self._protocol, self.session = None, None
            self._cancel_refresh()
        return self._joined

    # -- the session's side (called by _Session) -----------------------------------------------

    async def _joined_session(self, session: ApplicationSession, details) -> None:
        self.session, self._joined = session, True
        self._set_state("connected")
        extra = details.authextra or {}
        if self.get_token is not None and extra.get("exp"):
            self._schedule_refresh(session, refresh_delay(seconds_left(extra), self.refresh_ahead), 0)
        if self.on_join is not None:
            result = self.on_join(session, details)
            if asyncio.iscoroutine(result):
                await result

    # -- refresh -------------------------------------------------------------------------------

    def _schedule_refresh(self, session, delay: float, attempt: int) -> None:
        if self._refresh_handle is not None:
            self._refresh_handle.cancel()
        self._refresh_handle = asyncio.get_running_loop().call_later(
            timer_seconds(delay), self._start_refresh, session, attempt
        )

    def _start_refresh(self, session, attempt: int) -> None:
        self._refresh_handle = None
        self._refresh_task = asyncio.ensure_future(self._refresh(session, attempt))
        self._refresh_task.add_done_callback(_log_failure)

    def _warn(self, text: str) -> None:
        log.warning("%s", text)

    def _cancel_refresh(self) -> None:
        if self._refresh_handle is not None:
            self._refresh_handle.cancel()
        self._refresh_handle = None
        if self._refresh_task is not None and not self._refresh_task.done():
            self._refresh_task.cancel()
        self._refresh_task = None

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
            log.warning(
                "token refresh failed (%s); trying again", getattr(error, "error", None) or type(error).__name__
            )
            self._schedule_refresh(session, self._retry_delay(attempt), attempt + 1)
            return
        if session is not self.session:
            return
        self.refreshes += 1
        self._schedule_refresh(session, refresh_delay(seconds_left(answer), self.refresh_ahead), 0)
        if self.on_refresh is not None:
            self.on_refresh(answer["exp"])  # after the next refresh is planned: its failure stops nothing


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("token refresh: unexpected %s", type(task.exception()).__name__)


class _Session(KitSession, ApplicationSession):
    """The WAMP session of one connection; everything it learns goes to its Client."""
