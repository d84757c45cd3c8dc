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
timing: docs/clients.md. For wss:// URLs the certificate is verified against the system's CAs,
or ca_file= (a PEM file of the CAs to trust), or ssl_context= (an ssl.SSLContext). The loop is
authenticator/kit/loop.py, on txaio, the same as the Twisted kit's. Import this module in an
asyncio program only: Autobahn works with one framework per process (this module selects asyncio).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import txaio

txaio.use_asyncio()

from autobahn.asyncio.wamp import ApplicationSession  # noqa: E402 - after the framework is chosen
from autobahn.asyncio.websocket import WampWebSocketClientFactory  # noqa: E402

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
from authenticator.kit.loop import CONNECT_TIMEOUT, KitClient, KitSession  # noqa: E402, F401


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
        ca_file: str | Path | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(
            url, realm, get_token, on_join=on_join, on_state=on_state, on_refresh=on_refresh, bearer=bearer,
            backoff=backoff, refresh_ahead=refresh_ahead, final_reasons=final_reasons, ca_file=ca_file,
            ssl_context=ssl_context,
        )  # fmt: skip
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            kind = type(ssl_context).__name__
            raise TypeError(f"the asyncio kit takes ssl_context=ssl.SSLContext(...), or ca_file=; not a {kind} "
                            "(optionsForClientTLS is the Twisted kit's)")  # fmt: skip
        self._tls: ssl.SSLContext | bool | None = None
        if self._secure:
            trusting = ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else True
            self._tls = ssl_context or trusting

    def start(self) -> asyncio.Task:
        """Connect, and keep connected; await it for (reason, message) once stopped. One run per
        client: a second call returns the same run. Cancelling the task that awaits it ends the
        run (and the connection) too."""
        return self._start_run()

    def stop(self) -> asyncio.Future:
        """Leave the session (or give up connecting); await it like start()."""
        if not self._stop_run():
            done = asyncio.get_running_loop().create_future()
            done.set_result(self._stopped("wamp.close.normal", "closed by the application"))
            return done
        return asyncio.shield(self._running)

    def _connect(self, factory) -> asyncio.Task:
        # happy_eyeballs_delay: the pause between the addresses of a host name, as the Twisted kit's.
        connecting = asyncio.get_running_loop().create_connection(
            factory, self._host, self._port, ssl=self._tls, happy_eyeballs_delay=0.1
        )
        return asyncio.ensure_future(_protocol_of(asyncio.wait_for(connecting, CONNECT_TIMEOUT)))


async def _protocol_of(connecting):
    _transport, protocol = await connecting
    return protocol


class _Session(KitSession, ApplicationSession):
    """The WAMP session of one connection; everything it learns goes to its Client."""


Client._factory_class = WampWebSocketClientFactory
Client._session_class = _Session
